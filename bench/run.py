"""The benchmark harness: W1-W5 against gql_app, a naive baseline and the raw floor.

    .venv/bin/python -m bench.run --scale 1000 --concurrency 16 --duration 10

One command, one run, the same data for every contender:

1. Installs ``wrk`` (Debian package) when it is missing and the machine allows it;
   otherwise loads with the asyncio client in ``bench/load.py``.
2. Creates a scratch database on ``DATABASE_URL``'s server (else the embedded
   one), migrates it with Alembic, seeds the SPEC's data set at ``--scale``.
3. Phase A, statements counted: ``ALTER DATABASE ... SET log_statement = 'all'``
   (this database only), starts the three contenders as separate server
   processes (gql_app: ``gql-app serve --workers 1``; naive: ``bench/naive.py``;
   raw floor: ``bench/raw_floor.py``; each under uvicorn, one process), checks
   every contender's answer byte-equal to gql_app's, then sends a few sequential
   requests per workload and counts the statements PostgreSQL logged for the
   scratch database's backends (cross-checked against gql_app's own
   ``gql_request_sql_statements`` metric). Servers stopped.
4. Phase B, timed: statement logging off again, servers restarted, answers
   checked equal again, then per workload and contender: a short warm-up, then
   ``--concurrency`` connections for ``--duration`` seconds, then one connection
   for ``--duration`` seconds, each with requests/s, p50, p99 and errors from the
   load tool, and the CPU seconds the server process (psutil) and the scratch
   database's PostgreSQL backends used. W4 (addComment from 50 signed-in users)
   mutates data and runs after the reads; W5 (the bulk mutations, over HTTP,
   against the same UPDATE sent directly) runs last.
5. Stops every server (process groups, also on failure), drops the scratch
   database, writes ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from alembic import command
from alembic.config import Config
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from bench import bulk_updates
from bench.load import LoadResult, Request, drive, wrk_path
from bench.plans import SETTINGS as AUTO_EXPLAIN
from bench.plans import Plan, parse_log, summary_table, write_plans
from bench.raw_floor import POOL_SIZE
from bench.workloads import READ_WORKLOADS, W3_NODE, W4_ADD_COMMENT
from gql_app.data.db import async_url
from gql_app.relay.ids import encode_id
from gql_app.settings import Settings
from gql_app.tools.embedded import database_url
from gql_app.tools.seed import seed
from gql_app.users.passwords import new_token, token_digest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
PLANS = ROOT / "bench" / "plans"
GQL_APP, NAIVE, RAW = "gql_app", "naive (N+1)", "raw floor"
CONTENDERS = (GQL_APP, NAIVE, RAW)
W4_NAME, W5_NAME = "W4 addComment", "W5 bulk"
JSON_HEADERS = {"Content-Type": "application/json"}
COUNT_REQUESTS = 10  # sequential requests per workload and contender in the counting pass
W4_USERS = 50
WARMUP_SECONDS = 2.0
BEFORE_ALL = "2000-01-01T00:00:00+00:00"  # deactivates nobody: counts statements, changes nothing


def libpq(url: str) -> str:
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


# ---------------------------------------------------------------- wrk


def ensure_wrk() -> str:
    """``wrk``'s version, installing the Debian package when missing (root and apt only)."""
    if wrk_path() is None and shutil.which("apt-get") and os.geteuid() == 0:
        print("wrk is missing: installing it with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

        def apt(*argv: str) -> int:
            return subprocess.run(
                ["apt-get", *argv], env=env, capture_output=True, check=False
            ).returncode

        if apt("install", "-y", "-q", "wrk"):
            apt("update", "-q")
            apt("install", "-y", "-q", "wrk")
    wrk = wrk_path()
    if wrk is None:
        print("wrk unavailable: loading with bench/load.py's asyncio client", file=sys.stderr)
        return "none (bench/load.py asyncio client)"
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


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


_RUNNING: list[Server] = []


def _stop_all() -> None:
    while _RUNNING:
        _RUNNING.pop().stop()


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
            _RUNNING.append(server)
        async with httpx.AsyncClient(timeout=5) as http:
            for server in servers.values():
                await wait_ready(http, server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
            if server in _RUNNING:
                _RUNNING.remove(server)


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


@dataclass
class Fixtures:
    post_gid: str
    w4_requests: list[Request]
    admin_token: str


async def fixtures(db: Scratch) -> Fixtures:
    """W3's post, W4's signed-in users and target posts, W5's admin token."""
    conn = db.conn
    w3_post = await conn.fetchval(
        "SELECT id FROM posts WHERE published_at IS NOT NULL ORDER BY id LIMIT 1"
    )
    users = await conn.fetch(
        "SELECT id, username FROM users WHERE is_active AND NOT is_admin ORDER BY id LIMIT $1",
        W4_USERS,
    )
    # W4 comments go to old published posts of authors W2 does not list, none of them in
    # W1's feed or W3's node: the read answers stay the same while W4 writes.
    targets = await conn.fetch(
        "SELECT id FROM posts WHERE published_at IS NOT NULL AND author_id > 100 AND id <> $1 "
        "ORDER BY published_at, id LIMIT $2",
        w3_post,
        W4_USERS,
    )
    requests = []
    for user, post in zip(users, targets, strict=True):
        token = new_token()
        await conn.execute(
            "INSERT INTO auth_tokens (user_id, token_hash, expires_at) "
            "VALUES ($1, $2, now() + interval '1 day')",
            user["id"],
            token_digest(token),
        )
        body = {
            "query": W4_ADD_COMMENT,
            "variables": {
                "input": {
                    "postId": encode_id("Post", post["id"]),
                    "body": f"Benchmark comment by {user['username']}.",
                }
            },
        }
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
        requests.append(Request(headers, orjson.dumps(body)))
    return Fixtures(encode_id("Post", w3_post), requests, await bulk_updates.admin_token(conn))


def read_requests(fx: Fixtures) -> dict[str, list[Request]]:
    out = {}
    for name, document in READ_WORKLOADS.items():
        body: dict[str, Any] = {"query": document}
        if document == W3_NODE:
            body["variables"] = {"postId": fx.post_gid}
        out[name] = [Request(JSON_HEADERS, orjson.dumps(body))]
    return out


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


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


W4_SHAPE = {
    "addComment": {
        "comment": {"id": "str", "body": "str", "author": {"username": "str"}},
        "userErrors": [],
    }
}


async def check_w4(http: httpx.AsyncClient, server: Server, req: Request) -> None:
    data = await answer(http, server, req)
    if shape(data) != W4_SHAPE:
        raise AssertionError(f"W4: unexpected payload {data!r}")


# ---------------------------------------------------------------- statement counting


STATEMENT = re.compile(rb"\[(\d+)\] (?:\S+ )?LOG:  (?:statement|execute [^:]*): ?(.*)")
DATA_VERBS = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}


def is_data_statement(text: str) -> bool:
    """The application's own statements, as opposed to transaction control, pings, resets."""
    words = text.strip().split(None, 1)
    if not words or words[0].upper() not in DATA_VERBS:
        return False
    return "pg_catalog." not in text and "pg_advisory_unlock_all" not in text


@dataclass
class StatementCount:
    data: float
    other: float
    samples: list[str] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    """auto_explain's plans of one request's statements (when it is loaded)."""

    def __str__(self) -> str:
        return f"{self.data:g} (+{self.other:g})"


class StatementLog:
    """Counts what PostgreSQL logged (``log_statement = 'all'``) for the scratch database."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    async def locate(cls, conn: asyncpg.Connection) -> StatementLog:
        data_dir = Path(await conn.fetchval("SHOW data_directory"))
        path: Path | None = None
        with contextlib.suppress(asyncpg.PostgresError):
            if await conn.fetchval("SHOW logging_collector") == "on":
                current = await conn.fetchval("SELECT pg_current_logfile('stderr')")
                path = data_dir / current if current else None
            else:
                path = data_dir / "log"  # pg_ctl -l (the embedded server)
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            path = None
        return cls(path)

    def offset(self) -> int:
        return self.path.stat().st_size if self.path is not None else 0

    def read(self, offset: int) -> bytes:
        if self.path is None:
            return b""
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read()

    def statements(self, offset: int, pids: set[int]) -> list[str]:
        chunk = self.read(offset)
        found = []
        for line in chunk.splitlines():
            m = STATEMENT.search(line)
            if m and int(m.group(1)) in pids:
                found.append(m.group(2).decode(errors="replace"))
        return found


async def backend_pids(db: Scratch) -> set[int]:
    rows = await db.conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        db.name,
    )
    return {r["pid"] for r in rows}


async def gql_metric_sql(http: httpx.AsyncClient, server: Server) -> tuple[float, float]:
    """(sum, count) of gql_app's ``gql_request_sql_statements`` histogram, all labels."""
    text = (await http.get(f"{server.base}/metrics")).text
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "gql_request_sql_statements":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
    return total, count


async def count_statements(
    db: Scratch, log: StatementLog, send: Any, n: int = COUNT_REQUESTS
) -> StatementCount | None:
    """Statements per request over ``n`` sequential requests made by ``send()``."""
    if log.path is None:
        return None
    await send()  # warm: the connection is open, statements are prepared
    await asyncio.sleep(0.2)
    start = log.offset()
    for _ in range(n):
        await send()
    await asyncio.sleep(0.5)  # let the server write its log
    pids = await backend_pids(db)
    found = log.statements(start, pids)
    data = [s for s in found if is_data_statement(s)]
    plans = [p for p in parse_log(log.read(start), pids) if is_data_statement(p.query)]
    return StatementCount(
        len(data) / n,
        (len(found) - len(data)) / n,
        found[: len(found) // n],
        plans[len(plans) - len(plans) // n :],  # the last request's
    )


# ---------------------------------------------------------------- timing


@dataclass
class Cell:
    c16: LoadResult | None = None
    c1: LoadResult | None = None
    cpu_ms: float | None = None
    pg_cpu_ms: float | None = None
    sql: StatementCount | None = None
    metrics_sql: float | None = None
    other_pct: float | None = None  # the machine's CPU not used by the server or PostgreSQL


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores)."""
    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))


def pg_cpu(pids: set[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


async def settle(server: Server, limit_s: float = 60) -> None:
    """Wait until the server has worked off the previous run's backlog (wrk closes its
    connections at the deadline; the requests already received still run)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(0.25)
        if server.cpu_seconds() - before < 0.01:
            return


@dataclass
class Timed:
    result: LoadResult
    cpu_ms: float | None  # server process CPU per request
    pg_cpu_ms: float | None  # the scratch database's backends, per request
    other_pct: float  # busy CPU of everything else (the load tool included), % of the machine


async def timed(
    db: Scratch, server: Server, requests: list[Request], concurrency: int, duration: float
) -> Timed:
    """One load run, with the CPU the server, PostgreSQL and the rest of the machine used."""
    await settle(server)
    cpu0, pg0, busy0 = server.cpu_seconds(), pg_cpu(await backend_pids(db)), busy_seconds()
    result = await drive(server.url, requests, concurrency, duration)
    cpu1, pg1, busy1 = server.cpu_seconds(), pg_cpu(await backend_pids(db)), busy_seconds()
    pg_used = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    other = (busy1 - busy0) - (cpu1 - cpu0) - pg_used
    other_pct = 100 * other / (result.seconds * (os.cpu_count() or 1))
    n = result.requests
    if n == 0:
        return Timed(result, None, None, other_pct)
    return Timed(result, (cpu1 - cpu0) * 1000 / n, pg_used * 1000 / n, other_pct)


async def measure(
    db: Scratch, server: Server, requests: list[Request], args: argparse.Namespace, cell: Cell
) -> None:
    print(f"  {server.name}: warm-up", flush=True)
    await drive(server.url, requests, args.concurrency, WARMUP_SECONDS)
    run = await timed(db, server, requests, args.concurrency, args.duration)
    cell.c16, cell.cpu_ms, cell.pg_cpu_ms, cell.other_pct = (
        run.result,
        run.cpu_ms,
        run.pg_cpu_ms,
        run.other_pct,
    )
    print(f"  {server.name}: c={args.concurrency} {cell.c16.rps:,.0f} req/s", flush=True)
    cell.c1 = (await timed(db, server, requests, 1, args.duration)).result
    print(f"  {server.name}: c=1 {cell.c1.rps:,.0f} req/s", flush=True)


# ---------------------------------------------------------------- W5


@dataclass
class BulkResult:
    affected: int
    timings_ms: dict[str, float]
    sql: dict[str, StatementCount | None] = field(default_factory=dict)


async def gql_post(
    http: httpx.AsyncClient, server: Server, token: str, query: str, variables: Any = None
) -> Any:
    body = {"query": query, "variables": variables}
    headers = {"Authorization": f"Bearer {token}"}
    response = await http.post(server.url, json=body, headers=headers)
    payload = response.json()
    if payload.get("errors"):
        raise AssertionError(f"W5: {payload['errors']}")
    return payload["data"]


async def bulk(
    db: Scratch, http: httpx.AsyncClient, server: Server, token: str, runs: int
) -> BulkResult:
    """bench/bulk_updates.py's measurement, against the live server over HTTP."""
    raw = db.conn
    cutoff = dt.datetime.fromisoformat(bulk_updates.CUTOFF)
    timings: dict[str, list[float]] = {k: [] for k in ("gql_d", "raw_d", "gql_a", "raw_a")}
    affected = 0
    for _ in range(runs):
        await raw.execute(bulk_updates.RESET_USERS)
        t = time.perf_counter()
        data = await gql_post(
            http, server, token, bulk_updates.DEACTIVATE, {"cutoff": bulk_updates.CUTOFF}
        )
        timings["gql_d"].append(time.perf_counter() - t)
        affected = data["deactivateInactiveUsers"]["affectedCount"]
        await raw.execute(bulk_updates.RESET_USERS)
        t = time.perf_counter()
        status = await raw.execute(bulk_updates.RAW_DEACTIVATE, cutoff)
        timings["raw_d"].append(time.perf_counter() - t)
        if int(status.split()[-1]) != affected:
            raise AssertionError(f"W5: direct UPDATE affected {status}, GraphQL {affected}")
        t = time.perf_counter()
        await gql_post(http, server, token, bulk_updates.ADJUST)
        timings["gql_a"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await raw.execute(bulk_updates.RAW_ADJUST, Decimal("10"))
        timings["raw_a"].append(time.perf_counter() - t)
    await raw.execute(bulk_updates.RESET_USERS)
    return BulkResult(affected, {k: statistics.median(v) * 1000 for k, v in timings.items()})


# ---------------------------------------------------------------- the run


@dataclass
class ScaleRun:
    """One scale's scratch database, measurements and plans."""

    scale: int
    contenders: tuple[str, ...]
    db: Scratch | None = None
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    plans_file: Path | None = None


@dataclass
class Report:
    args: argparse.Namespace
    command: str
    started: dt.datetime
    wrk: str
    tool: str = ""
    pg_version: str = ""
    settings: list[tuple[str, str]] = field(default_factory=list)
    log_path: Path | None = None
    runs: list[ScaleRun] = field(default_factory=list)
    w5: BulkResult | None = None
    seconds: float = 0.0
    load_at_start: tuple[float, float, float] = field(default_factory=os.getloadavg)


CLUSTER_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "random_page_cost",
    "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers",
    "jit",
    "wal_level",
    "max_wal_size",
    "synchronous_commit",
    "data_checksums",
)


async def cluster_settings(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1)",
        list(CLUSTER_SETTINGS),
    )
    values = {r["name"]: r["value"] for r in rows}
    return [(name, values[name]) for name in CLUSTER_SETTINGS if name in values]


