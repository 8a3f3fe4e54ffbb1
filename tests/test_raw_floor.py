"""The raw floor (bench/raw_floor.py) answers W1-W3 as gql_app does, with its own
hand-written copies of gql_app's statements: they must change together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from bench import raw_floor
from bench.workloads import W1_FEED, W2_PEOPLE, W3_NODE
from gql_app.data.db import asyncpg_dsn


def without_cursors(value: Any) -> Any:
    """The answer without cursors: they are signed with another key here."""
    if isinstance(value, dict):
        return {k: without_cursors(v) for k, v in value.items() if k != "cursor"}
    if isinstance(value, list):
        return [without_cursors(v) for v in value]
    return value


@pytest.mark.parametrize("document", [W1_FEED, W2_PEOPLE, W3_NODE], ids=["W1", "W2", "W3"])
async def test_the_raw_floor_answers_byte_equal_with_the_same_statements(
    gql, world, database_url, sql, document
):
    variables = {"postId": world.gid("Post", world.posts[world.alice][0])}
    body = await gql(document, variables)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    try:
        raw = await raw_floor.answer(conn, document, variables)
    finally:
        await conn.close()
    assert orjson.dumps(without_cursors(raw)) == orjson.dumps(without_cursors(body["data"]))
    assert body["data"] != {"node": None}
    # W3's statement is gql_app's, sent alone: no BEGIN, no ROLLBACK on either side;
    # W1 and W2 keep their transaction
    began = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;" in sent
    if document == W3_NODE:
        assert sql.statements == [raw_floor.POSTS_BY_ID_WITH_AUTHOR]
        assert raw_floor.POSTS_BY_ID_WITH_AUTHOR in sent and not began
    else:
        assert began
    # the same statements: gql_app's own text, only the columns the document reads
    assert {s for s in sent if s.startswith("SELECT")} == set(sql.statements)


# ---------------------------------------------------------------- served: the bare ASGI callable

Message = dict[str, Any]


@pytest.fixture
async def floor_state(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The floor's lifespan run as uvicorn runs it: its state holds the pool."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "state": state}
    task = asyncio.create_task(raw_floor.app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    yield state
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task


async def call(state: dict[str, Any], method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    """One HTTP request to the floor in-process: its status and its JSON body."""
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return requests.pop(0) if requests else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "state": dict(state)}
    await raw_floor.app(scope, receive, send)
    start, answer = sent
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    return start["status"], orjson.loads(answer["body"])


async def test_the_served_floor_answers_w3_and_is_ready(floor_state, world):
    post = world.posts[world.alice][0]
    body = {"query": W3_NODE, "variables": {"postId": world.gid("Post", post)}}

    status, payload = await call(floor_state, "POST", "/graphql", orjson.dumps(body))
    ready = await call(floor_state, "GET", "/ready")

    assert status == 200
    assert payload["data"]["node"]["author"] == {"username": "alice"}
    assert ready == (200, {"status": "ready"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "The body is not JSON."),
        (b"[1, 2]", "The body is not a JSON object."),
        (b'{"query": "{ users { nodes { id } } }"}', "only the benchmark documents"),
        (b'{"query": ["a list"]}', "only the benchmark documents"),
        (orjson.dumps({"query": W3_NODE, "variables": [1]}), "must be a JSON object"),
        (orjson.dumps({"query": W3_NODE}), "needs the `postId` variable"),
        (orjson.dumps({"query": W3_NODE, "variables": {"postId": "nonsense"}}), "Invalid ID"),
    ],
    ids=[
        "not-json",
        "not-object",
        "other-document",
        "query-not-text",
        "variables",
        "no-id",
        "bad-id",
    ],
)
async def test_a_body_the_floor_cannot_answer_is_a_400_with_an_error(floor_state, body, message):
    status, payload = await call(floor_state, "POST", "/graphql", body)

    assert status == 400
    assert list(payload) == ["errors"]
    assert message in payload["errors"][0]["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 404),
        ("POST", "/graphq", 404),
        ("GET", "/graphql", 405),
        ("POST", "/ready", 405),
    ],
)
async def test_other_routes_and_methods_are_404_and_405_without_touching_the_pool(
    method, path, status
):
    assert (await call({}, method, path))[0] == status
