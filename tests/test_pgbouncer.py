"""The app behind a real PgBouncer in transaction pooling mode (GQL_PGBOUNCER=1).

Transaction pooling gives each transaction whichever server connection is free,
so asyncpg's per-connection prepared statements and connect-time session
settings must not be relied on. Skipped when the ``pgbouncer`` binary is absent
(``apt-get install pgbouncer``; ``scripts/test`` does it in CI).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gql_app.data.db import async_url, create_engine
from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, _admin, scratch_database
from tests.documents import CREATE_POST
from tests.factories import PASSWORD, World, build_world

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
)
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None, reason="pgbouncer binary not found (apt-get install pgbouncer)"
)

FEED = """
query Feed {
  posts(first: 50, filter: {published: true}, orderBy: {field: PUBLISHED_AT, direction: DESC}) {
    totalCount
    edges { cursor node { id title publishedAt author { username profile { displayName } }
      tags { name } commentCount comments(first: 3) { nodes { body author { username } } } } }
  }
}
"""
PEOPLE = """
query People {
  users(first: 20, orderBy: {field: CREATED_AT}) { nodes { username postCount
    posts(first: 5) { totalCount nodes { title tags { name } commentCount } } } }
}
"""
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { token user { username accounts { currency } } userErrors { code } }
}
"""


def pgbouncer_version() -> tuple[int, ...]:
    assert PGBOUNCER is not None
    out = subprocess.run([PGBOUNCER, "--version"], capture_output=True, text=True).stdout
    return tuple(int(part) for part in out.split()[1].split(".")[:2])


