"""The benchmark harness: W1-W5 against gql_app, PostGraphile, a naive baseline, the floor.

    .venv/bin/python -m bench.run --scales 1000,10000 --concurrency 16 --duration 5 --rounds 3

One command, one run, the same data for every contender:

1. Installs ``wrk`` (Debian package) when it is missing and the machine allows it;
   otherwise loads with the asyncio client in ``bench/load.py``. Installs the peer,
   PostGraphile v5 on Node 22 (``bench/postgraphile.py``: ``npm ci`` on first use);
   without npm, or with ``--no-peer``, it is left out and RESULTS.md says why.
2. Creates a scratch database on ``DATABASE_URL``'s server (else the embedded
   one), migrates it with Alembic, seeds the SPEC's data set at ``--scale``.
3. Phase A, statements counted: ``ALTER DATABASE ... SET log_statement = 'all'``
   (this database only), starts the contenders as separate server processes
   (gql_app: ``gql-app serve --workers 1``; PostGraphile: one Node process; naive:
   ``bench/naive.py``; raw floor: ``bench/raw_floor.py``, a bare ASGI callable; the
   Python ones under uvicorn, one process each), checks every contender's answer
   equal to gql_app's (PostGraphile's mapped to our shape first), then sends a few
   sequential requests per workload and counts the statements PostgreSQL logged for
   the scratch database's backends (cross-checked against gql_app's own
   ``gql_request_sql_statements`` metric). Servers stopped.
4. Phase B, timed: statement logging off again, servers restarted, answers
   checked equal again, then per read workload ``--rounds`` rounds, round-robin over
   the contenders (each once per round, so drifting load hits all alike): a warm-up
   in the first round, then ``--concurrency`` connections for ``--duration`` seconds,
   then one connection for ``--duration`` seconds, each with requests/s, p50, p99
   and errors from the load tool, and the CPU seconds the server process (psutil)
   and the scratch database's PostgreSQL backends used; every figure reported is
   the median over the rounds. The naive baseline is timed in one round. W4
   (addComment from 50 signed-in users, one round) mutates data and runs after the
   reads; W5 (the bulk mutations, over HTTP, against the same UPDATE sent
   directly) runs last.
5. Stops every server (process groups, also on failure), drops the scratch
   database, writes ``bench/RESULTS.md``: first the comparison with PostGraphile
   (issue 13's ratios and targets), then the tables per scale and workload.
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench import bulk_updates, postgraphile
from bench.common import (
    GQL_APP,
    JSON_HEADERS,
    NAIVE,
    RAW,
    ROOT,
    Scratch,
    Server,
    answer,
    check_equal,
    running,
    scratch_database,
    stop_all,
)
from bench.load import LoadResult, Request, drive, wrk_path
from bench.plans import SETTINGS as AUTO_EXPLAIN
from bench.plans import Plan, parse_log, summary_table, write_plans
from bench.postgraphile import PEER
from bench.raw_floor import POOL_SIZE
from bench.workloads import READ_WORKLOADS, W3_NODE, W4_ADD_COMMENT
from gql_app.relay.ids import encode_id
from gql_app.settings import Settings
from gql_app.tools.embedded import database_url
from gql_app.users.passwords import new_token, token_digest

RESULTS = ROOT / "bench" / "RESULTS.md"
PLANS = ROOT / "bench" / "plans"
W4_NAME, W5_NAME = "W4 addComment", "W5 bulk"
COUNT_REQUESTS = 10  # sequential requests per workload and contender in the counting pass
W4_USERS = 50
WARMUP_SECONDS = 2.0
NAIVE_SECONDS = 10.0
"""The naive baseline's shortest timed run: its W1 takes seconds per request at c=16."""
BEFORE_ALL = "2000-01-01T00:00:00+00:00"  # deactivates nobody: counts statements, changes nothing


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


@dataclass
class Fixtures:
    post_id: int
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
    admin_token = await bulk_updates.admin_token(conn)
    return Fixtures(w3_post, encode_id("Post", w3_post), requests, admin_token)


