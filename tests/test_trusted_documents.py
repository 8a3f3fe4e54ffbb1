"""Trusted documents: manifests added with ``gql-app trust-documents`` (a real
subprocess), then a server in that mode (real uvicorn, real HTTP and WebSocket)
that runs those documents only and refuses anything else before parsing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect

from gql_app.data.trusted_documents import TrustedDocument
from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.conftest import scratch_database
from tests.factories import World, build_world

WITHIN = 10.0
GRAPHQL_RESPONSE = "application/graphql-response+json"

TAG = "query Tag($name: String!) { tag(name: $name) { name postCount } }"
ADD_COMMENT = """mutation AddComment($postId: ID!, $body: String!) {
  addComment(input: {postId: $postId, body: $body}) { comment { body } userErrors { code } }
}"""
COMMENT_ADDED = """subscription CommentAdded($postId: ID!) {
  commentAdded(postId: $postId) { body }
}"""
LATER = 'query Later { tag(name: "beta") { name } }'


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


# graphql-codegen's client preset: sha256 of the document -> document
CODEGEN = {sha256(TAG): TAG, sha256(ADD_COMMENT): ADD_COMMENT}
# Relay's compiler: its own ids (md5 by default) -> document
RELAY_ID = hashlib.md5(COMMENT_ADDED.encode()).hexdigest()
RELAY = {RELAY_ID: COMMENT_ADDED, "TagQueryRelay": TAG}


def trust(url: str, *manifests: Path) -> subprocess.CompletedProcess[str]:
    """``gql-app trust-documents`` in its own process, on the database at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GQL_")}
    env["DATABASE_URL"] = url
    command = [sys.executable, "-m", "gql_app.tools.cli", "trust-documents", *map(str, manifests)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def manifest(folder: Path, name: str, documents: dict[str, Any]) -> Path:
    path = folder / name
    path.write_bytes(orjson.dumps(documents))
    return path


@dataclass
class Trusted:
    url: str
    app: Any
    engine: AsyncEngine
    world: World
    http: httpx.AsyncClient
    ws_url: str
    added: list[subprocess.CompletedProcess[str]]
    folder: Path

    async def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.http.post("/graphql", json=body, headers=headers)


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    """``app`` under uvicorn on a free port: the port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WITHIN)


@pytest.fixture(scope="module")
async def trusted(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Trusted]:
    folder = tmp_path_factory.mktemp("manifests")
    async with scratch_database(server_url, "gql_trusted") as url:
        codegen = manifest(folder, "persisted-documents.json", CODEGEN)
        relay = manifest(folder, "relay-persisted.json", RELAY)
        added = [await asyncio.to_thread(trust, url, codegen, relay)]
        added.append(await asyncio.to_thread(trust, url, codegen))
        # A refresh interval longer than the module: a miss never reads the database here.
        settings = Settings(
            DATABASE_URL=url,
            secret_key="test",
            trusted_documents=True,
            trusted_documents_refresh_s=3600,
        )
        app = create_app(settings)
        async with (
            served(app) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):
            world = await build_world(app.state.engine)
            yield Trusted(
                url,
                app,
                app.state.engine,
                world,
                http,
                f"ws://127.0.0.1:{port}/graphql",
                added,
                folder,
            )


@pytest.fixture
def statements(trusted: Trusted) -> Any:
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(trusted.engine.sync_engine, "before_cursor_execute", listener)
    yield seen
    event.remove(trusted.engine.sync_engine, "before_cursor_execute", listener)


@pytest.fixture
def lane_answers(trusted: Trusted, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operations the query lane answered (the rest took the full path)."""
    answered: list[str] = []
    lane = trusted.app.lane
    execute = lane._execute

    async def counted(ctx: Any, prepared: Any, *args: Any) -> Any:
        answered.append(prepared.name)
        return await execute(ctx, prepared, *args)

    monkeypatch.setattr(lane, "_execute", counted)
    return answered


def code(response: httpx.Response) -> str:
    body = response.json()
    assert "data" not in body, body
    return body["errors"][0]["extensions"]["code"]  # type: ignore[no-any-return]


ALPHA = {"tag": {"name": "alpha", "postCount": 0}}


# ---------------------------------------------------------------- the CLI


async def test_the_cli_adds_both_manifest_formats_once(trusted: Trusted) -> None:
    first, again = trusted.added
    assert first.returncode == 0, first.stderr
    assert "Added 4 trusted documents; 0 already present." in first.stdout
    assert again.returncode == 0, again.stderr
    assert "Added 0 trusted documents; 2 already present." in again.stdout
    async with trusted.engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(TrustedDocument))
    assert stored == 4