async def run(args: argparse.Namespace, report: Report) -> None:
    """Every scale in turn, on its own scratch database (dropped before the next)."""
    server_url = database_url(Settings())
    with tempfile.TemporaryDirectory(prefix="gql_bench_logs_") as tmp:
        log_dir = Path(tmp)
        for i, scale in enumerate(args.scales):
            last = i == len(args.scales) - 1
            # The naive baseline's N+1 grows with the data: at the first scale only.
            contenders = CONTENDERS if i == 0 else (GQL_APP, RAW)
            scale_run = ScaleRun(scale, contenders)
            scale_run.cells = {w: {} for w in [*READ_WORKLOADS, W4_NAME]}
            report.runs.append(scale_run)
            async with scratch_database(server_url, scale) as db:
                scale_run.db = db
                report.pg_version = await db.conn.fetchval("SHOW server_version")
                report.settings = await cluster_settings(db.conn)
                fx = await fixtures(db)
                reads = read_requests(fx)
                log = await StatementLog.locate(db.conn)
                report.log_path = log.path
                try:
                    await phase_a(db, log, fx, reads, log_dir, scale_run, report if last else None)
                    await phase_b(db, fx, reads, log_dir, args, scale_run, report if last else None)
                except Exception:
                    print_server_logs(log_dir)
                    raise
            if args.plans:
                scale_run.plans_file = args.plans / f"{scale}.txt"
                write_plans(scale_run.plans_file, scale, plans_of(scale_run))
    report.tool = next(
        (
            c.c16.tool
            for r in report.runs
            for cells in r.cells.values()
            for c in cells.values()
            if c.c16
        ),
        "",
    )


