"""GQL_READ_REPLICA_URL against a real streaming standby (``tests/streaming.py``):
queries read it, mutations and fresh tokens use the primary, and a standby that
lags (replay paused) or vanishes (stopped) is skipped until it is back.

Where an answer came from shows in its data (a row the standby has not replayed
yet) and in the statements each engine ran.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from gql_app.data.db import asyncpg_dsn
from gql_app.data.driver_reads import BEGIN_READ_ONLY
from gql_app.settings import Settings
from gql_app.users.passwords import token_digest
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, Streaming
from tests.documents import W3_NODE
from tests.factories import PASSWORD

MAX_LAG_S = 1.0
INTERVAL_S = 0.1

TAG = "query Tag($name: String!) { tag(name: $name) { name } }"
POST = "query Post($id: ID!) { node(id: $id) { ... on Post { title } } }"
VIEWER = "query Viewer { viewer { username } }"
CREATE_POST = """
mutation CreatePost($input: CreatePostInput!) {
  createPost(input: $input) { post { id title } userErrors { code } }
}
"""
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { token user { username } userErrors { code } }
}
"""
LOG_IN = """
mutation LogIn($input: LogInInput!) { logIn(input: $input) { token userErrors { code } } }
"""


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/nothing"  # nothing listens there


@dataclass
class Served:
    app: Any
    http: httpx.AsyncClient
    gql: GraphQLClient


@asynccontextmanager
async def running(streaming: Streaming, **settings: Any) -> AsyncIterator[Served]:
    options: dict[str, Any] = {
        "DATABASE_URL": streaming.url,
        "read_replica_url": streaming.replica_url,
        "replica_max_lag_s": MAX_LAG_S,
        "replica_check_interval_s": INTERVAL_S,
        "secret_key": "test",
        "connect_timeout_s": 1,
        **settings,
    }
    app = create_app(Settings(**options))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Served(app, http, GraphQLClient(http))


@pytest.fixture(scope="module")
async def served(streaming: Streaming) -> AsyncIterator[Served]:
    async with running(streaming) as served:
        yield served


@pytest.fixture
async def paused(streaming: Streaming, served: Served) -> AsyncIterator[None]:
    """Replay paused on the standby for the test; on, and caught up, after it."""
    await ready_when(served, "ok")
    await streaming.pair.pause()
    try:
        yield
    finally:
        await streaming.pair.resume()


@contextmanager
def statements(served: Served) -> Iterator[dict[str, int]]:
    """Statements each engine ran while the block ran (the monitor's are not
    statements of the engines: it reads on the driver)."""
    counts = {"primary": 0, "replica": 0}
    engines = {"primary": served.app.state.engine, "replica": served.app.state.replica.engine}
    listeners = {}
    for name, engine in engines.items():

        def count(*args: Any, name: str = name) -> None:
            counts[name] += 1

        listeners[name] = count
        event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield counts
    finally:
        for name, engine in engines.items():
            event.remove(engine.sync_engine, "before_cursor_execute", listeners[name])


async def sql_value(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.05)


async def ready_when(served: Served, replica: str) -> dict[str, Any]:
    """/ready's body once it reports the replica in state ``replica``."""
    found: dict[str, Any] = {}

    async def reported() -> bool:
        found.update((await served.http.get("/ready")).json())
        return found.get("replica") == replica

    await eventually(reported, f"/ready says the replica is {replica}")
    return found


async def test_queries_read_the_replica(served, streaming, paused):
    # Given a tag written on the primary that the standby has not replayed
    await sql_value(streaming.url, "INSERT INTO tags (name) VALUES ('unreplayed')")
    # When a query asks for it
    with statements(served) as counted:
        body = await served.gql(TAG, {"name": "unreplayed"})
    # Then it is not there: the query read the replica
    assert body["data"] == {"tag": None}
    assert counted == {"primary": 0, "replica": 1}


