"""Snapshot consistency of a query, and no leaked connections."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from gql_app.models import Post, Profile, User

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
    assert engine.pool.checkedout() == 0
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