def plans_of(scale_run: ScaleRun) -> dict[str, list[Plan]]:
    """gql_app's plans per workload (one request's statements)."""
    out = {}
    for workload, cells in scale_run.cells.items():
        cell = cells.get(GQL_APP)
        if cell and cell.sql and cell.sql.plans:
            out[workload] = cell.sql.plans
    return out


def print_server_logs(log_dir: Path) -> None:
    for path in sorted(log_dir.glob("*.log")):
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-20:])
        print(f"--- {path.name}\n{tail}", file=sys.stderr)


@contextlib.asynccontextmanager
async def logged(db: Scratch) -> AsyncIterator[None]:
    """Statement logging and auto_explain on the scratch database (new sessions)."""
    settings = {"log_statement": "all", **AUTO_EXPLAIN}
    for name, value in settings.items():
        await db.conn.execute(f"ALTER DATABASE \"{db.name}\" SET {name} = '{value}'")
    try:
        yield
    finally:
        for name in settings:
            await db.conn.execute(f'ALTER DATABASE "{db.name}" RESET {name}')


async def count_reads(
    db: Scratch,
    log: StatementLog,
    reads: dict[str, list[Request]],
    servers: dict[str, Server],
    http: httpx.AsyncClient,
    scale_run: ScaleRun,
) -> None:
    for workload, requests in reads.items():
        scale_run.sizes[workload] = await check_equal(http, servers, workload, requests[0])
        for name, server in servers.items():
            cell = scale_run.cells[workload].setdefault(name, Cell())

            async def send(server: Server = server, req: Request = requests[0]) -> None:
                await answer(http, server, req)

            before = await gql_metric_sql(http, server) if name == GQL_APP else None
            cell.sql = await count_statements(db, log, send)
            if before is not None:
                after = await gql_metric_sql(http, server)
                cell.metrics_sql = (after[0] - before[0]) / (after[1] - before[1])
            print(f"  {workload} {name}: SQL/request {cell.sql}", flush=True)


