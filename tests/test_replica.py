"""GQL_READ_REPLICA_URL: query operations read the replica, mutations the primary.

Two databases with the same schema but different rows stand in for a primary
and a lagging replica, so where each answer came from is visible.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, scratch_database
from tests.documents import CREATE_POST
from tests.factories import World, build_world

TAGS = '{ r: tag(name: "replica-only") { name } p: tag(name: "primary-only") { name } }'
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { user { username } userErrors { code } }
}
"""


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/nothing"  # nothing listens there


@dataclass
class Pair:
    primary: str
    replica: str
    primary_world: World
    replica_world: World


async def fill(url: str, label: str) -> World:
    """The factory world, and one tag named after the database (``<label>-only``)."""
    engine = create_async_engine(url)
    try:
        world = await build_world(engine)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO tags (name) VALUES (:n)"), {"n": f"{label}-only"})
    finally:
        await engine.dispose()
    return world


@pytest.fixture(scope="module")
async def pair(server_url: str) -> AsyncIterator[Pair]:
    async with (
        scratch_database(server_url, "gql_primary") as primary,
        scratch_database(server_url, "gql_replica") as replica,
    ):
        yield Pair(primary, replica, await fill(primary, "primary"), await fill(replica, "replica"))


@asynccontextmanager
async def running(primary: str, replica: str) -> AsyncIterator[tuple[Any, GraphQLClient]]:
    app = create_app(
        Settings(
            DATABASE_URL=primary, read_replica_url=replica, secret_key="test", connect_timeout_s=1
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield app, GraphQLClient(http)


@pytest.fixture(scope="module")
async def served(pair: Pair) -> AsyncIterator[tuple[Any, GraphQLClient]]:
    async with running(pair.primary, pair.replica) as served:
        yield served


class Statements:
    """How many statements each engine ran while the block ran."""

    def __init__(self, **engines: AsyncEngine) -> None:
        self.engines = engines
        self.counts = dict.fromkeys(engines, 0)

    def _listener(self, name: str) -> Any:
        def count(*args: Any) -> None:
            self.counts[name] += 1

        return count

    def __enter__(self) -> Statements:
        self._listeners = {name: self._listener(name) for name in self.engines}
        for name, engine in self.engines.items():
            event.listen(engine.sync_engine, "before_cursor_execute", self._listeners[name])
        return self

    def __exit__(self, *exc: object) -> None:
        for name, engine in self.engines.items():
            event.remove(engine.sync_engine, "before_cursor_execute", self._listeners[name])


@pytest.fixture
def statements(served: tuple[Any, GraphQLClient]) -> Iterator[Statements]:
    app, _ = served
    with Statements(primary=app.state.engine, replica=app.state.replica_engine) as counted:
        yield counted


async def test_queries_read_the_replica(served, statements):
    _, gql = served
    body = await gql(TAGS)
    assert body["data"] == {"r": {"name": "replica-only"}, "p": None}
    assert statements.counts["primary"] == 0
    assert statements.counts["replica"] > 0


async def test_mutations_and_their_payloads_use_the_primary(served, pair, statements):
    _, gql = served
    body = await gql(
        CREATE_POST,
        {
            "input": {
                "title": "Written",
                "content": "to the primary",
                "tags": ["primary-only", "fresh-tag"],
            }
        },
        token=pair.primary_world.tokens["alice"],  # the token, too, is found on the primary
    )
    assert body["data"]["createPost"] == {
        "post": {
            "title": "Written",
            "author": {"username": "alice"},
            # "primary-only" was reused, not created: the whole mutation saw the primary.
            "tags": [{"name": "fresh-tag"}, {"name": "primary-only"}],
        },
        "userErrors": [],
    }
    assert statements.counts["replica"] == 0
    assert statements.counts["primary"] > 0
    # This "replica" never catches up: a query right after a write reads the replica.
    after = await gql('{ tag(name: "fresh-tag") { name } }')
    assert after["data"]["tag"] is None
    assert statements.counts["replica"] > 0


async def test_queries_authenticate_against_the_replica(served, pair):
    """A bearer token is looked up where the operation runs: a token the primary
    issued a moment ago may not have reached a lagging replica yet."""
    _, gql = served
    viewer = "{ viewer { username } }"
    signed_up = await gql(
        "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
        {"input": {"username": "newbie", "email": "newbie@example.org", "password": "pw-123456"}},
    )
    token = signed_up["data"]["signUp"]["token"]
    assert (await gql(viewer, token=token))["data"]["viewer"] is None
    on_both = await gql(viewer, token=pair.replica_world.tokens["bob"])
    assert on_both["data"]["viewer"] == {"username": "bob"}


async def test_ready_when_both_answer(served):
    _, gql = served
    ready = await gql.http.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "replica": "ok"}


async def test_a_dead_replica_is_reported_but_mutations_still_work(pair):
    async with running(pair.primary, closed_port_url()) as (_, gql):
        ready = await gql.http.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "replica": "unavailable"}
        body = await gql(TAGS, expect_errors=True)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        body = await gql(
            SIGN_UP,
            {
                "input": {
                    "username": "survivor",
                    "email": "survivor@example.org",
                    "password": "pw-123456",
                }
            },
        )
        assert body["data"]["signUp"] == {"user": {"username": "survivor"}, "userErrors": []}


async def test_a_dead_primary_is_not_ready(pair):
    async with running(closed_port_url(), pair.replica) as (_, gql):
        ready = await gql.http.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "replica": "ok"}
        # Queries still answer from the replica.
        assert (await gql(TAGS))["data"]["r"] == {"name": "replica-only"}