async def test_the_cli_refuses_invalid_documents_and_adds_none(trusted: Trusted) -> None:
    bad = manifest(
        trusted.folder,
        "bad.json",
        {
            sha256("{ users {"): "{ users {",
            "unknown-field": "{ nope }",
            "valid": '{ tag(name: "gamma") { name } }',
            "not-a-string": 42,
        },
    )
    refused = await asyncio.to_thread(trust, trusted.url, bad)
    assert refused.returncode == 1
    assert f"{sha256('{ users {')}: Syntax Error" in refused.stderr
    assert "unknown-field: Cannot query field 'nope' on type 'Query'." in refused.stderr
    assert "not-a-string: the document is not a string" in refused.stderr
    assert "Refused: no document was added." in refused.stderr
    conflict = manifest(trusted.folder, "conflict.json", {"TagQueryRelay": LATER})
    refused = await asyncio.to_thread(trust, trusted.url, conflict)
    assert refused.returncode == 1
    assert "TagQueryRelay: already trusted with another document" in refused.stderr
    async with trusted.engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(TrustedDocument))
    assert stored == 4


# ---------------------------------------------------------------- trusted requests run


@pytest.mark.parametrize(
    "reference",
    [
        {"documentId": sha256(TAG)},
        {"documentId": f"sha256:{sha256(TAG)}"},
        {"documentId": "TagQueryRelay"},
        {"doc_id": "TagQueryRelay"},
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(TAG)}}},
        {"query": TAG},
    ],
    ids=["documentId", "sha256-prefix", "relay-id", "doc_id", "apq-shape", "full-text"],
)
async def test_a_trusted_query_runs_on_the_lane(
    trusted: Trusted, lane_answers: list[str], reference: dict[str, Any]
) -> None:
    response = await trusted.post({**reference, "variables": {"name": "alpha"}})
    assert response.status_code == 200
    assert response.json()["data"]["tag"]["name"] == "alpha"
    assert lane_answers == ["Tag"]


async def test_a_trusted_query_runs_over_get_on_the_full_path(
    trusted: Trusted, lane_answers: list[str]
) -> None:
    variables = orjson.dumps({"name": "alpha"}).decode()
    by_id = await trusted.http.get(
        "/graphql", params={"documentId": sha256(TAG), "variables": variables}
    )
    apq = {"persistedQuery": {"version": 1, "sha256Hash": sha256(TAG)}}
    by_hash = await trusted.http.get(
        "/graphql", params={"extensions": orjson.dumps(apq).decode(), "variables": variables}
    )
    assert by_id.status_code == by_hash.status_code == 200
    assert by_id.json()["data"]["tag"]["name"] == by_hash.json()["data"]["tag"]["name"] == "alpha"
    assert lane_answers == []


async def test_a_trusted_mutation_runs_on_the_full_path(trusted: Trusted) -> None:
    world = trusted.world
    variables = {"postId": world.gid("Post", world.posts[world.alice][0]), "body": "trusted"}
    response = await trusted.post(
        {"documentId": sha256(ADD_COMMENT), "variables": variables},
        authorization=f"Bearer {world.tokens['bob']}",
    )
    payload = response.json()["data"]["addComment"]
    assert payload == {"comment": {"body": "trusted"}, "userErrors": []}
    over_get = await trusted.http.get(
        "/graphql",
        params={"documentId": sha256(ADD_COMMENT), "variables": orjson.dumps(variables).decode()},
    )
    assert over_get.status_code == 405


# ---------------------------------------------------------------- anything else is refused


async def test_an_untrusted_document_is_refused_before_it_is_parsed(
    trusted: Trusted, statements: list[str]
) -> None:
    invalid = await trusted.post({"query": "{ users {"})
    assert invalid.status_code == 200
    assert invalid.json() == {
        "errors": [
            {
                "message": (
                    "This server runs trusted documents only: send the id of a document from "
                    "the client's manifest (documentId or extensions.persistedQuery.sha256Hash)."
                ),
                "extensions": {"code": "UNTRUSTED_DOCUMENT"},
            }
        ]
    }
    strict = await trusted.post({"query": "{ users {"}, accept=GRAPHQL_RESPONSE)
    assert strict.status_code == 400 and code(strict) == "UNTRUSTED_DOCUMENT"
    assert statements == []