async def count_w5(
    db: Scratch, log: StatementLog, http: httpx.AsyncClient, server: Server, fx: Fixtures
) -> BulkResult:
    w5 = BulkResult(0, {})
    prices = await db.conn.fetch("SELECT id, price FROM products")
    for key, query, variables in (
        ("deactivateInactiveUsers", bulk_updates.DEACTIVATE, {"cutoff": BEFORE_ALL}),
        ("adjustPrices", bulk_updates.ADJUST, None),
    ):

        async def send_w5(q: str = query, v: Any = variables) -> None:
            await gql_post(http, server, fx.admin_token, q, v)

        w5.sql[key] = await count_statements(db, log, send_w5, n=1)
    await db.conn.execute(  # adjustPrices changed them
        "UPDATE products SET price = p.price FROM unnest($1::bigint[], $2::numeric[])"
        " AS p(id, price) WHERE products.id = p.id",
        [r["id"] for r in prices],
        [r["price"] for r in prices],
    )
    return w5


async def phase_a(
    db: Scratch,
    log: StatementLog,
    fx: Fixtures,
    reads: dict[str, list[Request]],
    log_dir: Path,
    scale_run: ScaleRun,
    report: Report | None,
) -> None:
    """Answers checked equal; statements per request counted from PostgreSQL's log,
    with their actual plans (auto_explain). W5 counted when ``report`` is given."""
    print(f"scale {scale_run.scale:,} phase A: equality, statement counts, plans", flush=True)
    async with (
        logged(db),
        running(db.url, log_dir, scale_run.contenders) as servers,
        httpx.AsyncClient(timeout=60) as http,
    ):
        await count_reads(db, log, reads, servers, http, scale_run)
        server = servers[GQL_APP]
        cell = scale_run.cells[W4_NAME].setdefault(GQL_APP, Cell())
        w4 = iter(fx.w4_requests[-COUNT_REQUESTS - 1 :])

        async def send_w4() -> None:
            await check_w4(http, server, next(w4))

        before = await gql_metric_sql(http, server)
        cell.sql = await count_statements(db, log, send_w4)
        after = await gql_metric_sql(http, server)
        cell.metrics_sql = (after[0] - before[0]) / (after[1] - before[1])
        print(f"  {W4_NAME}: SQL/request {cell.sql}", flush=True)
        if report is not None:
            report.w5 = await count_w5(db, log, http, server, fx)


