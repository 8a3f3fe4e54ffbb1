"""Only the columns asked for: a query's loader and page statements select the
columns its document reads (``engine.columns``), and the answers are those of
whole-row reads (``GQL_NARROW_COLUMNS=false``), for every viewer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from bench.workloads import READ_WORKLOADS
from gql_app.content.models import Comment, Post, Tag
from gql_app.data.loaders import LoaderRegistry
from gql_app.engine.columns import document_columns
from gql_app.engine.planned_executor import PLANS
from gql_app.engine.statements import LEAF, OBJECT
from gql_app.schema import schema
from gql_app.settings import Settings
from gql_app.users.models import Profile, User
from gql_app.web.app import create_app
from tests import documents
from tests.factories import World

EVERY_FIELD = """
query Everything($n: Int) {
  users(first: $n) { nodes { id username isActive isAdmin age createdAt lastLoginAt email
    profile { displayName bio } postCount
    posts(first: $n) { totalCount edges { cursor node { id title content publishedAt createdAt
      updatedAt commentCount author { username } tags { id name postCount
      posts(first: 2) { totalCount nodes { title } } }
      comments(first: $n) { totalCount nodes { id body createdAt author { username }
        post { title } } } } } }
    comments(first: 2) { nodes { body } }
    orders(first: $n) { totalCount nodes { id status createdAt total itemCount
      customer { username } items { quantity unitPrice subtotal
        product { id sku name price stock createdAt unitsSold } } } }
    orderStats { orderCount totalSpent averageOrderValue lastOrderAt }
    accounts { id currency balance owner { username }
      transfers(first: $n) { totalCount nodes { id amount createdAt
        from { currency owner { username } } to { currency } } } } } }
}
"""
"""Every field of every type whose values are rows, under a viewer's private fields."""

NODES = """
query Nodes($ids: [ID!]!) {
  nodes(ids: $ids) {
    __typename id
    ... on User { username email }
    ... on Post { title author { username } }
    ... on Tag { name postCount }
    ... on Comment { body post { title } }
    ... on Product { sku price }
    ... on Order { status total customer { username } }
    ... on Account { currency balance owner { username } }
    ... on Transfer { amount from { currency } to { currency } }
  }
}
"""
"""A node of every type: their fetches read visibility columns no field asks for."""

DRAFTS = """
query Drafts { posts(first: 20, filter: {published: false}) { nodes { id } } }
"""
"""Drafts a viewer may see: the page decides by columns the document does not select."""

W1_CONTENT = documents.W1_FEED.replace("id title", "id title content")

QUERIES = {
    **{
        name: getattr(documents, name)
        for name in documents.__all__
        if not getattr(documents, name).lstrip().startswith("mutation")
    },
    **READ_WORKLOADS,
    "EVERY_FIELD": EVERY_FIELD,
    "NODES": NODES,
    "DRAFTS": DRAFTS,
    "W1 with content": W1_CONTENT,
}


def variables_for(world: World) -> dict[str, Any]:
    """Every variable the documents take (each takes the ones it declares)."""
    ids = [world.gid("User", world.alice), world.gid("Post", world.posts[world.alice][0])]
    ids += [world.gid("Post", world.drafts[world.alice][0])]
    ids += [world.gid("Tag", pk) for pk in world.tags.values()]
    ids += [world.gid("Product", pk) for pk in world.products[:2]]
    ids += [world.gid("Order", pk) for pks in world.orders.values() for pk in pks[:1]]
    ids += [world.gid("Account", pk) for pk in world.accounts.values()]
    ids += [world.gid("Transfer", pk) for pk in world.transfers]
    return {"n": 3, "postId": ids[1], "ids": ids[:100]}


def declared(document: str, variables: dict[str, Any]) -> dict[str, Any]:
    names = set(re.findall(r"\$(\w+)\s*:", document))
    return {name: value for name, value in variables.items() if name in names}


@pytest.fixture(scope="session")
async def wide_app(settings: Settings) -> AsyncIterator[Any]:
    """The app reading whole rows: the reference for the answers."""
    application = create_app(settings.model_copy(update={"narrow_columns": False}))
    async with application.router.lifespan_context(application):
        yield application