async def test_unknown_ids_introspection_apq_and_graphiql_are_refused(
    trusted: Trusted, statements: list[str]
) -> None:
    apq_query = '{ tag(name: "alpha") { name } }'
    apq = {"persistedQuery": {"version": 1, "sha256Hash": sha256(apq_query)}}
    refused = [
        await trusted.post({"query": "{ __schema { types { name } } }"}),
        await trusted.post({"documentId": "0" * 64}),
        await trusted.post({"doc_id": "unknown"}),
        await trusted.post({"query": apq_query, "extensions": apq}),  # APQ registers nothing
        await trusted.post({"extensions": apq}),
        await trusted.post({}),
        await trusted.http.get("/graphql", params={"query": "{ __typename }"}),
    ]
    assert [code(r) for r in refused] == ["UNTRUSTED_DOCUMENT"] * len(refused)
    graphiql = await trusted.http.get("/graphql", headers={"accept": "text/html"})
    assert graphiql.status_code == 404
    assert statements == []


# ---------------------------------------------------------------- WebSocket


async def test_a_trusted_subscription_runs_and_an_untrusted_one_is_refused(
    trusted: Trusted,
) -> None:
    world = trusted.world
    post = world.gid("Post", world.posts[world.alice][1])
    async with connect(trusted.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]

        async def send(message: Any) -> None:
            await ws.send(orjson.dumps(message).decode())

        async def recv() -> Any:
            return orjson.loads(await asyncio.wait_for(ws.recv(), WITHIN))

        await send({"type": "connection_init", "payload": {}})
        assert await recv() == {"type": "connection_ack"}
        untrusted = {"query": 'subscription { commentAdded(postId: "x") { body } }'}
        await send({"id": "no", "type": "subscribe", "payload": untrusted})
        refusal = await recv()
        assert refusal["id"] == "no" and refusal["type"] == "error"
        assert refusal["payload"][0]["extensions"]["code"] == "UNTRUSTED_DOCUMENT"
        hub = trusted.app.state.hub
        before = hub.count
        payload = {"documentId": RELAY_ID, "variables": {"postId": post}}
        await send({"id": "yes", "type": "subscribe", "payload": payload})
        for _ in range(int(WITHIN / 0.01)):
            if hub.count > before:
                break
            await asyncio.sleep(0.01)
        assert hub.count > before, "the subscription did not start"
        added = await trusted.post(
            {"documentId": sha256(ADD_COMMENT), "variables": {"postId": post, "body": "live"}},
            authorization=f"Bearer {world.tokens['bob']}",
        )
        assert added.json()["data"]["addComment"]["userErrors"] == []
        message = await recv()
        assert message == {
            "id": "yes",
            "type": "next",
            "payload": {"data": {"commentAdded": {"body": "live"}}},
        }


# ---------------------------------------------------------------- replicas


async def test_another_replica_picks_up_documents_trusted_after_it_started(
    trusted: Trusted,
) -> None:
    replica = create_app(
        Settings(
            DATABASE_URL=trusted.url,
            secret_key="test",
            trusted_documents=True,
            trusted_documents_refresh_s=0,
        )
    )
    later = manifest(trusted.folder, "later.json", {sha256(LATER): LATER})
    async with replica.router.lifespan_context(replica):
        transport = httpx.ASGITransport(app=replica)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            before = await http.post("/graphql", json={"documentId": sha256(LATER)})
            assert code(before) == "UNTRUSTED_DOCUMENT"
            added = await asyncio.to_thread(trust, trusted.url, later)
            assert added.returncode == 0, added.stderr
            after = await http.post("/graphql", json={"documentId": sha256(LATER)})
            assert after.json() == {"data": {"tag": {"name": "beta"}}}
    # The first server refreshes at most once an hour (its setting): still refused there.
    assert code(await trusted.post({"documentId": sha256(LATER)})) == "UNTRUSTED_DOCUMENT"


# ---------------------------------------------------------------- off (the default)


async def test_off_mode_runs_any_document_and_ignores_document_ids(
    client: httpx.AsyncClient,
) -> None:
    ran = await client.post("/graphql", json={"query": "{ __typename }"})
    assert ran.json() == {"data": {"__typename": "Query"}}
    by_id = await client.post("/graphql", json={"documentId": sha256(TAG)})
    assert by_id.status_code == 400
    assert code(by_id) == "BAD_REQUEST"