def read_requests(fx: Fixtures) -> dict[str, list[Request]]:
    out = {}
    for name, document in READ_WORKLOADS.items():
        body: dict[str, Any] = {"query": document}
        if document == W3_NODE:
            body["variables"] = {"postId": fx.post_gid}
        out[name] = [Request(JSON_HEADERS, orjson.dumps(body))]
    return out


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
class Timed:
    result: LoadResult
    cpu_ms: float | None  # server process CPU per request
    pg_cpu_ms: float | None  # the scratch database's backends, per request
    other_pct: float  # busy CPU of everything else (the load tool included), % of the machine
    steal_pct: float  # of which the hypervisor gave to other machines (steal), % of the machine


@dataclass(frozen=True)
class Rounds:
    """One load run repeated over rounds. Each figure is the median of its rounds' (so
    the req/s and the p99 may come from different rounds); errors are summed."""

    runs: tuple[LoadResult, ...]

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def tails(self) -> list[float]:
        """Each round's p99 over that round's own p50."""
        return [r.p99_ms / r.p50_ms for r in self.runs if r.p50_ms]

    @property
    def tail(self) -> float | None:
        """The median of the rounds' own p99/p50: the median p99 over the median p50
        would set one round's tail against another round's median, and rounds run
        under different machine load."""
        return median_of(self.tails)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def tool(self) -> str:
        return self.runs[0].tool

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest req/s over the rounds."""
        return min(r.rps for r in self.runs), max(r.rps for r in self.runs)


def rounds_of(runs: Sequence[LoadResult]) -> Rounds | None:
    return Rounds(tuple(runs)) if runs else None


def median_of(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


@dataclass
class Cell:
    """One contender on one workload: its timed runs (one per round) and statements."""

    c16_runs: list[Timed] = field(default_factory=list)
    c1_runs: list[LoadResult] = field(default_factory=list)
    sql: StatementCount | None = None
    metrics_sql: float | None = None

    @property
    def c16(self) -> Rounds | None:
        return rounds_of([t.result for t in self.c16_runs])

    @property
    def c1(self) -> Rounds | None:
        return rounds_of(self.c1_runs)

    @property
    def cpu_ms(self) -> float | None:
        """Server process CPU per request at c=16, the median over rounds."""
        return median_of(t.cpu_ms for t in self.c16_runs)

    @property
    def pg_cpu_ms(self) -> float | None:
        return median_of(t.pg_cpu_ms for t in self.c16_runs)

    @property
    def other_pct(self) -> float | None:
        """The machine's CPU used by neither the server nor PostgreSQL (median)."""
        return median_of(t.other_pct for t in self.c16_runs)

    @property
    def steal_pct(self) -> float | None:
        """Of it, the CPU the hypervisor gave to other machines (median)."""
        return median_of(t.steal_pct for t in self.c16_runs)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores)."""
    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))


def steal_seconds() -> float:
    """Of them, the seconds stolen: the hypervisor ran another machine on our cores."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


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


async def timed(
    db: Scratch, server: Server, requests: list[Request], concurrency: int, duration: float
) -> Timed:
    """One load run, with the CPU the server, PostgreSQL and the rest of the machine used."""
    await settle(server)
    cpu0, pg0, busy0 = server.cpu_seconds(), pg_cpu(await backend_pids(db)), busy_seconds()
    steal0 = steal_seconds()
    result = await drive(server.url, requests, concurrency, duration)
    cpu1, pg1, busy1 = server.cpu_seconds(), pg_cpu(await backend_pids(db)), busy_seconds()
    stolen = steal_seconds() - steal0
    pg_used = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    other = (busy1 - busy0) - (cpu1 - cpu0) - pg_used
    cores = result.seconds * (os.cpu_count() or 1)
    other_pct, steal_pct = 100 * other / cores, 100 * stolen / cores
    n = result.requests
    if n == 0:
        return Timed(result, None, None, other_pct, steal_pct)
    return Timed(result, (cpu1 - cpu0) * 1000 / n, pg_used * 1000 / n, other_pct, steal_pct)


