"""What the bench's harnesses share: server processes, the scratch database, answers.

``bench/run.py`` (the benchmark), ``bench/postgraphile.py`` (the peer) and
``bench/live.py`` (W6) all start servers as separate processes (:class:`Server`,
each in its own process group, stopped on exit and by :func:`stop_all` on a signal),
seed a scratch database per scale (:func:`scratch_database`) and compare answers
(:func:`check_equal`). They live here, below every harness, so that a harness can
import another (run.py runs the peer) without an import cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from bench.load import Request
from gql_app.data.db import async_url
from gql_app.tools.seed import seed

ROOT = Path(__file__).resolve().parent.parent
GQL_APP, NAIVE, RAW = "gql_app", "naive (N+1)", "raw floor"
CONTENDERS = (GQL_APP, NAIVE, RAW)
"""The Python contenders :func:`running` starts (the peer is bench/postgraphile.py's)."""
JSON_HEADERS = {"Content-Type": "application/json"}


def libpq(url: str) -> str:
    """A SQLAlchemy URL as libpq (asyncpg, node-postgres) spells it."""
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


# ---------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str], log_dir: Path) -> None:
        self.log = log_dir / f"{re.sub(r'[^a-z]+', '_', self.name)}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process and its children."""
        if self.proc is None:
            return 0.0
        try:
            root = psutil.Process(self.proc.pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            return total
        except psutil.Error:
            return 0.0

    def tail(self) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def make_servers() -> dict[str, Server]:
    bin_dir = Path(sys.executable).parent
    gql_cli = bin_dir / "gql-app"
    gql = [str(gql_cli)] if gql_cli.is_file() else [sys.executable, "-m", "gql_app.tools.cli"]

    def uvicorn(target: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]

    servers = {}
    port = free_port()
    servers[GQL_APP] = Server(GQL_APP, [*gql, "serve", "--port", str(port), "--workers", "1"], port)
    port = free_port()
    servers[NAIVE] = Server(NAIVE, uvicorn("bench.naive:app", port), port)
    port = free_port()
    servers[RAW] = Server(RAW, uvicorn("bench.raw_floor:app", port), port)
    return servers


RUNNING: list[Server] = []
"""Every server started and not yet stopped, for :func:`stop_all`."""


def stop_all() -> None:
    """Stop what is still running (a harness's ``finally``: SIGTERM or a failure)."""
    while RUNNING:
        RUNNING.pop().stop()


@contextlib.asynccontextmanager
async def running(
    url: str, log_dir: Path, contenders: tuple[str, ...] = CONTENDERS
) -> AsyncIterator[dict[str, Server]]:
    """The contenders as separate processes on the scratch database, stopped on exit."""
    # gql_app runs on its defaults, as `gql-app serve` starts it (its pool of 20 holds
    # the clients' connections without reopening any; one JSON log line per request).
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "GQL_SECRET_KEY": "bench-secret-key",  # the default is refused with DATABASE_URL
    }
    env.pop("GQL_READ_REPLICA_URL", None)
    servers = {name: s for name, s in make_servers().items() if name in contenders}
    try:
        for server in servers.values():
            server.start(env, log_dir)
            RUNNING.append(server)
        async with httpx.AsyncClient(timeout=5) as http:
            for server in servers.values():
                await wait_ready(http, server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
            if server in RUNNING:
                RUNNING.remove(server)


async def _get_ready(http: httpx.AsyncClient, server: Server) -> httpx.Response:
    return await http.get(f"{server.base}/ready")


async def wait_ready(
    http: httpx.AsyncClient,
    server: Server,
    limit_s: float = 60,
    probe: Callable[[httpx.AsyncClient, Server], Awaitable[httpx.Response]] | None = None,
) -> None:
    """Until ``probe`` (by default ``GET /ready``) answers 200, or the server exits."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start:\n{server.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            response = await (probe or _get_ready)(http, server)
            if response.status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {limit_s:.0f}s:\n{server.tail()}")


# ---------------------------------------------------------------- the scratch database


@dataclass
class Scratch:
    name: str
    url: str
    conn: asyncpg.Connection  # to the scratch database; its own statements are not logged
    seed_seconds: float = 0.0
    rows: int = 0
    seed_phases: dict[str, float] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, scale: int) -> AsyncIterator[Scratch]:
    name = f"gql_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(libpq(server_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)
    conn: asyncpg.Connection | None = None
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes["database_url"] = url
        await asyncio.to_thread(command.upgrade, config, "head")
        report = await seed(url, scale, progress=False)
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in report.phases.items())
        print(
            f"seeded scale {scale}: {report.total_rows:,} rows in {report.seconds:.1f}s ({phases})"
        )
        conn = await asyncpg.connect(libpq(url), server_settings={"log_statement": "none"})
        yield Scratch(name, url, conn, report.seconds, report.total_rows, report.phases)
    finally:
        if conn is not None:
            await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# ---------------------------------------------------------------- answers


async def answer(http: httpx.AsyncClient, server: Server, req: Request) -> Any:
    response = await http.post(server.url, content=req.body, headers=req.headers)
    payload = response.json()
    if response.status_code != 200 or payload.get("errors"):
        raise AssertionError(f"{server.name} answered {response.status_code}: {response.text}")
    return payload["data"]


async def check_equal(
    http: httpx.AsyncClient, servers: dict[str, Server], workload: str, req: Request
) -> int:
    """Every contender's ``data`` byte-equal (as JSON) to gql_app's; returns its size."""
    expected = orjson.dumps(await answer(http, servers[GQL_APP], req))
    for name in servers.keys() - {GQL_APP}:
        got = orjson.dumps(await answer(http, servers[name], req))
        if got != expected:
            diff = next(
                (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)),
            )
            raise AssertionError(
                f"{workload}: {name}'s answer differs from gql_app's at byte {diff}:\n"
                f"  gql_app: ...{expected[max(0, diff - 80) : diff + 80]!r}\n"
                f"  {name}: ...{got[max(0, diff - 80) : diff + 80]!r}"
            )
    return len(expected)