async def phase_b(
    db: Scratch,
    fx: Fixtures,
    reads: dict[str, list[Request]],
    log_dir: Path,
    args: argparse.Namespace,
    scale_run: ScaleRun,
    report: Report | None,
) -> None:
    print(f"scale {scale_run.scale:,} phase B: timed runs (logging off)", flush=True)
    async with (
        running(db.url, log_dir, scale_run.contenders) as servers,
        httpx.AsyncClient(timeout=60) as http,
    ):
        for workload, requests in reads.items():
            print(workload, flush=True)
            await check_equal(http, servers, workload, requests[0])
            for name, server in servers.items():
                await measure(db, server, requests, args, scale_run.cells[workload][name])
        print(W4_NAME, flush=True)
        await check_w4(http, servers[GQL_APP], fx.w4_requests[0])
        w4_cell = scale_run.cells[W4_NAME][GQL_APP]
        await measure(db, servers[GQL_APP], fx.w4_requests, args, w4_cell)
        if report is not None:
            print(W5_NAME, flush=True)
            sql = report.w5.sql if report.w5 else {}
            report.w5 = await bulk(db, http, servers[GQL_APP], fx.admin_token, args.w5_runs)
            report.w5.sql = sql


# ---------------------------------------------------------------- RESULTS.md