async def measure(
    db: Scratch,
    server: Server,
    requests: list[Request],
    args: argparse.Namespace,
    cell: Cell,
    warm: bool = True,
) -> None:
    """One round: c=``--concurrency`` then c=1, each for ``--duration`` seconds (the
    naive baseline at least ``NAIVE_SECONDS``), added to the cell's runs (after a
    warm-up when ``warm``: the first round)."""
    duration = max(args.duration, NAIVE_SECONDS) if server.name == NAIVE else args.duration
    if warm:
        print(f"  {server.name}: warm-up", flush=True)
        await drive(server.url, requests, args.concurrency, WARMUP_SECONDS)
    run = await timed(db, server, requests, args.concurrency, duration)
    cell.c16_runs.append(run)
    one = (await timed(db, server, requests, 1, duration)).result
    cell.c1_runs.append(one)
    print(
        f"  {server.name}: c={args.concurrency} {run.result.rps:,.0f} req/s "
        f"(p50 {run.result.p50_ms:.2f} ms, p99 {run.result.p99_ms:.2f} ms), "
        f"c=1 {one.rps:,.0f} req/s (p50 {one.p50_ms:.2f} ms)",
        flush=True,
    )


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
class Peer:
    """PostGraphile's place in the run: its versions when it is a contender, else why not."""

    version: str = ""
    node: str = ""
    skipped: str = ""


def prepare_peer(no_peer: bool) -> Peer:
    """PostGraphile installed (``npm ci`` on first use), or the reason it is left out."""
    if no_peer:
        return Peer(skipped="left out on purpose (`--no-peer`)")
    try:
        postgraphile.install()
        version, node = postgraphile.installed_versions()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"PostGraphile left out: {exc}", file=sys.stderr)
        return Peer(skipped=f"not installed ({exc})")
    return Peer(version, node)


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
    peer: Peer = field(default_factory=Peer)
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
            scale_run = ScaleRun(scale, contenders(i, report.peer))
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


def contenders(index: int, peer: Peer) -> tuple[str, ...]:
    """Who runs at the ``index``-th scale, in the order of the tables and of each round:
    the naive baseline at the first scale only (its N+1 grows with the data)."""
    names = [GQL_APP, PEER, RAW, NAIVE]
    if peer.skipped:
        names.remove(PEER)
    return tuple(names if index == 0 else names[:-1])


@contextlib.asynccontextmanager
async def started(
    url: str, log_dir: Path, names: tuple[str, ...]
) -> AsyncIterator[dict[str, Server]]:
    """The contenders ``names`` as separate processes, in that order, stopped on exit."""
    async with running(url, log_dir, names) as ours, contextlib.AsyncExitStack() as stack:
        servers = dict(ours)
        if PEER in names:
            servers[PEER] = await stack.enter_async_context(postgraphile.running_peer(url, log_dir))
        yield {name: servers[name] for name in names}


async def contender_requests(
    http: httpx.AsyncClient,
    servers: dict[str, Server],
    fx: Fixtures,
    reads: dict[str, list[Request]],
) -> dict[str, dict[str, list[Request]]]:
    """Per read workload, each contender's requests: PostGraphile's in its own names."""
    peer: dict[str, Request] = {}
    if PEER in servers:
        peer = await postgraphile.peer_requests(http, servers[PEER], fx.post_id)
    return {
        workload: {name: [peer[workload]] if name == PEER else requests for name in servers}
        for workload, requests in reads.items()
    }


async def check_answers(
    http: httpx.AsyncClient,
    servers: dict[str, Server],
    workload: str,
    requests: dict[str, list[Request]],
) -> int:
    """Every contender's answer equal to gql_app's (PostGraphile's mapped to our shape
    first); returns the size of gql_app's."""
    ours = {name: server for name, server in servers.items() if name != PEER}
    size = await check_equal(http, ours, workload, requests[GQL_APP][0])
    if PEER in servers:
        pair = (requests[GQL_APP][0], requests[PEER][0])
        await postgraphile.check_answer(http, servers[GQL_APP], servers[PEER], workload, pair)
    return size


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
    requests: dict[str, dict[str, list[Request]]],
    servers: dict[str, Server],
    http: httpx.AsyncClient,
    scale_run: ScaleRun,
) -> None:
    for workload, by_name in requests.items():
        scale_run.sizes[workload] = await check_answers(http, servers, workload, by_name)
        for name, server in servers.items():
            cell = scale_run.cells[workload].setdefault(name, Cell())

            async def send(server: Server = server, req: Request = by_name[name][0]) -> None:
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
        started(db.url, log_dir, scale_run.contenders) as servers,
        httpx.AsyncClient(timeout=60) as http,
    ):
        requests = await contender_requests(http, servers, fx, reads)
        await count_reads(db, log, requests, servers, http, scale_run)
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


