"""Test harness: a real PostgreSQL (DATABASE_URL, else embedded), migrated by Alembic,
the real ASGI app over HTTP, and an exact SQL statement counter."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gql_app.data.db import async_url
from gql_app.data.driver_reads import KeptConnections, kept
from gql_app.settings import Settings
from gql_app.tools.cli import alembic_config  # the migrations that ship in the package
from gql_app.tools.embedded import start_embedded
from gql_app.web.app import create_app
from tests.factories import World, build_world
from tests.streaming import StreamingPair

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    data_dir = Path(os.environ.get("GQL_TEST_DATA_DIR", tempfile.gettempdir())) / "gql_app_test"
    server = start_embedded(data_dir)
    yield server.get_uri()


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.exec_driver_sql(sql)
    await engine.dispose()


def scratch_database_url(server_url: str, name: str) -> str:
    return make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_database(
    server_url: str, prefix: str, migrate: bool = True
) -> AsyncIterator[str]:
    """A new database ``<prefix>_<random>`` on the server of ``server_url``, migrated by
    Alembic to head unless ``migrate`` is false: its URL. Dropped WITH (FORCE) on exit,
    whatever connections are still open on it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = scratch_database_url(server_url, name)
        if migrate:
            # env.py runs its own event loop: give it a thread without one.
            await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        yield url
    finally:
        await _admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, "gql_test") as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        secret_key="test-secret",
        pool_size=5,
        max_overflow=5,
        pool_timeout=5,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def full_path_app(settings: Settings) -> AsyncIterator[Any]:
    """The same server with the query lane and driver reads off: every request takes
    Strawberry's whole pipeline and every operation an ORM session (the reference)."""
    application = create_app(
        settings.model_copy(update={"query_lane": False, "driver_reads": False})
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def full_path_client(full_path_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=full_path_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture(scope="session")
def engine(app: Any) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture(scope="session")
async def world(engine: AsyncEngine) -> World:
    return await build_world(engine)


@dataclass
class StatementCounter:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    def reset(self) -> None:
        self.statements.clear()


@pytest.fixture
def sql(engine: AsyncEngine) -> Iterator[StatementCounter]:
    """Every SQL statement the app sends while the test runs."""
    counter = StatementCounter()

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counter.statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    yield counter
    event.remove(engine.sync_engine, "before_cursor_execute", listener)


@dataclass
class CheckoutCounter:
    count: int = 0


def in_use(engine: AsyncEngine) -> int:
    """Connections of ``engine``'s pool in use by requests: checked out, less those
    kept idle for the next query (``driver_reads.KeptConnections``)."""
    return engine.pool.checkedout() - kept(engine).idle


@pytest.fixture
def checkouts(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckoutCounter]:
    """Connections the app takes while the test runs, from its pool or kept idle
    after an earlier query: none taken, no round trip to the database at all (not
    even BEGIN, which ``sql`` does not see)."""
    counter = CheckoutCounter()
    pooled = CheckoutCounter()
    take = KeptConnections.take

    async def counted(self: KeptConnections) -> Any:
        before = pooled.count
        lent = await take(self)
        if pooled.count == before:  # a kept connection: the pool saw no checkout
            counter.count += 1
        return lent

    def listener(*args: Any) -> None:
        pooled.count += 1
        counter.count += 1

    monkeypatch.setattr(KeptConnections, "take", counted)
    event.listen(engine.sync_engine.pool, "checkout", listener)
    yield counter
    event.remove(engine.sync_engine.pool, "checkout", listener)


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        expect_errors: bool = False,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        if not expect_errors:
            assert "errors" not in body, body["errors"]
            assert response.status_code == 200
        return body


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(client)


# ---------------------------------------------------------------- work left behind


class TaskWatch:
    """The asyncio tasks started after it was made: ``settle()`` waits for all of them.

    Once they are done, nothing the watched code handed to the event loop can still
    run, so "no statement after the response" is a fact, not a guess after a sleep.
    """

    def __init__(self) -> None:
        self.before = asyncio.all_tasks()

    def running(self) -> set[asyncio.Task[Any]]:
        """Tasks started since, and not yet done."""
        return asyncio.all_tasks() - self.before - {asyncio.current_task()}

    def working(self) -> set[asyncio.Task[Any]]:
        """Tasks started since, neither done nor cancelled (so free to go on working)."""
        return {task for task in self.running() if not task.cancelling()}

    async def settle(self, within: float = 5.0) -> None:
        """Return once every task started since is done, those they started included."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            await asyncio.sleep(0)  # callbacks already scheduled run (and start their tasks)
            running = self.running()
            if not running:
                return
            if loop.time() >= deadline:
                raise AssertionError(f"still running after {within}s: {running}")
            await asyncio.wait(running, timeout=deadline - loop.time())


async def close_leaked_sessions() -> None:
    """Cleanup after the leak bug: close request sessions left open after their response."""
    from gql_app.data.db import RequestDB

    for obj in gc.get_objects():
        if isinstance(obj, RequestDB) and obj.session.in_transaction():
            await obj.session.close()


# ---------------------------------------------------------------- a streaming replica


@dataclass
class Streaming:
    """A migrated database with the factory world on a primary of its own (``url``),
    and the same database on that primary's streaming standby (``replica_url``)."""

    pair: StreamingPair
    url: str
    replica_url: str
    world: World


@pytest.fixture(scope="session")
async def streaming() -> AsyncIterator[Streaming]:
    base = Path(os.environ.get("GQL_TEST_DATA_DIR", tempfile.gettempdir())) / "gql_app_streaming"
    pair = StreamingPair(base)
    try:
        await asyncio.to_thread(pair.start)
        # No DROP DATABASE at the end: the clusters go, whole.
        await _admin(pair.primary.url(), "CREATE DATABASE gql_streaming")
        url = scratch_database_url(pair.primary.url(), "gql_streaming")
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        engine = create_async_engine(url)
        try:
            world = await build_world(engine)
        finally:
            await engine.dispose()
        await asyncio.to_thread(pair.clone)  # after the writes: nothing to catch up
        replica_url = make_url(url).set(port=pair.standby.port)
        yield Streaming(pair, url, replica_url.render_as_string(hide_password=False), world)
    finally:
        await asyncio.to_thread(pair.close)


# ---------------------------------------------------------------- isolated stacks for writers


@dataclass
class Stack:
    """A whole server on its own freshly migrated database, with the factory world in it.

    Test modules that write (mutations, concurrency) use one, so the shared
    read-side ``world`` keeps exactly the rows its tests expect.
    """

    app: Any
    engine: AsyncEngine
    http: httpx.AsyncClient
    gql: GraphQLClient
    world: World
    url: str


@pytest.fixture(scope="module")
async def stack(server_url: str) -> AsyncIterator[Stack]:
    async with scratch_database(server_url, "gql_stack") as url:
        application = create_app(
            Settings(DATABASE_URL=url, secret_key="test", pool_size=10, max_overflow=10)
        )
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                engine = application.state.engine
                world = await build_world(engine)
                yield Stack(application, engine, http, GraphQLClient(http), world, url)


@pytest.fixture
def stack_sql(stack: Stack) -> Iterator[StatementCounter]:
    """Every SQL statement the isolated stack's app sends while the test runs."""
    counter = StatementCounter()

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counter.statements.append(statement)

    event.listen(stack.engine.sync_engine, "before_cursor_execute", listener)
    yield counter
    event.remove(stack.engine.sync_engine, "before_cursor_execute", listener)
