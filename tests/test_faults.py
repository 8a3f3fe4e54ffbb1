"""Database faults, really caused: the server rides through them without a restart.

Each test builds its own app (small pool, short timeouts) on a scratch database
of the shared test server, except the outage test, which stops and restarts a
separate embedded server of its own. The shared server is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gql_app.data.db import async_url
from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.conftest import _admin, in_use, scratch_database
from tests.live_support import EmbeddedPostgres, embedded_postgres

TAGS = "{ tags(first: 5) { nodes { name } } }"
LOG_IN = 'mutation { logIn(input: {email: "a@b.example", password: "secret-pw"}) { token } }'
DRIVER_WORDS = ("asyncpg", "sqlalchemy", "select ", "connection", "pool", "postgres", "traceback")


@pytest.fixture(scope="module")
async def faults_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, "gql_faults") as url:
        await _admin(url, "INSERT INTO tags (name) VALUES ('faulty')")
        yield url


@pytest.fixture(scope="module")
async def admin(faults_url: str) -> AsyncIterator[AsyncEngine]:
    """A separate engine (no application_name) for the test's own statements."""
    engine = create_async_engine(async_url(faults_url), isolation_level="AUTOCOMMIT")
    yield engine
    await engine.dispose()


@contextlib.asynccontextmanager
async def running(url: str, **overrides: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """A whole app on ``url`` (lifespan run), and an HTTP client bound to it."""
    options: dict[str, Any] = {"secret_key": "test", "pool_size": 2, "max_overflow": 0}
    options.update(overrides)
    application = create_app(Settings(DATABASE_URL=url, **options))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield application, http


async def ask(http: httpx.AsyncClient, query: str = TAGS) -> tuple[int, dict[str, Any]]:
    response = await http.post("/graphql", json={"query": query})
    body: dict[str, Any] = response.json()
    return response.status_code, body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


def assert_fault(status: int, body: dict[str, Any], code: str) -> None:
    """A clean GraphQL error with ``code``: no 500, no driver text."""
    assert status != 500, body
    assert status == 200, body  # execution had begun: `data` is present (null)
    assert "data" in body and body["data"] is None, body
    assert codes(body) == [code], body
    message = body["errors"][0]["message"].lower()
    if code == "SERVICE_UNAVAILABLE":
        assert message == "the database is unavailable; try again shortly."
    for word in DRIVER_WORDS:
        assert word not in str(body).lower().replace("the database", ""), (word, body)


def assert_ok(status: int, body: dict[str, Any]) -> None:
    assert status == 200 and "errors" not in body, body
    assert body["data"]["tags"]["nodes"] == [{"name": "faulty"}], body


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> float:
    """Poll ``check`` every 20 ms until it holds; the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def app_backends(admin: AsyncEngine, database: str) -> list[tuple[int, str]]:
    """(pid, state) of every backend of an app (application_name gql_app) on ``database``."""
    async with admin.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid, coalesce(state, '') FROM pg_stat_activity "
                "WHERE application_name = 'gql_app' AND datname = :db"
            ),
            {"db": database},
        )
        return [(row[0], row[1]) for row in rows]


@contextlib.asynccontextmanager
async def tags_locked(admin: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """ACCESS EXCLUSIVE on ``tags`` held by an open admin transaction until exit."""
    async with admin.connect() as conn:
        await conn.exec_driver_sql("BEGIN")
        await conn.exec_driver_sql("LOCK TABLE tags IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            await conn.exec_driver_sql("ROLLBACK")


def database_of(url: str) -> str:
    name = make_url(url).database
    assert name
    return name


# ---------------------------------------------------------------- 1. pool exhausted


async def test_pool_exhausted_waits_pool_timeout_then_service_unavailable(faults_url):
    async with running(faults_url, pool_size=1, max_overflow=0, pool_timeout=0.5) as (app, http):
        assert_ok(*await ask(http))
        engine: AsyncEngine = app.state.engine
        held = await engine.connect()
        try:
            assert in_use(engine) == 1
            started = time.monotonic()
            status, body = await ask(http)
            waited = time.monotonic() - started
            assert_fault(status, body, "SERVICE_UNAVAILABLE")
            assert 0.45 <= waited < 2.0, waited
            ready = await http.get("/ready")
            assert ready.status_code == 503
        finally:
            await held.close()
        assert_ok(*await ask(http))
        assert (await http.get("/ready")).status_code == 200
        assert in_use(engine) == 0


# ---------------------------------------------------------------- 2. connections killed


async def test_killed_connections_are_replaced_without_an_error(faults_url, admin):
    database = database_of(faults_url)
    async with running(faults_url, pool_size=3, max_overflow=0) as (app, http):
        # Fill the pool with several live connections.
        results = await asyncio.gather(*(ask(http) for _ in range(6)))
        for result in results:
            assert_ok(*result)
        before = await app_backends(admin, database)
        assert before, "the app holds no connection to kill"
        async with admin.connect() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'gql_app' AND datname = :db"
                    ),
                    {"db": database},
                )
            ).scalar_one()
        assert killed == len(before)

        async def gone() -> bool:
            pids = {pid for pid, _ in await app_backends(admin, database)}
            return not pids & {pid for pid, _ in before}

        await eventually(gone)
        # Observed: no error at all. The checkout check (db.reject_closed_connection)
        # sees each connection the server closed, and the pool replaces it before
        # the request uses it, without SQLAlchemy's pre-ping round trips.
        results = await asyncio.gather(*(ask(http) for _ in range(6)))
        for result in results:
            assert_ok(*result)
        assert (await http.get("/ready")).status_code == 200
        after = {pid for pid, _ in await app_backends(admin, database)}
        assert after and not after & {pid for pid, _ in before}
        assert in_use(app.state.engine) == 0


async def test_connection_killed_mid_request_is_service_unavailable(faults_url, admin):
    database = database_of(faults_url)
    async with running(faults_url, statement_timeout_ms=10_000) as (app, http):
        assert_ok(*await ask(http))
        async with tags_locked(admin):
            request = asyncio.ensure_future(ask(http))

            async def waiting() -> bool:
                return any(state == "active" for _, state in await app_backends(admin, database))

            await eventually(waiting)
            async with admin.connect() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'gql_app' AND datname = :db"
                    ),
                    {"db": database},
                )
            status, body = await asyncio.wait_for(request, 5)
        assert_fault(status, body, "SERVICE_UNAVAILABLE")
        assert_ok(*await ask(http))
        assert in_use(app.state.engine) == 0


# ---------------------------------------------------------------- 3. database down and back


@pytest.fixture(scope="module")
def own_server() -> Iterator[EmbeddedPostgres]:
    """A separate embedded PostgreSQL in a temporary directory: this one may be stopped."""
    with embedded_postgres() as postgres:
        yield postgres


async def test_database_down_then_back_recovers_without_restart(own_server):
    async with scratch_database(own_server.url, "gql_outage") as url:
        await _admin(url, "INSERT INTO tags (name) VALUES ('faulty')")

        settings = {
            "pool_size": 2,
            "max_overflow": 0,
            "pool_timeout": 1.0,
            "connect_timeout_s": 2.0,
        }
        async with running(url, **settings) as (app, http):
            assert_ok(*await ask(http))
            assert (await http.get("/ready")).status_code == 200

            # The database goes away.
            await asyncio.to_thread(own_server.stop)
            fail_times = []
            for _ in range(3):
                started = time.monotonic()
                status, body = await ask(http)
                fail_times.append(time.monotonic() - started)
                assert_fault(status, body, "SERVICE_UNAVAILABLE")
            # A mutation fails the same way (its connection is opened by its first statement).
            status, body = await ask(http, LOG_IN)
            assert status == 200 and codes(body) == ["SERVICE_UNAVAILABLE"], body
            assert "secret" not in str(body).lower() and "asyncpg" not in str(body).lower()
            started = time.monotonic()
            ready = await http.get("/ready")
            ready_time = time.monotonic() - started
            assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
            assert (await http.get("/health")).status_code == 200
            assert max(fail_times) < 1.0 + 2.0, fail_times
            assert in_use(app.state.engine) == 0

            # It comes back; the app was never restarted.
            started = time.monotonic()
            await asyncio.to_thread(own_server.start)
            back = time.monotonic()

            attempts = 0

            async def serving() -> bool:
                nonlocal attempts
                attempts += 1
                status, body = await ask(http)
                if status == 200 and "errors" not in body:
                    return True
                assert_fault(status, body, "SERVICE_UNAVAILABLE")
                return False

            recovery = await eventually(serving, within=5.0)
            assert (await http.get("/ready")).status_code == 200
            assert_ok(*await ask(http))
            assert in_use(app.state.engine) == 0
            print(
                f"\noutage: requests failed in {', '.join(f'{t * 1000:.0f}' for t in fail_times)} ms, "
                f"/ready in {ready_time * 1000:.0f} ms; server start took "
                f"{(back - started) * 1000:.0f} ms, first successful query "
                f"{recovery * 1000:.0f} ms after it was up (attempt {attempts})"
            )


async def test_a_database_that_never_answers_fails_within_connect_timeout():
    """A peer that accepts the TCP connection and then says nothing (a hung host)."""
    peers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        await reader.read()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    url = f"postgresql://nobody:secret@127.0.0.1:{port}/nothing"
    try:
        async with running(url, connect_timeout_s=0.3, pool_timeout=5.0) as (app, http):
            started = time.monotonic()
            status, body = await ask(http)
            took = time.monotonic() - started
            assert_fault(status, body, "SERVICE_UNAVAILABLE")
            assert 0.25 <= took < 1.5, took
            started = time.monotonic()
            assert (await http.get("/ready")).status_code == 503
            assert time.monotonic() - started < 1.5
            assert (await http.get("/health")).status_code == 200
            assert in_use(app.state.engine) == 0
            assert peers, "the app never reached the silent peer"
    finally:
        for writer in peers:
            writer.close()
        silent.close()
        await silent.wait_closed()


# ---------------------------------------------------------------- 4. statement timeout


async def test_statement_timeout_is_timeout_and_the_pool_recovers(faults_url, admin):
    async with running(faults_url, statement_timeout_ms=200) as (app, http):
        assert_ok(*await ask(http))
        engine: AsyncEngine = app.state.engine
        async with tags_locked(admin):
            started = time.monotonic()
            status, body = await ask(http)
            took = time.monotonic() - started
        assert_fault(status, body, "TIMEOUT")
        assert body["errors"][0]["message"] == "The operation took too long and was cancelled."
        assert 0.18 <= took < 2.0, took
        assert in_use(engine) == 0
        assert_ok(*await ask(http))
        assert in_use(engine) == 0


# ---------------------------------------------------------------- 5. client gone mid-request


async def test_a_client_that_disconnects_releases_its_connection(faults_url, admin):
    database = database_of(faults_url)
    async with running(faults_url, statement_timeout_ms=10_000) as (app, http):
        assert_ok(*await ask(http))
        engine: AsyncEngine = app.state.engine
        async with tags_locked(admin):
            request = asyncio.ensure_future(ask(http))

            async def waiting() -> bool:
                return any(state == "active" for _, state in await app_backends(admin, database))

            await eventually(waiting)
            assert in_use(engine) == 1
            request.cancel()  # the client goes away while the statement waits on the lock
            with contextlib.suppress(asyncio.CancelledError):
                await request

        async def released() -> bool:
            return in_use(engine) == 0

        took = await eventually(released, within=1.0)

        async def none_in_transaction() -> bool:
            states = [state for _, state in await app_backends(admin, database)]
            return all(state == "idle" for state in states)

        await eventually(none_in_transaction, within=1.0)
        states = [state for _, state in await app_backends(admin, database)]
        print(f"\nclient gone: connection back in the pool {took * 1000:.0f} ms after; {states=}")
        assert_ok(*await ask(http))
        assert in_use(engine) == 0


# ---------------------------------------------------------------- 6. idle in transaction


async def test_idle_in_transaction_timeout_is_set_on_app_connections(faults_url):
    async with running(
        faults_url, idle_in_transaction_timeout_ms=4321, statement_timeout_ms=1234
    ) as (app, _):
        async with app.state.engine.connect() as conn:
            idle = (await conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout")).scalar()
            statement = (await conn.exec_driver_sql("SHOW statement_timeout")).scalar()
            name = (await conn.exec_driver_sql("SHOW application_name")).scalar()
        assert (idle, statement, name) == ("4321ms", "1234ms", "gql_app")