def rounds_for(name: str, args: argparse.Namespace) -> int:
    """The naive baseline is timed once: it is far below the others and not a target."""
    return 1 if name == NAIVE else args.rounds


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
        started(db.url, log_dir, scale_run.contenders) as servers,
        httpx.AsyncClient(timeout=60) as http,
    ):
        requests = await contender_requests(http, servers, fx, reads)
        for workload, by_name in requests.items():
            print(workload, flush=True)
            await check_answers(http, servers, workload, by_name)
            for number in range(1, args.rounds + 1):
                print(f" round {number} of {args.rounds}", flush=True)
                for name, server in servers.items():
                    if number <= rounds_for(name, args):
                        cell = scale_run.cells[workload][name]
                        await measure(db, server, by_name[name], args, cell, warm=number == 1)
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
        peer_version(report.peer),
        f"- Load tool: {report.wrk}",
    ]


def peer_version(peer: Peer) -> str:
    if peer.skipped:
        return f"- PostGraphile: {peer.skipped}"
    return (
        f"- PostGraphile {peer.version} on Node {peer.node} (bench/postgraphile/package-lock.json)"
    )


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def pct(value: float | None) -> str:
    return f"{value:.0f}%" if value is not None else "—"


def p50(result: Rounds | None) -> float | None:
    """The median p50, unless no request completed (wrk then reports 0)."""
    return result.p50_ms if result is not None and result.rps else None


def p99(result: Rounds | None) -> float | None:
    return result.p99_ms if result is not None and result.rps else None


def rps(result: Rounds | None) -> str:
    return f"{result.rps:,.0f}" if result is not None else "—"


TARGETS = {"W1 feed": "2x (stretch 1.5x)", "W2 people": "1.5x", "W3 node": "1.5x"}
"""Issue 12's targets: c=1 p50 at the largest scale within this factor of the first."""


PEER_TARGETS = {"W1 feed": 0.9, "W2 people": 0.9, "W3 node": 0.6}
"""Issue 13's targets: gql_app's req/s at c=16 over PostGraphile's, in the same run."""
PEER_STRETCH = 1.0
TAIL_TARGET = 2.0
"""gql_app's p99 at c=16 within this factor of its p50."""


@dataclass(frozen=True)
class PeerRow:
    """One scale and workload of the comparison with PostGraphile."""

    scale: int
    workload: str
    gql: Cell
    peer: Cell | None
    floor: Cell | None

    @property
    def ratio(self) -> float | None:
        """gql_app's req/s at c=16 over PostGraphile's."""
        ours, theirs = self.gql.c16, self.peer.c16 if self.peer else None
        return ours.rps / theirs.rps if ours and theirs and theirs.rps else None

    @property
    def share(self) -> float | None:
        """gql_app's req/s at c=16 over the raw floor's."""
        ours, floor = self.gql.c16, self.floor.c16 if self.floor else None
        return ours.rps / floor.rps if ours and floor and floor.rps else None

    @property
    def tail(self) -> float | None:
        """gql_app's p99 over its p50 at c=16 (the median of the rounds')."""
        ours = self.gql.c16
        return ours.tail if ours else None

    @property
    def one_client_faster(self) -> bool | None:
        """Whether gql_app's c=1 p50 is at most PostGraphile's."""
        ours, theirs = self.gql.c1, self.peer.c1 if self.peer else None
        return ours.p50_ms <= theirs.p50_ms if ours and theirs else None

    @property
    def same_statements(self) -> bool | None:
        """Whether gql_app sends as many statements per request as the floor (all kinds)."""
        ours, floor = self.gql.sql, self.floor.sql if self.floor else None
        if ours is None or floor is None:
            return None
        return (ours.data, ours.other) == (floor.data, floor.other)