# PgBouncer before 1.21 does not know protocol-level prepared statements: the
# statement a transaction prepared last stays on its server connection (asyncpg
# closes it later, on whichever connection its next transaction gets). Dropping
# them when a server connection goes back to the pool keeps that from piling up.
# 1.21+ can track them itself (max_prepared_statements); it is switched off here
# so every version runs the strictest setup.
PREPARED_STATEMENT_HYGIENE = """server_reset_query = DEALLOCATE ALL
server_reset_query_always = 1
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Bouncer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_pgbouncer(server_url: str, database: str, workdir: Path, pool_size: int) -> Bouncer:
    """A PgBouncer in transaction mode on a free 127.0.0.1 port, in front of ``database``.

    The embedded server listens on a unix socket in its pgdata directory (``host=``
    in the URL); PgBouncer refuses to run as root, so as root it runs (``-u``) as
    the owner of that directory, the only user besides root that may enter it.
    """
    assert PGBOUNCER is not None
    url = make_url(async_url(server_url))
    host = url.query.get("host") or url.host or "127.0.0.1"
    host = host if isinstance(host, str) else host[0]
    user = url.username or "postgres"
    server = f"host={host} port={url.port or 5432} dbname={database} user={user}"
    if url.password:
        server += f" password={url.password}"
    port = free_port()
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
{database} = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
logfile = {workdir}/pgbouncer.log
{PREPARED_STATEMENT_HYGIENE}"""
    )
    if pgbouncer_version() >= (1, 21):
        with (workdir / "pgbouncer.ini").open("a") as ini:
            ini.write("max_prepared_statements = 0\n")
    command_line = [PGBOUNCER]
    if os.geteuid() == 0:
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "nobody"
        owner = "nobody" if owner == "root" else owner
        command_line += ["-u", owner]
        shutil.chown(workdir, user=owner)
        workdir.chmod(0o755)
    command_line.append(str(workdir / "pgbouncer.ini"))
    stderr = workdir / "stderr.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(command_line, stdout=sink, stderr=subprocess.STDOUT)
    bouncer = Bouncer(process, port, workdir / "pgbouncer.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"pgbouncer exited ({process.returncode}): "
                f"{stderr.read_text(errors='replace')}{bouncer.output()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return bouncer
        except OSError:
            time.sleep(0.05)
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not listen on {port}: {bouncer.output()}")


@dataclass
class Behind:
    bouncer: Bouncer
    url: str  # through PgBouncer
    direct_url: str
    world: World


@pytest.fixture(scope="module")
async def behind(server_url: str) -> AsyncIterator[Behind]:
    async with scratch_database(server_url, "gql_bouncer") as direct:
        name = make_url(direct).database
        assert name is not None
        # What GQL_PGBOUNCER no longer sends at connect time, set where PgBouncer
        # keeps out of the way (ALTER ROLE ... SET works the same).
        await _admin(server_url, f"ALTER DATABASE \"{name}\" SET statement_timeout = '15s'")
        workdir = Path(tempfile.mkdtemp(prefix="gql_pgbouncer_"))
        bouncer: Bouncer | None = None
        try:
            engine = create_async_engine(direct)
            try:
                world = await build_world(engine)
            finally:
                await engine.dispose()
            bouncer = await asyncio.to_thread(start_pgbouncer, server_url, name, workdir, 2)
            user = make_url(async_url(server_url)).username or "postgres"
            yield Behind(bouncer, bouncer.url(user, name), direct, world)
        finally:
            if bouncer is not None:
                bouncer.stop()
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
async def bounced(behind: Behind) -> AsyncIterator[GraphQLClient]:
    """The app with DATABASE_URL through PgBouncer and GQL_PGBOUNCER on."""
    app = create_app(
        Settings(
            DATABASE_URL=behind.url,
            pgbouncer=True,
            secret_key="test",
            pool_size=10,
            max_overflow=10,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield GraphQLClient(http)


@pytest.fixture(scope="module")
async def direct(behind: Behind) -> AsyncIterator[GraphQLClient]:
    """The same app straight on PostgreSQL: the reference answers."""
    app = create_app(Settings(DATABASE_URL=behind.direct_url, secret_key="test"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield GraphQLClient(http)


async def test_nested_queries_match_a_direct_connection(bounced, direct):
    # GraphQLClient fails on any error: "prepared statement ... does not exist" included.
    for query in (FEED, PEOPLE):
        through = await bounced(query)
        assert through == await direct(query)
    assert through["data"]["users"]["nodes"]
    feed = await bounced(FEED)
    assert feed["data"]["posts"]["totalCount"] > 0


async def test_mutations_write_and_read_back_through_pgbouncer(bounced, direct):
    body = await bounced(
        SIGN_UP,
        {"input": {"username": "bounced", "email": "bounced@example.org", "password": PASSWORD}},
    )
    payload = body["data"]["signUp"]
    assert payload["userErrors"] == []
    assert payload["user"] == {"username": "bounced", "accounts": [{"currency": "USD"}]}
    token = payload["token"]
    body = await bounced(
        CREATE_POST,
        {"input": {"title": "Via PgBouncer", "content": "pooled", "tags": ["alpha", "pooled"]}},
        token=token,
    )
    post = body["data"]["createPost"]
    assert post["userErrors"] == []
    assert post["post"] == {
        "title": "Via PgBouncer",
        "author": {"username": "bounced"},
        "tags": [{"name": "alpha"}, {"name": "pooled"}],
    }
    mine = "{ viewer { username posts(first: 5) { totalCount nodes { title } } } }"
    expected = {
        "username": "bounced",
        "posts": {"totalCount": 1, "nodes": [{"title": "Via PgBouncer"}]},
    }
    assert (await bounced(mine, token=token))["data"]["viewer"] == expected
    assert (await direct(mine, token=token))["data"]["viewer"] == expected


async def test_fifty_concurrent_queries_share_two_server_connections(bounced, direct):
    """20 pooled client connections, 2 server connections: every transaction may
    run on either, and every answer is still the direct one."""
    queries = [FEED, PEOPLE]
    expected = [await direct(query) for query in queries]
    bodies = await asyncio.gather(*(bounced(queries[i % 2]) for i in range(50)))
    for i, body in enumerate(bodies):
        assert body == expected[i % 2]


async def test_session_settings_come_from_the_database_not_the_startup_packet(behind):
    """PgBouncer refuses unknown startup parameters; GQL_PGBOUNCER sends none but
    application_name (which PgBouncer tracks), and ALTER DATABASE/ROLE ... SET applies."""
    engine = create_engine(Settings(DATABASE_URL=behind.url, pgbouncer=True), behind.url)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "15s"
            assert await conn.scalar(text("SHOW application_name")) == "gql_app"
    finally:
        await engine.dispose()


async def test_without_the_setting_pgbouncer_refuses_the_connection(behind):
    engine = create_engine(Settings(DATABASE_URL=behind.url, pool_pre_ping=False), behind.url)
    try:
        with pytest.raises(Exception, match="unsupported startup parameter"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_cached_prepared_statements_break_under_transaction_pooling(behind):
    """The failure GQL_PGBOUNCER prevents: with asyncpg's numbered, cached prepared
    statements, a later transaction lands on a server connection that never saw
    the statement (or already has one of that name from another client)."""
    errors: list[str] = []
    engines = [
        create_async_engine(
            async_url(behind.url), connect_args={"server_settings": {}}, pool_size=1
        )
        for _ in range(4)
    ]

    async def work(engine: Any, i: int) -> None:
        for j in range(10):
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT CAST(:a AS int) + 1"), {"a": i * j})
                    await conn.commit()
            except Exception as exc:
                errors.append(str(exc))

    try:
        await asyncio.gather(*(work(engine, i) for i, engine in enumerate(engines)))
    finally:
        for engine in engines:
            await engine.dispose()
    assert any("prepared statement" in e for e in errors), errors


async def test_prepared_statements_do_not_pile_up_on_server_connections(behind, bounced):
    """After many transactions, each server connection holds at most the one
    statement its current transaction prepared."""
    queries = [FEED, PEOPLE]
    await asyncio.gather(*(bounced(queries[i % 2]) for i in range(40)))
    engine = create_engine(Settings(DATABASE_URL=behind.url, pgbouncer=True), behind.url)
    try:
        # Two transactions at once: both server connections (default_pool_size=2).
        async with engine.connect() as one, engine.connect() as two:
            count = text("SELECT count(*) FROM pg_prepared_statements")
            backends = [await conn.scalar(text("SELECT pg_backend_pid()")) for conn in (one, two)]
            assert backends[0] != backends[1]
            assert [await conn.scalar(count) for conn in (one, two)] == [1, 1]
    finally:
        await engine.dispose()
