"""Snapshot consistency of a query, and no leaked connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import delete, event, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gql_app.data.driver_reads import KeptConnections, kept
from gql_app.models import Post, Profile, User
from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, in_use

CONSISTENT = """
{ user(username: "writer") { postCount posts(first: 100, filter: {published: true}) { totalCount nodes { id } } } }
"""


async def test_counts_and_edges_agree_while_writers_commit(gql, engine):
    # Given a user whose posts are being inserted by a concurrent writer
    async with AsyncSession(engine) as session:
        writer = User(username="writer", email="writer@example.com", password_hash="x")
        session.add(writer)
        await session.flush()
        writer_id = writer.id
        session.add(Profile(user_id=writer_id, display_name="Writer"))
        await session.commit()
    stop = asyncio.Event()

    async def write() -> int:
        written = 0
        while not stop.is_set() and written < 90:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(Post).values(
                        author_id=writer_id,
                        title=f"w{written}",
                        content="c",
                        published_at=datetime.now(UTC),
                    )
                )
            written += 1
            await asyncio.sleep(0)
        return written

    writer_task = asyncio.ensure_future(write())
    try:
        # When readers ask for three numbers that come from three statements
        seen = []
        for _ in range(40):
            data = (await gql(CONSISTENT))["data"]["user"]
            posts = data["posts"]
            # Then each response agrees with itself: one snapshot
            assert data["postCount"] == posts["totalCount"] == len(posts["nodes"])
            seen.append(posts["totalCount"])
        stop.set()
        written = await writer_task
        assert written > 0 and len(set(seen)) > 1, "the writer never overlapped the readers"
    finally:
        stop.set()
        await asyncio.gather(writer_task, return_exceptions=True)
        async with AsyncSession(engine) as session:
            await session.execute(delete(User).where(User.id == writer_id))
            await session.commit()


async def test_pool_returns_to_idle_after_many_requests_failing_ones_included(gql, engine, world):
    queries = [
        "{ posts(first: 3) { nodes { title author { username } } } }",
        "{ posts(first: 500) { nodes { title } } }",  # refused: page too large
        '{ posts(after: "garbage") { nodes { title } } }',  # refused: bad cursor
        "{ nope }",  # invalid document
        '{ node(id: "!!!") { id } }',
    ]
    await asyncio.gather(*(gql(queries[i % len(queries)], expect_errors=True) for i in range(1000)))
    assert in_use(engine) == 0
    body = await gql("{ users(first: 1) { totalCount } }")
    assert body["data"]["users"]["totalCount"] >= 33


async def test_a_connection_broken_at_begin_is_replaced_without_an_error(gql, world, monkeypatch):
    """A pooled connection can look open yet fail its first command (its backend was
    just terminated, the server's farewell not yet read). The operation's BEGIN is
    where that shows: the connection is discarded and another one taken."""
    import asyncpg

    from gql_app.data.driver_reads import ReadDB

    original = ReadDB.begin
    broken: list[asyncpg.Connection] = []

    async def first_one_broken(self: ReadDB) -> None:
        if not broken:
            broken.append(self.driver)
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        await original(self)

    monkeypatch.setattr(ReadDB, "begin", first_one_broken)
    body = await gql("{ tags(first: 2) { nodes { name } } }")
    assert len(body["data"]["tags"]["nodes"]) == 2  # answered, no error
    assert len(broken) == 1
    assert broken[0].is_closed()  # the broken connection left the pool


async def test_a_session_broken_at_begin_is_replaced_without_an_error(
    full_path_client, world, monkeypatch
):
    """The same on the ORM session path (mutations; queries with driver reads off)."""
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    query = {"query": "{ tags(first: 2) { nodes { name } } }"}
    await full_path_client.post("/graphql", json=query)  # a pool with a connection in it
    original = AsyncAdapt_asyncpg_connection._start_transaction
    broken: list[object] = []

    async def first_one_broken(self: AsyncAdapt_asyncpg_connection) -> None:
        if not broken:
            broken.append(self)
            try:
                raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
            except Exception as error:
                self._handle_exception(error)
        await original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "_start_transaction", first_one_broken)
    response = await full_path_client.post("/graphql", json=query)
    body = response.json()
    assert "errors" not in body and len(body["data"]["tags"]["nodes"]) == 2
    assert len(broken) == 1
    assert broken[0]._connection.is_closed()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- kept connections


@contextlib.asynccontextmanager
async def small_pool(settings: Settings, size: int) -> AsyncIterator[tuple[Any, GraphQLClient]]:
    """The app on a pool of ``size`` connections and no overflow, waiting at most 2 s."""
    app = create_app(
        settings.model_copy(update={"pool_size": size, "max_overflow": 0, "pool_timeout": 2})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield app, GraphQLClient(http)


async def test_queries_keep_at_most_half_the_pool_so_mutations_find_the_rest(settings, world):
    async with small_pool(settings, size=4) as (app, gql):
        engine = app.state.engine
        # Given queries that used all four connections at once
        await asyncio.gather(*(gql("{ tags(first: 2) { nodes { name } } }") for _ in range(40)))
        # Then at most two stay out of the pool, idle, for the next queries; none is in use
        assert kept(engine).idle <= 2
        assert in_use(engine) == 0
        assert engine.pool.checkedin() >= 2
        # And mutations (which take theirs from the pool) run alongside queries
        token = world.tokens["alice"]
        refused = "mutation { updateProfile(input: {age: 999}) { userErrors { code } } }"
        answers = await asyncio.gather(
            *(gql(refused, token=token) for _ in range(2)),
            *(gql("{ tags(first: 1) { nodes { name } } }") for _ in range(4)),
        )
        assert [a["data"]["updateProfile"]["userErrors"] for a in answers[:2]] == [
            [{"code": "INVALID"}]
        ] * 2
        assert all(a["data"]["tags"]["nodes"] for a in answers[2:])
        assert in_use(engine) == 0


async def test_a_kept_connection_goes_back_to_the_pool_after_its_lease(
    settings, world, monkeypatch
):
    monkeypatch.setattr(KeptConnections, "LEASE_S", 0.0)
    async with small_pool(settings, size=4) as (app, gql):
        engine = app.state.engine
        # When a query ends on a connection that left the pool longer ago than the lease
        await gql("{ tags(first: 1) { nodes { name } } }")
        # Then it went back to the pool (its recycle, pre-ping and guard apply again)
        assert kept(engine).idle == 0
        assert engine.pool.checkedout() == 0


async def test_a_connection_given_back_goes_to_the_query_waiting_for_one(settings, world):
    async with small_pool(settings, size=2) as (app, _gql):
        keeper = kept(app.state.engine)  # keeps one of the two
        # Given both connections lent to queries and a third query waiting in the pool's queue
        first, second = await keeper.take(), await keeper.take()
        third = asyncio.create_task(keeper.take())
        await asyncio.sleep(0.05)
        assert not third.done()
        # When the first query gives its connection back (the keeper has room for it)
        given = first[1].driver_connection
        await keeper.give(first[1], first[2])
        # Then the waiting query gets it at once, not after the pool's 2 s timeout, and
        # no newcomer could have taken it from the keeper ahead of the queue
        lent = await asyncio.wait_for(third, 1)
        assert lent[1].driver_connection is given
        assert keeper.idle == 0
        # And once nobody waits, a connection given back is kept for the next query
        await keeper.give(second[1], second[2])
        assert keeper.idle == 1
        await keeper.give(lent[1], lent[2])
        assert in_use(app.state.engine) == 0


async def test_a_kept_connection_the_server_closed_is_not_used(settings, world):
    async with small_pool(settings, size=4) as (app, gql):
        engine = app.state.engine
        await gql("{ tags(first: 1) { nodes { name } } }")
        assert kept(engine).idle == 1
        # Given the server terminates the kept connection's backend
        async with engine.connect() as conn:
            for pid in await backends(conn):  # the session app's too: they recover alike
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.1)  # the driver reads the server's farewell
        # When the next query runs, it answers without an error, on another connection
        body = await gql("{ tags(first: 1) { nodes { name } } }")
        assert body["data"]["tags"]["nodes"]
        assert in_use(engine) == 0


async def test_shutdown_closes_the_kept_connections(settings, world, engine):
    opened: set[int] = set()

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        opened.add(dbapi_connection.driver_connection.get_server_pid())

    async with small_pool(settings, size=4) as (app, gql):
        event.listen(app.state.engine.sync_engine.pool, "connect", on_connect)
        await asyncio.gather(*(gql("{ tags(first: 1) { nodes { name } } }") for _ in range(8)))
        assert kept(app.state.engine).idle >= 1
        async with engine.connect() as conn:
            assert opened and opened <= await backends(conn)
    # When the app has shut down, none of its connections is open on the server
    async with engine.connect() as conn:
        assert not opened & await backends(conn)


async def backends(conn: AsyncConnection) -> set[int]:
    """The backends connected to this database, other than ``conn``'s."""
    rows = await conn.execute(
        text(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    return set(rows.scalars())