def peer_rows(report: Report) -> list[PeerRow]:
    rows = []
    for scale_run in report.runs:
        for workload in PEER_TARGETS:
            cells = scale_run.cells.get(workload, {})
            gql = cells.get(GQL_APP)
            if gql is not None:
                row = PeerRow(scale_run.scale, workload, gql, cells.get(PEER), cells.get(RAW))
                rows.append(row)
    return rows


def verdict(met: bool | None) -> str:
    return "—" if met is None else "met" if met else "**not met**"


def times(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def peer_line(row: PeerRow) -> str:
    target = PEER_TARGETS[row.workload]
    r = row.ratio
    p50s = " / ".join(ms(p50(cell.c1 if cell else None)) for cell in (row.gql, row.peer, row.floor))
    sql = " / ".join(
        str(cell.sql) if cell and cell.sql else "—" for cell in (row.gql, row.peer, row.floor)
    )
    tail = row.tail
    rounds = ", ".join(times(t) for t in row.gql.c16.tails) if row.gql.c16 else ""
    others = " / ".join(
        times(cell.c16.tail if cell and cell.c16 else None) for cell in (row.peer, row.floor)
    )
    return (
        f"| {row.scale:,} | {row.workload} | {rps(row.gql.c16)} | "
        f"{rps(row.peer.c16 if row.peer else None)} | {times(r)} | "
        f"≥ {target:g}: {verdict(r >= target if r is not None else None)} | "
        f"{verdict(r >= PEER_STRETCH if r is not None else None)} / "
        f"{verdict(row.one_client_faster)} | "
        f"{rps(row.floor.c16 if row.floor else None)} | "
        f"{pct(100 * row.share if row.share is not None else None)} | "
        f"{times(tail)} ({rounds}): "
        f"{verdict(tail <= TAIL_TARGET if tail is not None else None)} | {others} | "
        f"{p50s} | {sql} |"
    )


def tally(label: str, results: list[bool | None]) -> str:
    known = [x for x in results if x is not None]
    return f"{label}: {sum(known)} of {len(known)}"


def against_peer(report: Report) -> list[str]:
    """Issue 13's comparison: gql_app's throughput over PostGraphile's, per scale and
    workload, beside the floor, gql_app's tail and the statements each sends."""
    lines = ["## Against PostGraphile", ""]
    if report.peer.skipped:
        return [*lines, f"PostGraphile was not run: {report.peer.skipped}.", ""]
    c = report.args.concurrency
    rows = peer_rows(report)
    targets = ", ".join(f"{w} ≥ {t:g}" for w, t in PEER_TARGETS.items())
    return [
        *lines,
        f"gql_app's req/s at c={c} over PostGraphile {report.peer.version}'s (Node "
        f"{report.peer.node}), one process each, same data, same run, median of "
        f"{report.args.rounds} rounds. Targets (issue 13): {targets}; gql_app's p99 at "
        f"most {TAIL_TARGET:g}x its p50 (each round's p99 over its own p50, the median of "
        "the rounds; each round's in parentheses); as many statements per request as the "
        "raw floor. "
        f"Stretch: a ratio of at least {PEER_STRETCH:g} and a one-client (c=1) p50 at most "
        "PostGraphile's. SQL/request: the application's statements (+ the rest: BEGIN, "
        "ROLLBACK, ...), from PostgreSQL's log.",
        "",
        f"| scale | workload | gql_app req/s c={c} | PostGraphile req/s c={c} | ratio | "
        "target | stretch (ratio / c=1 p50) | raw floor req/s | gql_app's share of the "
        f"floor | gql_app p99/p50 (≤ {TAIL_TARGET:g}) | p99/p50 PostGraphile / floor | "
        "c=1 p50 ms gql_app / PostGraphile / floor | SQL/request gql_app / PostGraphile / "
        "floor |",
        "|--:|---|--:|--:|--:|---|---|--:|--:|---|--:|--:|---|",
        *(peer_line(row) for row in rows),
        "",
        tally(
            "Targets met",
            [
                row.ratio >= PEER_TARGETS[row.workload] if row.ratio is not None else None
                for row in rows
            ],
        )
        + "; "
        + tally("stretch ratio", [row.ratio >= PEER_STRETCH if row.ratio else None for row in rows])
        + "; "
        + tally("c=1 p50 at most PostGraphile's", [row.one_client_faster for row in rows])
        + "; "
        + tally("p99/p50", [row.tail <= TAIL_TARGET if row.tail else None for row in rows])
        + "; "
        + tally("statements equal to the floor's", [row.same_statements for row in rows])
        + ".",
        "",
    ]


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
        "the same scratch database, one at a time under load. W1-W3 are timed in "
        f"{args.rounds} rounds, round-robin (every contender once, then the next round), "
        "so that drifting machine load hits all alike; each figure is the median over the "
        "rounds. The naive baseline (at the first scale only: its N+1 grows with the "
        f"data; its runs last at least {NAIVE_SECONDS:g} s, as its W1 takes seconds per "
        "request) and W4 are timed in one round; W5 runs at the last scale.",
        "",
        *against_peer(report),
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
        f"- **{PEER}**: {peer_contender(report.peer)}",
        "- **raw floor**: `bench/raw_floor.py`, the statements gql_app issues for the "
        "document, run directly with asyncpg in a REPEATABLE READ READ ONLY transaction, "
        "JSON built with orjson; a bare ASGI callable (no framework) on uvicorn, one "
        "process.",
        "- **naive (N+1)**: `bench/naive.py`, a Strawberry schema over the same models with "
        "plain per-object resolvers: one `SELECT` per relationship per parent, no "
        "dataloaders (uvicorn, one process, same pool settings, orjson).",
        "",
        "Before any timing, every contender's `data` is checked byte-equal (as JSON) to "
        "gql_app's, in both phases (sizes at the first scale: "
        + ", ".join(f"{w} {n:,} B" for w, n in sizes.items())
        + "); PostGraphile's is first mapped to gql_app's names and shape "
        "(`bench.postgraphile.as_ours`) and compared field by field, ids and cursors "
        "aside (each server encodes its own), timestamps as instants. W4 checks the "
        "payload's shape.",
        "",
    ]


