"""Static limits: every refusal is coded, happens before any SQL, and the real
workloads (and GraphiQL's introspection) pass."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from graphql import get_introspection_query

from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.documents import DEEP, W1_FEED_N, W2_PEOPLE_N


async def codes(body) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def chain(depth: int) -> str:
    """``depth`` levels of fields: posts > nodes > (author > posts > nodes)* > title."""
    levels = ["posts(first: 1)", "nodes"]
    while len(levels) + 1 < depth:
        levels += ["author", "posts(first: 1)", "nodes"][: depth - 1 - len(levels)]
    query = (
        "title"
        if levels[-1] == "nodes"
        else ("username" if levels[-1] == "author" else "nodes { title }")
    )
    if levels[-1] == "posts(first: 1)":
        query = "totalCount"
    for level in reversed(levels):
        query = f"{level} {{ {query} }}"
    return "{ " + query + " }"


async def test_depth_just_under_and_just_over_the_limit(gql, world, sql):
    ok = await gql(chain(15))
    assert "errors" not in ok
    sql.reset()
    refused = await gql(chain(16), expect_errors=True)
    assert await codes(refused) == ["QUERY_TOO_COMPLEX"]
    assert "depth 16" in refused["errors"][0]["message"]
    assert sql.count == 0 and "data" not in refused


async def test_depth_counts_through_a_fragment_reused_at_two_depths(gql, world, sql):
    # The fragment is shallow where first used and too deep where used again
    inner = chain(13)[2:-2]  # 13 levels as a selection
    document = f"""
    fragment Deep on Query {{ {inner} }}
    query {{ ...Deep posts(first: 1) {{ nodes {{ author {{ __typename }} }} }} }}
    """
    assert "errors" not in await gql(document)
    too_deep = """
    fragment Deep on User { posts(first: 1) { nodes { author { posts(first: 1) { nodes { author {
      posts(first: 1) { nodes { author { posts(first: 1) { nodes { title } } } } } } } } } } } }
    query { viewer { ...Deep } users(first: 1) { nodes { posts(first: 1) { nodes { author { ...Deep } } } } } }
    """
    sql.reset()
    body = await gql(too_deep, expect_errors=True)
    assert await codes(body) == ["QUERY_TOO_COMPLEX"]
    assert sql.count == 0


async def test_a_fragment_named_like_an_introspection_field_is_still_counted(gql, world):
    inner = chain(20)[2:-2]
    body = await gql(
        f"fragment __schema on Query {{ {inner} }} query {{ ...__schema }}", expect_errors=True
    )
    assert await codes(body) in (["QUERY_TOO_COMPLEX"], ["BAD_USER_INPUT"])
    assert "data" not in body


async def test_an_undefined_fragment_is_reported_not_a_crash(gql, world):
    body = await gql("query { ...Missing posts(first: 1) { totalCount } }", expect_errors=True)
    assert await codes(body) == ["BAD_USER_INPUT"]
    assert "Unknown fragment 'Missing'" in body["errors"][0]["message"]


@pytest.mark.parametrize(("count", "refused"), [(30, False), (31, True)])
async def test_aliases_limit(gql, world, count, refused):
    fields = " ".join(f"a{i}: __typename" for i in range(count))
    body = await gql("{ " + fields + " }", expect_errors=refused)
    assert (await codes(body) == ["QUERY_TOO_COMPLEX"]) is refused


async def test_aliases_spread_through_a_fragment_count_each_time(gql, world):
    fragment = "fragment F on Query { " + " ".join(f"a{i}: __typename" for i in range(10)) + " }"
    # Ten aliases in a fragment spread four times: forty aliases as the query runs
    body = await gql(fragment + " { ...F ...on Query { ...F } ...F ...F }", expect_errors=True)
    assert await codes(body) == ["QUERY_TOO_COMPLEX"]


@pytest.mark.parametrize(("count", "refused"), [(50, False), (51, True)])
async def test_directives_limit(gql, world, count, refused):
    fields = " ".join("__typename @include(if: true)" for _ in range(count))
    body = await gql("{ " + fields + " }", expect_errors=refused)
    assert (await codes(body) == ["QUERY_TOO_COMPLEX"]) is refused


async def test_token_limit(gql, world):
    body = await gql("{ " + "__typename " * 6000 + "}", expect_errors=True)
    assert await codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_document_length_limit(gql, world):
    body = await gql("{ __typename }" + " " * 60_000, expect_errors=True)
    assert await codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_cost_limit_refuses_nested_pages_before_any_sql(gql, world, sql):
    query = "query($n: Int) { users(first: $n) { nodes { posts(first: $n) { nodes { comments(first: $n) { totalCount } } } } } }"
    body = await gql(query, {"n": 100}, expect_errors=True)
    assert await codes(body) == ["QUERY_TOO_COMPLEX"]
    assert "1010100 nodes" in body["errors"][0]["message"]
    assert sql.count == 0
    assert "errors" not in await gql(query, {"n": 10})


async def test_page_size_from_a_variable_is_refused_before_any_sql(gql, world, sql):
    body = await gql(
        "query($n: Int) { tags(first: 2) { totalCount } posts(first: $n) { totalCount } }",
        {"n": 101},
        expect_errors=True,
    )
    assert await codes(body) == ["BAD_USER_INPUT"]
    assert sql.count == 0


async def test_nodes_takes_at_most_100_ids(gql, world):
    ids = [world.gid("Tag", 1)] * 101
    body = await gql(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids}, expect_errors=True
    )
    assert await codes(body) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("query", "n"), [(W1_FEED_N, 50), (W2_PEOPLE_N, 20), (DEEP, 10)], ids=["W1", "W2", "deep"]
)
async def test_the_workloads_pass_the_limits(gql, world, query, n):
    assert "errors" not in await gql(query, {"n": n})


async def test_the_spec_example_passes(gql, world):
    query = """{ users(first: 100) { nodes { posts(first: 10) { nodes { comments(first: 5) {
      nodes { author { profile { displayName } } } } } } } } }"""
    assert "errors" not in await gql(query)


async def test_graphiqls_introspection_query_passes(gql):
    body = await gql(get_introspection_query(descriptions=True))
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.fixture(scope="module")
async def closed_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"introspection": False, "graphiql": False}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_introspection_off_refuses_schema_and_hides_suggestions(closed_client):
    refused = (
        await closed_client.post("/graphql", json={"query": "{ __schema { types { name } } }"})
    ).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    typo = (await closed_client.post("/graphql", json={"query": "{ post { titel } }"})).json()
    assert all("Did you mean" not in e["message"] for e in typo["errors"])
