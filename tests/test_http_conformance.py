"""GraphQL over HTTP: media types, status codes, methods, and what is never executed."""

from __future__ import annotations

import pytest

GRAPHQL_RESPONSE = "application/graphql-response+json"
QUERY = '{ tag(name: "alpha") { name } }'


async def post(client, body=None, *, accept=None, content_type="application/json", raw=None):
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    import orjson

    content = raw if raw is not None else orjson.dumps(body)
    return await client.post("/graphql", content=content, headers=headers)


async def test_graphql_response_json_is_used_when_accepted(client, world):
    response = await post(
        client, {"query": QUERY}, accept=f"{GRAPHQL_RESPONSE}, application/json;q=0.9"
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json() == {"data": {"tag": {"name": "alpha"}}}


async def test_application_json_by_default(client, world):
    response = await post(client, {"query": QUERY})
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE, 400), ("application/json", 200)])
async def test_a_validation_error_has_no_data_and_its_status_depends_on_the_media_type(
    client, accept, status
):
    response = await post(client, {"query": "{ nope }"}, accept=accept)
    assert response.status_code == status
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_field_error_keeps_data_and_200_with_graphql_response_json(client, world):
    response = await post(
        client,
        {"query": '{ orders { totalCount } tag(name: "alpha") { name } }'},
        accept=GRAPHQL_RESPONSE,
    )
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_mutation_over_get_is_405_with_allow_post(client, world):
    response = await client.get("/graphql", params={"query": "mutation { logOut { ok } }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_other_methods_are_405(client):
    response = await client.put("/graphql", json={"query": QUERY})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", b'{"query": "{ __typename }"}'),
        ("application/x-www-form-urlencoded", b"query=%7B__typename%7D"),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("application/graphql", b"{ __typename }"),
    ],
)
async def test_unsupported_content_types_are_415_and_never_executed(client, sql, content_type, raw):
    response = await post(client, content_type=content_type, raw=raw)
    assert response.status_code == 415
    assert sql.count == 0


async def test_an_accept_we_cannot_serve_is_406(client):
    response = await post(client, {"query": QUERY}, accept="text/csv")
    assert response.status_code == 406


async def test_batching_is_off(client):
    response = await post(client, [{"query": QUERY}, {"query": QUERY}])
    assert response.status_code == 400


async def test_several_operations_need_an_operation_name(client, world, sql):
    document = 'query A { tag(name: "alpha") { name } } query B { tag(name: "beta") { name } }'
    response = await post(client, {"query": document}, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert "data" not in response.json()
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert sql.count == 0
    chosen = await post(client, {"query": document, "operationName": "B"})
    assert chosen.json() == {"data": {"tag": {"name": "beta"}}}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'"x"',
        b"null",
        b"true",
        b'{"query": null}',
        b'{"query": "{ __typename }", "variables": []}',
        b'{"query": "{ __typename }", "operationName": 5}',
        b'{"query": "{ __typename }", "extensions": "x"}',
    ],
)
async def test_malformed_requests_are_400_with_a_coded_json_error(client, raw):
    response = await post(client, raw=raw)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"]


async def test_an_oversized_body_is_413_without_being_executed(client, sql):
    big = b'{"query": "{ __typename }", "variables": {"x": "' + b"a" * 1_100_000 + b'"}}'
    response = await post(client, raw=big)
    assert response.status_code == 413
    assert sql.count == 0


async def test_an_oversized_streamed_body_is_413(client):
    async def chunks():
        for _ in range(40):
            yield b"a" * 50_000

    response = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_cors_is_off_by_default(client):
    response = await client.options(
        "/graphql",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_only_configured_origins(settings):
    import httpx

    from gql_app.web.app import create_app

    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.example"]}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            preflight = {"Access-Control-Request-Method": "POST"}
            ok = await http.options(
                "/graphql", headers={"Origin": "https://app.example", **preflight}
            )
            assert ok.headers["access-control-allow-origin"] == "https://app.example"
            other = await http.options(
                "/graphql", headers={"Origin": "https://evil.example", **preflight}
            )
            assert "access-control-allow-origin" not in other.headers
            # A cross-origin query itself (a POST the query lane would take) carries them too
            query = await http.post(
                "/graphql",
                json={"query": "{ __typename }"},
                headers={"Origin": "https://app.example"},
            )
            assert query.json() == {"data": {"__typename": "Query"}}
            assert query.headers["access-control-allow-origin"] == "https://app.example"