async def post(app: Any, query: str, variables: dict[str, Any], token: Any) -> Any:
    """(status, body, statements sent) of ``query`` on ``app``."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return response.status_code, response.json(), sent


@pytest.mark.parametrize("viewer", [None, "alice", "admin"])
@pytest.mark.parametrize("name", list(QUERIES))
async def test_narrow_reads_answer_as_whole_rows(app, wide_app, world, name, viewer):
    query = QUERIES[name]
    variables = declared(query, variables_for(world))
    token = world.tokens[viewer] if viewer else None
    status, body, narrow_sent = await post(app, query, variables, token)
    wide_status, wide_body, wide_sent = await post(wide_app, query, variables, token)
    assert (status, body) == (wide_status, wide_body)
    assert status == 200
    assert body["data"] is not None or viewer is None  # anonymous: orders are refused
    assert len(narrow_sent) == len(wide_sent)  # the same statements, narrower
    assert sum(map(len, narrow_sent)) <= sum(map(len, wide_sent))


async def test_the_feed_reads_neither_post_bodies_nor_password_hashes(gql, sql):
    await gql(documents.W1_FEED)
    assert len(sql.statements) == 6
    text = "\n".join(sql.statements)
    assert "content" not in text
    assert "password_hash" not in text
    assert "email" not in text


async def test_asking_for_content_reads_it(gql, sql):
    body = await gql(W1_CONTENT)
    assert all(edge["node"]["content"] for edge in body["data"]["posts"]["edges"])
    assert len(sql.statements) == 6
    assert "posts.content" in sql.statements[0]
    assert not any("password_hash" in statement for statement in sql.statements)


async def test_the_viewer_row_is_read_whole_and_serves_the_narrow_document(gql, world, sql):
    """The viewer's row (read before the plan) primes the users' loader: a superset."""
    body = await gql("{ viewer { username email postCount } }", token=world.tokens["alice"])
    assert body["data"]["viewer"]["username"] == "alice"
    assert len(sql.statements) == 1  # the token's lookup; the viewer needs nothing more


async def test_a_document_reads_the_union_of_its_positions_columns(gql):
    await gql(documents.W1_FEED)
    feed = next(
        plan
        for operation, plan in PLANS.entries.values()
        if operation.loc.source.body == documents.W1_FEED and plan.columns is not None
    )
    assert feed.columns == {
        Post: {"id", "author_id", "published_at", "title", "comment_count"},
        User: {"id", "username"},
        Profile: {"id", "display_name"},
        Tag: {"id", "name"},
        Comment: {"id", "post_id", "author_id", "body"},
    }


def test_a_live_batch_reads_whole_rows():
    """A live event batch's loaders serve many documents: no one plan narrows them."""
    shared = LoaderRegistry(ctx=None)  # type: ignore[arg-type]
    per_viewer = LoaderRegistry(ctx=None, shared=shared)  # type: ignore[arg-type]
    per_viewer.narrow({Post: frozenset({"id"})})
    assert per_viewer.columns == {} and shared.columns == {}


def test_a_field_that_does_not_say_what_it_reads_makes_its_table_whole():
    """The safe fallback: one undeclared field at any position of a table's types."""
    post_type = schema._schema.get_type("Post")
    tag_type = schema._schema.get_type("Tag")

    def leaf(attribute: str | None = None, metadata: Any = None) -> Any:
        definition = SimpleNamespace(metadata=metadata or {})
        return SimpleNamespace(
            typename=False,
            attribute=attribute,
            field_def=SimpleNamespace(extensions={"strawberry-definition": definition}),
            completion=SimpleNamespace(kind=LEAF),
        )

    def at(plan: Any) -> Any:
        return SimpleNamespace(
            typename=False, attribute="x", completion=SimpleNamespace(kind=OBJECT, plan=plan)
        )

    posts = SimpleNamespace(type=post_type, fields=[leaf("title"), leaf()])  # undeclared
    tags = SimpleNamespace(type=tag_type, fields=[leaf("name")])
    root = SimpleNamespace(type=schema._schema.query_type, fields=[at(posts), at(tags)])
    assert document_columns(root) == {Tag: {"id", "name"}}