async def test_a_one_statement_query_reads_the_replica_without_a_transaction(
    served, streaming, monkeypatch
):
    """W3 (a post by id and its author, one statement) on the replica: no BEGIN, no
    ROLLBACK; with a token, the lookup and the read in one transaction there."""
    await ready_when(served, "ok")
    sent: list[str] = []
    original = asyncpg.Connection.execute

    async def execute(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if query in (BEGIN_READ_ONLY, "ROLLBACK"):
            sent.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", execute)
    world = streaming.world
    variables = {"postId": world.gid("Post", world.posts[world.alice][0])}
    with statements(served) as counted:
        body = await served.gql(W3_NODE, variables)
    assert body["data"] == {"node": {"title": "alice post 0", "author": {"username": "alice"}}}
    assert counted == {"primary": 0, "replica": 1}
    assert sent == []
    with statements(served) as counted:
        body = await served.gql(W3_NODE, variables, token=world.tokens["bob"])
    assert body["data"]["node"]["author"] == {"username": "alice"}
    assert counted == {"primary": 0, "replica": 2}
    assert sent == [BEGIN_READ_ONLY, "ROLLBACK"]


async def test_queries_on_orm_sessions_read_the_replica_too(streaming, paused):
    await sql_value(streaming.url, "INSERT INTO tags (name) VALUES ('unreplayed-too')")
    async with running(streaming, driver_reads=False, replica_max_lag_s=600) as served:
        with statements(served) as counted:
            body = await served.gql(TAG, {"name": "unreplayed-too"})
        assert body["data"] == {"tag": None}
        assert counted["primary"] == 0
        assert counted["replica"] > 0
        # and a token the replica does not know is looked up on the primary there too
        signed_up = await served.gql(
            SIGN_UP,
            {"input": {"username": "orm", "email": "orm@example.org", "password": "pw-123456"}},
        )
        token = signed_up["data"]["signUp"]["token"]
        assert (await served.gql(VIEWER, token=token))["data"] == {"viewer": {"username": "orm"}}


async def test_a_mutation_writes_the_primary_and_its_author_reads_it_back(
    served, streaming, paused
):
    tokens = streaming.world.tokens
    with statements(served) as counted:
        created = await served.gql(
            CREATE_POST,
            {"input": {"title": "Fresh", "content": "on the primary", "publish": True}},
            token=tokens["alice"],
        )
    payload = created["data"]["createPost"]
    assert payload["userErrors"] == []
    assert payload["post"]["title"] == "Fresh"  # the payload is read on the primary too
    assert counted["replica"] == 0
    assert counted["primary"] > 0
    post = {"id": payload["post"]["id"]}
    # Its author reads the primary until the standby shows the commit...
    with statements(served) as counted:
        mine = await served.gql(POST, post, token=tokens["alice"])
    assert mine["data"] == {"node": {"title": "Fresh"}}
    assert counted["replica"] == 0
    # ...anyone else reads the replica, where it is not yet.
    assert (await served.gql(POST, post, token=tokens["bob"]))["data"] == {"node": None}
    assert (await served.gql(POST, post))["data"] == {"node": None}
    # Once replayed, everyone sees it, and the author reads the replica again.
    await streaming.pair.resume()

    async def alice_reads_the_replica() -> bool:
        with statements(served) as counted:
            mine = await served.gql(POST, post, token=tokens["alice"])
        return mine["data"] == {"node": {"title": "Fresh"}} and counted["primary"] == 0

    await eventually(alice_reads_the_replica, "the author reads the replica again")
    assert (await served.gql(POST, post))["data"] == {"node": {"title": "Fresh"}}


async def test_a_token_just_issued_works_at_once_while_replay_is_paused(streaming, paused):
    # Password hashing takes a while: a bound the test cannot outlast keeps the replica on.
    async with running(streaming, replica_max_lag_s=600) as served:
        await token_just_issued(served, streaming)


async def token_just_issued(served: Served, streaming: Streaming) -> None:
    signed_up = await served.gql(
        SIGN_UP,
        {"input": {"username": "newbie", "email": "newbie@example.org", "password": "pw-123456"}},
    )
    token = signed_up["data"]["signUp"]["token"]
    logged_in = await served.gql(
        LOG_IN, {"input": {"email": "bob@example.com", "password": PASSWORD}}
    )
    bobs = logged_in["data"]["logIn"]["token"]
    # The standby does not know either token yet...
    known = "SELECT count(*) FROM auth_tokens WHERE token_hash = ANY($1::text[])"
    digests = [token_digest(token), token_digest(bobs)]
    assert await sql_value(streaming.replica_url, known, digests) == 0
    assert await sql_value(streaming.url, known, digests) == 2
    # ...and both open a session at once: the operation read the primary.
    with statements(served) as counted:
        assert (await served.gql(VIEWER, token=token))["data"] == {"viewer": {"username": "newbie"}}
    assert (await served.gql(VIEWER, token=bobs))["data"] == {"viewer": {"username": "bob"}}
    # One lookup on each: not found on the replica, then found on the primary (the
    # viewer field reads no more).
    assert counted == {"primary": 1, "replica": 1}
    # A token unknown everywhere is no viewer (and no error).
    assert (await served.gql(VIEWER, token="no-such-token"))["data"] == {"viewer": None}


async def test_a_lagging_replica_is_skipped_until_it_catches_up(served, streaming):
    await ready_when(served, "ok")
    await streaming.pair.pause()
    try:
        # Given a write the standby does not replay for longer than the bound
        await sql_value(streaming.url, "INSERT INTO tags (name) VALUES ('while-lagging')")
        ready = await ready_when(served, "lagging")
        # Then /ready says so, and stays ready: the primary decides
        assert ready["status"] == "ready"
        assert ready["replica_lag_bytes"] > 0
        assert ready["replica_lag_seconds"] > MAX_LAG_S
        # and queries read the primary, where the new row is
        with statements(served) as counted:
            body = await served.gql(TAG, {"name": "while-lagging"})
        assert body["data"] == {"tag": {"name": "while-lagging"}}
        assert counted == {"primary": 1, "replica": 0}
        metrics = (await served.http.get("/metrics")).text
        assert 'gql_replica_state{state="lagging"} 1.0' in metrics
        assert 'gql_reads_engine{engine="primary"} 1.0' in metrics
        assert "gql_replica_lag_bytes " in metrics
    finally:
        await streaming.pair.resume()
    # When it has caught up, queries read it again
    ready = await ready_when(served, "ok")
    assert ready["replica_lag_seconds"] <= MAX_LAG_S
    with statements(served) as counted:
        body = await served.gql(TAG, {"name": "while-lagging"})
    assert body["data"] == {"tag": {"name": "while-lagging"}}
    assert counted == {"primary": 0, "replica": 1}
    metrics = (await served.http.get("/metrics")).text
    assert 'gql_reads_engine{engine="replica"} 1.0' in metrics


async def test_a_stopped_replica_is_skipped_until_it_is_back(served, streaming):
    tag = next(iter(streaming.world.tags))
    await ready_when(served, "ok")
    # An app whose monitor checks once, at start: only requests can find the replica gone.
    async with running(streaming, replica_check_interval_s=3600) as unwatched:
        assert (await unwatched.http.get("/ready")).json()["replica"] == "ok"
        await asyncio.to_thread(streaming.pair.standby.stop, "immediate")
        try:
            # The query's BEGIN on the replica fails: it reads the primary, no error.
            with statements(unwatched) as counted:
                body = await unwatched.gql(TAG, {"name": tag})
            assert body["data"] == {"tag": {"name": tag}}
            assert counted == {"primary": 1, "replica": 0}
            ready = await unwatched.http.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["replica"] == "unavailable"
            # The monitored app finds it gone on its own.
            ready_body = await ready_when(served, "unavailable")
            assert ready_body == {
                "status": "ready",
                "replica": "unavailable",
                "replica_lag_bytes": None,
                "replica_lag_seconds": None,
            }
            with statements(served) as counted:
                body = await served.gql(TAG, {"name": tag})
            assert body["data"] == {"tag": {"name": tag}}
            assert counted == {"primary": 1, "replica": 0}
            # Mutations never needed it.
            created = await served.gql(
                CREATE_POST,
                {"input": {"title": "Meanwhile", "content": "replica down"}},
                token=streaming.world.tokens["bob"],
            )
            assert created["data"]["createPost"]["userErrors"] == []
        finally:
            await asyncio.to_thread(streaming.pair.standby.start)
    # Back: the monitor finds it, and queries read it again.
    await ready_when(served, "ok")
    with statements(served) as counted:
        body = await served.gql(TAG, {"name": tag})
    assert body["data"] == {"tag": {"name": tag}}
    assert counted == {"primary": 0, "replica": 1}


async def test_a_dead_primary_is_not_ready_while_queries_read_the_replica(streaming):
    tag = next(iter(streaming.world.tags))
    settings = {"DATABASE_URL": closed_port_url()}
    async with running(streaming, **settings) as served:
        ready = await served.http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["replica"] == "ok"
        assert (await served.gql(TAG, {"name": tag}))["data"] == {"tag": {"name": tag}}