def peer_contender(peer: Peer) -> str:
    if peer.skipped:
        return f"not run: {peer.skipped}."
    return (
        f"PostGraphile {peer.version} on Node {peer.node} (`bench/postgraphile.py`: "
        "`graphile.config.mjs`, the amber preset over the same tables, one Node process, "
        f"node-postgres pool of {POOL_SIZE}, `NODE_ENV=production`), asked W1-W3 in its "
        "own names (`allPosts`, `postsByAuthorId`, ...)."
    )


def method(report: Report) -> list[str]:
    c = report.args.concurrency
    return [
        "## How the numbers are measured",
        "",
        f"- **req/s, p50, p99, errors**: from the load tool ({report.tool or 'wrk'}), a "
        "closed loop over HTTP/1.1 keep-alive; errors are socket errors, non-200 answers "
        'and answers with `"errors"`, summed over every run; with several rounds, each '
        "figure is the median of the rounds' (req/s range: the lowest and highest round).",
        "- **SQL/request**: counted from PostgreSQL's own statement log "
        "(`log_statement = 'all'` set on the scratch database only; file "
        f"`{in_repository(report.log_path)}`), "
        f"over {COUNT_REQUESTS} sequential requests after a warm request, in a separate "
        "pass so logging costs nothing in the timed runs. First number: the "
        "application's statements; in parentheses: the rest (BEGIN, ROLLBACK/COMMIT, "
        "SAVEPOINT, the pool's pre-ping). Every contender's backends are counted alike, "
        "PostGraphile's included. gql_app's own count (its "
        "`gql_request_sql_statements` metric) is given below each table as a cross-check.",
        "- **Plans**: in the same pass the scratch database loads `auto_explain` "
        "(`session_preload_libraries`, `log_analyze`, `log_buffers`, every statement): "
        "PostgreSQL logs the plan it actually ran for each of gql_app's statements, with "
        "its parameters. Summarised per scale below (execution time inside PostgreSQL, rows "
        "read = rows out of the scan nodes plus rows they removed by filter, shared buffers "
        "hit + read, node types, flags for a Seq Scan over a table that grows with the "
        "scale, any scan reading more than 10 000 rows or a Sort of more than 1 000 rows); "
        "in full in the linked files.",
        f"- **CPU ms/request**: user + system CPU seconds of the server process (psutil; "
        "PostGraphile's Node process alike) "
        f"during the c={c} run, divided by the requests served; **PG CPU** the same for "
        "the scratch database's PostgreSQL backends. **other CPU**: the rest of the "
        "machine's busy CPU during that run (the load tool and anything else running), in % "
        "of all cores: high values mean the numbers were disturbed; *steal* is the part of "
        "it the hypervisor gave to other virtual machines on the same cores (`/proc/stat`), "
        "time none of the contenders could run.",
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
        for name in (GQL_APP, PEER, RAW):
            cells = [r.cells.get(workload, {}).get(name) for r in runs]
            if not any(cells):
                continue
            p50s = [p50(x.c1 if x else None) for x in cells]
            tput = [rps(x.c16) if x else "—" for x in cells]
            ratios = [ratio(v, p50s[0]) for v in p50s]
            target = TARGETS.get(workload, "—") if name == GQL_APP else "—"
            lines.append(
                f"| {workload} | {name} | {' / '.join(ms(v) for v in p50s)} | "
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


def spread(result: Rounds | None) -> str:
    """The lowest and highest round's req/s (one round: only the one)."""
    if result is None or len(result.runs) < 2:
        return "—"
    low, high = result.spread
    return f"{low:,.0f}-{high:,.0f}"


def workload_table(workload: str, cells: dict[str, Cell], c: int) -> list[str]:
    floor = cells.get(RAW)
    lines = [
        f"### {workload}",
        "",
        f"| contender | req/s c={c} | range over rounds | p50 ms | p99 ms | req/s c=1 | "
        "p50 ms c=1 | p99 ms c=1 | errors | SQL/request | server CPU ms/req | "
        f"PG CPU ms/req | other CPU (steal) | req/s vs floor (c={c} / c=1) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, cell in cells.items():
        vs = "—"
        if floor and floor.c16 and floor.c1 and cell.c16 and cell.c1:
            c16, c1 = 100 * cell.c16.rps / floor.c16.rps, 100 * cell.c1.rps / floor.c1.rps
            vs = f"{c16:.0f}% / {c1:.0f}%"
        errors = sum(r.errors for r in (cell.c16, cell.c1) if r is not None)
        lines.append(
            f"| {name} | {rps(cell.c16)} | {spread(cell.c16)} | "
            f"{ms(p50(cell.c16))} | "
            f"{ms(p99(cell.c16))} | {rps(cell.c1)} | "
            f"{ms(p50(cell.c1))} | "
            f"{ms(p99(cell.c1))} | "
            f"{errors} | {cell.sql or '—'} | {ms(cell.cpu_ms)} | {ms(cell.pg_cpu_ms)} | "
            f"{pct(cell.other_pct)} ({pct(cell.steal_pct)}) | {vs} |"
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
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per timed run (c=16, then c=1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of W1-W3's timed runs, round-robin over the contenders (medians)",
    )
    parser.add_argument(
        "--no-peer", action="store_true", help="leave PostGraphile out (it needs npm)"
    )
    parser.add_argument("--w5-runs", type=int, default=5, help="W5 runs (median)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write")
    parser.add_argument(
        "--plans", type=Path, default=PLANS, help="folder for the full plans (<scale>.txt)"
    )
    args = parser.parse_args()
    args.scales = args.scales or [args.scale]
    if any(scale < 1 for scale in args.scales):
        parser.error("scales must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    os.chdir(ROOT)
    report = Report(
        args=args,
        command=".venv/bin/python -m bench.run " + shlex.join(sys.argv[1:]),
        started=dt.datetime.now(dt.UTC),
        wrk=ensure_wrk(),
        peer=prepare_peer(args.no_peer),
    )

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    began = time.perf_counter()
    try:
        asyncio.run(run(args, report))
    finally:
        stop_all()
    report.seconds = time.perf_counter() - began
    args.output.write_text(render(report) + "\n" + kept_sections(args.output))
    print(f"wrote {args.output} ({report.seconds:.0f} s)")


if __name__ == "__main__":
    main()