def machine(report: Report) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.2f}" for x in report.load_at_start)
    return [
        f"- CPU: {model}, {os.cpu_count()} logical cores",
        f"- Memory: {memory:.1f} GiB",
        f"- OS: {platform.platform()}",
        f"- Load average (1, 5, 15 min) before the run: {load}",
    ]


def versions(report: Report) -> list[str]:
    def v(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return [
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- strawberry-graphql {v('strawberry-graphql')}, graphql-core {v('graphql-core')}",
        f"- SQLAlchemy {v('sqlalchemy')}, asyncpg {v('asyncpg')}",
        f"- uvicorn {v('uvicorn')} (uvloop {v('uvloop')}, httptools {v('httptools')}), "
        f"starlette {v('starlette')}, orjson {v('orjson')}",
        f"- PostgreSQL {report.pg_version}",
        f"- Load tool: {report.wrk}",
    ]


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def pct(value: float | None) -> str:
    return f"{value:.0f}%" if value is not None else "—"


def rps(result: LoadResult | None) -> str:
    return f"{result.rps:,.0f}" if result is not None else "—"


TARGETS = {"W1 feed": "2x (stretch 1.5x)", "W2 people": "1.5x", "W3 node": "1.5x"}
"""Issue 12's targets: c=1 p50 at the largest scale within this factor of the first."""


def header(report: Report) -> list[str]:
    args = report.args
    c = args.concurrency
    scales = ", ".join(
        f"{r.scale:,} ({r.db.rows if r.db else 0:,} rows, seeded in "
        f"{r.db.seed_seconds if r.db else 0:.1f} s)"
        for r in report.runs
    )
    sizes = {w: n for r in report.runs[:1] for w, n in r.sizes.items()}
    return [
        "# Benchmark results",
        "",
        f"Generated by `bench/run.py` on {report.started:%Y-%m-%d %H:%M} UTC "
        f"in {report.seconds / 60:.1f} min. Regenerate with:",
        "",
        "```sh",
        report.command,
        "```",
        "",
        f"Scales {scales}, one after the other, each on its own scratch database (dropped "
        f"before the next); {c} connections and 1 connection, {args.duration:g} s each "
        f"after a {WARMUP_SECONDS:g} s warm-up; one server process per contender, all on "
        "the same scratch database, one at a time under load. The naive baseline runs at "
        "the first scale only (its N+1 grows with the data); W5 at the last.",
        "",
        "## Machine",
        "",
        *machine(report),
        "",
        "## Versions",
        "",
        *versions(report),
        "",
        "## PostgreSQL settings",
        "",
        "The cluster's settings during the run (the embedded server's defaults unless "
        "`DATABASE_URL` names another): "
        + ", ".join(f"`{k} = {v}`" for k, v in report.settings)
        + ".",
        "",
        "## Contenders",
        "",
        "- **gql_app**: `gql-app serve --workers 1` on its defaults, as users start it "
        f"(a pool of {POOL_SIZE} connections plus 5 overflow, one JSON log line per request, "
        "no access log).",
        "- **naive (N+1)**: `bench/naive.py`, a Strawberry schema over the same models with "
        "plain per-object resolvers: one `SELECT` per relationship per parent, no "
        "dataloaders (uvicorn, one process, same pool settings, orjson).",
        "- **raw floor**: `bench/raw_floor.py`, the statements gql_app issues for the "
        "document, run directly with asyncpg in a REPEATABLE READ READ ONLY transaction, "
        "JSON built with orjson (Starlette on uvicorn, one process).",
        "",
        "Before any timing, every contender's `data` is checked byte-equal (as JSON) to "
        "gql_app's, in both phases (sizes at the first scale: "
        + ", ".join(f"{w} {n:,} B" for w, n in sizes.items())
        + "). W4 checks the payload's shape.",
        "",
    ]


def method(report: Report) -> list[str]:
    c = report.args.concurrency
    return [
        "## How the numbers are measured",
        "",
        f"- **req/s, p50, p99, errors**: from the load tool ({report.tool or 'wrk'}), a "
        "closed loop over HTTP/1.1 keep-alive; errors are socket errors, non-200 answers "
        'and answers with `"errors"`, summed over both runs.',
        "- **SQL/request**: counted from PostgreSQL's own statement log "
        "(`log_statement = 'all'` set on the scratch database only; file "
        f"`{in_repository(report.log_path)}`), "
        f"over {COUNT_REQUESTS} sequential requests after a warm request, in a separate "
        "pass so logging costs nothing in the timed runs. First number: the "
        "application's statements; in parentheses: the rest (BEGIN, ROLLBACK/COMMIT, "
        "SAVEPOINT, the pool's pre-ping). gql_app's own count (its "
        "`gql_request_sql_statements` metric) is given below each table as a cross-check.",
        "- **Plans**: in the same pass the scratch database loads `auto_explain` "
        "(`session_preload_libraries`, `log_analyze`, `log_buffers`, every statement): "
        "PostgreSQL logs the plan it actually ran for each of gql_app's statements, with "
        "its parameters. Summarised per scale below (execution time inside PostgreSQL, rows "
        "read = rows out of the scan nodes plus rows they removed by filter, shared buffers "
        "hit + read, node types, flags for a Seq Scan over a table that grows with the "
        "scale, any scan reading more than 10 000 rows or a Sort of more than 1 000 rows); "
        "in full in the linked files.",
        f"- **CPU ms/request**: user + system CPU seconds of the server process (psutil) "
        f"during the c={c} run, divided by the requests served; **PG CPU** the same for "
        "the scratch database's PostgreSQL backends. **other CPU**: the rest of the "
        "machine's busy CPU during that run (the load tool and anything else running), in % "
        "of all cores: high values mean the numbers were disturbed.",
        "- **Seeding**: `gql_app.tools.seed.seed` end to end (COPY with the index builds "
        "beside it, foreign keys, VACUUM (ANALYZE)) into a freshly migrated database.",
        "- The machine has "
        f"{os.cpu_count()} cores shared by the load tool, the server and PostgreSQL: "
        "the numbers compare contenders, they are not capacity figures.",
        "",
    ]


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "—"


def scale_table(report: Report) -> list[str]:
    """Per workload: c=1 p50 and c=16 req/s at each scale, and the ratio to the first."""
    runs = report.runs
    c = report.args.concurrency
    first = runs[0]
    heads = " / ".join(f"{r.scale:,}" for r in runs)
    lines = [
        "## Across scales",
        "",
        f"c=1 p50 in ms and c={c} req/s at each scale; *ratio* is the p50 at the scale "
        f"over the p50 at {first.scale:,} (issue 12's targets at 100 000: W2 and W3 within "
        "1.5x, W1 within 2x, stretch 1.5x).",
        "",
        f"| workload | contender | p50 c=1 at {heads} | req/s c={c} at {heads} | "
        "p50 ratio per scale | target |",
        "|---|---|---|---|---|---|",
    ]
    for workload in first.cells:
        for name in (GQL_APP, RAW):
            cells = [r.cells.get(workload, {}).get(name) for r in runs]
            if not any(cells):
                continue
            p50 = [x.c1.p50_ms if x and x.c1 else None for x in cells]
            tput = [rps(x.c16) if x else "—" for x in cells]
            ratios = [ratio(v, p50[0]) for v in p50]
            target = TARGETS.get(workload, "—") if name == GQL_APP else "—"
            lines.append(
                f"| {workload} | {name} | {' / '.join(ms(v) for v in p50)} | "
                f"{' / '.join(tput)} | {' / '.join(ratios)} | {target} |"
            )
    seeds = [
        f"{r.scale:,}: {r.db.seed_seconds:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in r.db.seed_phases.items())
        + ")"
        for r in runs
        if r.db
    ]
    return [*lines, "", "Seeding per scale: " + "; ".join(seeds) + ".", ""]


def workload_table(workload: str, cells: dict[str, Cell], c: int) -> list[str]:
    floor = cells.get(RAW)
    lines = [
        f"### {workload}",
        "",
        f"| contender | req/s c={c} | p50 ms | p99 ms | req/s c=1 | p50 ms c=1 | "
        f"p99 ms c=1 | errors | SQL/request | server CPU ms/req | PG CPU ms/req | "
        f"other CPU | req/s vs floor (c={c} / c=1) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, cell in cells.items():
        vs = "—"
        if floor and floor.c16 and floor.c1 and cell.c16 and cell.c1:
            c16, c1 = 100 * cell.c16.rps / floor.c16.rps, 100 * cell.c1.rps / floor.c1.rps
            vs = f"{c16:.0f}% / {c1:.0f}%"
        errors = sum(r.errors for r in (cell.c16, cell.c1) if r is not None)
        lines.append(
            f"| {name} | {rps(cell.c16)} | {ms(cell.c16.p50_ms if cell.c16 else None)} | "
            f"{ms(cell.c16.p99_ms if cell.c16 else None)} | {rps(cell.c1)} | "
            f"{ms(cell.c1.p50_ms if cell.c1 else None)} | "
            f"{ms(cell.c1.p99_ms if cell.c1 else None)} | "
            f"{errors} | {cell.sql or '—'} | {ms(cell.cpu_ms)} | {ms(cell.pg_cpu_ms)} | "
            f"{pct(cell.other_pct)} | {vs} |"
        )
    lines.append("")
    gql = cells.get(GQL_APP)
    if gql and gql.metrics_sql is not None:
        lines.append(
            f"gql_app's own count (`gql_request_sql_statements`): {gql.metrics_sql:g} "
            "statements/request."
        )
    if gql and gql.sql and gql.sql.samples:
        verbs = [s.split(None, 1)[0] if s.strip() else ";" for s in gql.sql.samples]
        lines.append(f"gql_app's statements for one request, in order: {' · '.join(verbs)}.")
    if gql and gql.sql and gql.sql.plans:
        lines += ["", "gql_app's statements' actual plans (auto_explain):", ""]
        lines += summary_table(gql.sql.plans)
    lines.append("")
    return lines


def scale_section(report: Report, scale_run: ScaleRun) -> list[str]:
    db = scale_run.db
    lines = [f"## Scale {scale_run.scale:,}", ""]
    if db:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in db.seed_phases.items())
        lines += [f"{db.rows:,} rows, seeded in {db.seed_seconds:.1f} s ({phases}).", ""]
    if scale_run.plans_file:
        link = os.path.relpath(scale_run.plans_file, report.args.output.resolve().parent)
        lines += [f"Full plans: [{in_repository(scale_run.plans_file)}]({link}).", ""]
    for workload, cells in scale_run.cells.items():
        lines += workload_table(workload, cells, report.args.concurrency)
    return lines


def w5_section(report: Report) -> list[str]:
    if not (report.w5 and report.w5.timings_ms):
        return []
    t = report.w5.timings_ms
    sql = report.w5.sql
    scale = report.runs[-1].scale
    return [
        f"## {W5_NAME}",
        "",
        f"`bench/bulk_updates.py`'s measurement at scale {scale:,}, but against the "
        "live gql_app server over HTTP: each mutation timed end to end against the "
        "equivalent single `UPDATE` sent directly with asyncpg, alternating, "
        f"users reset between runs, median of {report.args.w5_runs} runs. The SPEC's "
        "headline is scale 100 000 (`python -m bench.run --scale 100000` or "
        "`python -m bench.bulk_updates --scale 100000`).",
        "",
        "| mutation | rows | GraphQL over HTTP ms | direct UPDATE ms | ratio | SQL/request |",
        "|---|--:|--:|--:|--:|--:|",
        f"| deactivateInactiveUsers | {report.w5.affected:,} of {scale:,} users | "
        f"{ms(t['gql_d'])} | {ms(t['raw_d'])} | {t['gql_d'] / t['raw_d']:.1f}x | "
        f"{sql.get('deactivateInactiveUsers') or '—'} |",
        f"| adjustPrices | 500 products | {ms(t['gql_a'])} | {ms(t['raw_a'])} | "
        f"{t['gql_a'] / t['raw_a']:.1f}x | {sql.get('adjustPrices') or '—'} |",
        "",
    ]


def render(report: Report) -> str:
    lines = [*header(report), *method(report)]
    if len(report.runs) > 1:
        lines += scale_table(report)
    for scale_run in report.runs:
        lines += scale_section(report, scale_run)
    return "\n".join(lines + w5_section(report))


def in_repository(path: Path | None) -> str:
    """``path`` relative to the repository when it is inside it (no machine paths)."""
    if path is None:
        return "None"
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


KEPT = "## Measurements behind the code's choices"


def kept_sections(output: Path) -> str:
    """The hand-written sections of the previous results, from ``KEPT`` on."""
    previous = output.read_text() if output.is_file() else ""
    start = previous.find(KEPT)
    return previous[start:] if start >= 0 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=1000, help="data set scale (users)")
    parser.add_argument(
        "--scales",
        type=lambda text: [int(x) for x in text.split(",")],
        help="several scales in one run, smallest first (e.g. 1000,10000,100000)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="connections under load")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run")
    parser.add_argument("--w5-runs", type=int, default=5, help="W5 runs (median)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write")
    parser.add_argument(
        "--plans", type=Path, default=PLANS, help="folder for the full plans (<scale>.txt)"
    )
    args = parser.parse_args()
    args.scales = args.scales or [args.scale]
    if any(scale < 1 for scale in args.scales):
        parser.error("scales must be at least 1")
    os.chdir(ROOT)
    report = Report(
        args=args,
        command=".venv/bin/python -m bench.run " + shlex.join(sys.argv[1:]),
        started=dt.datetime.now(dt.UTC),
        wrk=ensure_wrk(),
    )

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    began = time.perf_counter()
    try:
        asyncio.run(run(args, report))
    finally:
        _stop_all()
    report.seconds = time.perf_counter() - began
    args.output.write_text(render(report) + "\n" + kept_sections(args.output))
    print(f"wrote {args.output} ({report.seconds:.0f} s)")


if __name__ == "__main__":
    main()
