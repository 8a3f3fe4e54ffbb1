"""The HTTP surface: GET and POST, GraphiQL, health and readiness, malformed bodies."""

from __future__ import annotations

import pytest


async def test_a_query_over_get(client, world):
    response = await client.get("/graphql", params={"query": '{ tag(name: "alpha") { name } }'})
    assert response.status_code == 200
    assert response.json() == {"data": {"tag": {"name": "alpha"}}}


async def test_a_mutation_over_get_is_refused_and_not_run(client, world):
    response = await client.get("/graphql", params={"query": "mutation { logOut { ok } }"})
    assert 400 <= response.status_code < 500


async def test_graphiql_for_a_browser(client):
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_and_ready(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


@pytest.mark.parametrize(
    "body",
    [
        b'"a string"',
        b"null",
        b"42",
        b"[1, 2]",
        b"{not json",
        b'{"query": 42}',
        b'{"query": "{ viewer { id } }", "variables": "x"}',
    ],
)
async def test_malformed_bodies_are_client_errors_not_500(client, body):
    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text


async def test_a_syntax_error_is_reported_with_a_code(gql):
    body = await gql("{ posts(first: ) }", expect_errors=True)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Syntax Error" in body["errors"][0]["message"]


async def test_validation_errors_are_not_masked(gql):
    body = await gql("{ posts { nodes { nope } } }", expect_errors=True)
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_bad_variable_value_is_bad_user_input(gql):
    body = await gql(
        "query($d: DateTime) { posts(filter: {publishedAfter: $d}) { totalCount } }",
        {"d": "yesterday"},
        expect_errors=True,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "SELECT" not in str(body)
