"""W6, the live fan-out: WebSocket subscribers of ``commentAdded`` and ``productChanged``
on one gql_app process while writers add comments and adjust prices.

    .venv/bin/python -m bench.live --scale 1000 --subscribers 1000 --rate 20 --duration 30

1. A scratch database on ``DATABASE_URL``'s server (else the embedded one; set
   ``GQL_DATA_DIR`` to keep it apart from other runs), migrated and seeded at
   ``--scale`` with ``bench/run.py``'s functions. Fixtures: the first published
   post, ``WRITERS`` signed-in users who comment on it, an admin who adjusts
   prices, the 500 products in id order (the price writer's rotation).
2. Phases, each on a fresh server, ``gql-app serve --workers 1`` exactly as a user
   starts it (``GQL_LOG_LEVEL=WARNING``, nothing else set): *1 subscriber* (one
   of each kind), *main* (``--subscribers`` of each kind), *signed in*
   (``--viewers`` of each kind, each signed in as another user: one group per
   subscriber, so one execution per subscriber and event) and, with
   ``--stretch``, *stretch* (that many subscribers in all, half of each kind,
   comments at ``--stretch-rate``, one product per price adjustment). Per phase:

   - warm-up: one subscription of each kind over the ``websockets`` client, one
     comment and one price adjustment, both results checked, then closed;
   - memory: the server's RSS (psutil) before the subscribers connect and after
     they are all subscribed (``gql_subscriptions`` reaches the total) and 2 s of
     quiet; the difference over the number of subscriptions is the memory per
     idle subscription (one connection holding one subscription);
   - subscribers: ``--clients`` processes of ``bench/live_client.py`` (its
     docstring: sans-I/O websockets, one subscription per connection,
     connection_init → connection_ack → subscribe), connections interleaved;
     ``commentAdded(postId:)`` on the post and ``productChanged`` without ``ids``
     (every product event), anonymous unless the phase signs them in;
   - SQL statements per event batch, counted: ``COUNT_COMMENTS`` comments then
     ``COUNT_ADJUSTS`` adjustments, one at a time with pauses so each is its own
     batch, from the server's ``gql_live_batch_sql_statements`` histogram
     (sum/count before and after). The same numbers with one subscriber and with
     thousands show whether statements depend on subscribers;
   - load: for ``--duration`` s, an open-loop comment writer at ``--rate``/s (one
     request at a time, so commit order is send order; the next is sent at its
     scheduled time, or at once when late) whose body is ``"<seq> <time.time()>"``,
     and a price writer: ``--price-rate`` ``adjustPrices`` per second, each over
     the next ``--price-products`` products of the rotation (+1 %), send time
     kept per product. Both over HTTP keep-alive from this process;
   - drain: until every expected delivery arrived or nothing arrived for
     ``DRAIN_IDLE_S``. Expected = committed comments x comment subscribers +
     changed products x product subscribers (the counted and warm-up-free writes
     included); each subscriber checks its own sequence (none missing, none
     twice, increasing).

3. Reported per phase: deliveries expected, received, duplicates, out of order,
   errors; deliveries/s; latency p50/p99/max as receive time (client) minus the
   writer's send time (``time.time()``, one clock): an upper bound of
   commit-to-delivery, since it includes the mutation's own latency, which is
   reported beside it (p50/p99 of the HTTP round trip) so it can be subtracted;
   the server's own ``gql_live_delivery_seconds`` p99 bucket (batch arrival ->
   queued on every socket); CPU seconds of the server process, of the scratch
   database's PostgreSQL backends and of the client processes during load and
   drain; RSS per idle subscription.
4. Every process stopped (process groups, also on failure), the scratch database
   dropped, ``bench/RESULTS-live.md`` written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import math
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from bench.common import ROOT, Scratch, Server, free_port, scratch_database, stop_all, wait_ready
from bench.common import RUNNING as RUNNING_SERVERS
from bench.run import backend_pids, busy_seconds, machine, pg_cpu
from bench.workloads import (
    W4_ADD_COMMENT,
    W6_ADJUST_PRICES,
    W6_COMMENT_ADDED,
    W6_PRODUCT_CHANGED,
)
from gql_app.relay.ids import encode_id
from gql_app.settings import Settings
from gql_app.tools.embedded import database_url
from gql_app.users.passwords import new_token, token_digest

RESULTS = ROOT / "bench" / "RESULTS-live.md"
WRITERS = 20  # signed-in users taking turns at commenting
COUNT_COMMENTS, COUNT_ADJUSTS, COUNT_PAUSE_S = 5, 3, 0.3
SETTLE_S = 2.0
DRAIN_IDLE_S = 10.0
SUBSCRIBE_TIMEOUT_S = 300.0
BUCKET_PER_MS = 10  # bench/live_client.py's latency histogram resolution


# ---------------------------------------------------------------- fixtures


@dataclass
class LiveFixtures:
    post_gid: str
    writer_tokens: list[str]
    admin_token: str
    product_gids: list[str]  # the price writer's rotation: products in id order
    viewer_tokens: list[str]  # other users, for signed-in subscribers


async def grant(conn: Any, user_ids: list[int]) -> list[str]:
    """A bearer token (a day long) for each user."""
    tokens = [new_token() for _ in user_ids]
    await conn.executemany(
        "INSERT INTO auth_tokens (user_id, token_hash, expires_at) "
        "VALUES ($1, $2, now() + interval '1 day')",
        [(uid, token_digest(t)) for uid, t in zip(user_ids, tokens, strict=True)],
    )
    return tokens


async def live_fixtures(db: Scratch, viewers: int) -> LiveFixtures:
    conn = db.conn
    post = await conn.fetchval(
        "SELECT id FROM posts WHERE published_at IS NOT NULL ORDER BY id LIMIT 1"
    )
    users = await conn.fetch(
        "SELECT id FROM users WHERE is_active AND NOT is_admin ORDER BY id LIMIT $1",
        WRITERS + viewers,
    )
    ids = [r["id"] for r in users]
    admin = await conn.fetchval("SELECT id FROM users WHERE is_admin ORDER BY id LIMIT 1")
    products = await conn.fetch("SELECT id FROM products ORDER BY id")
    return LiveFixtures(
        encode_id("Post", post),
        await grant(conn, ids[:WRITERS]),
        (await grant(conn, [admin]))[0],
        [encode_id("Product", r["id"]) for r in products],
        await grant(conn, ids[WRITERS:]),
    )


# ---------------------------------------------------------------- metrics


@dataclass
class Metrics:
    batch_sum: float = 0.0
    batch_count: float = 0.0
    deliveries: float = 0.0
    subscriptions: float = 0.0
    connections: float = 0.0
    drops: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative


async def scrape(http: httpx.AsyncClient, server: Server) -> Metrics:
    m = Metrics()
    text = (await http.get(f"{server.base}/metrics")).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "gql_live_batch_sql_statements_sum":
                m.batch_sum += s.value
            elif s.name == "gql_live_batch_sql_statements_count":
                m.batch_count += s.value
            elif s.name == "gql_live_deliveries_total":
                m.deliveries += s.value
            elif s.name == "gql_subscriptions":
                m.subscriptions += s.value
            elif s.name == "gql_ws_connections":
                m.connections += s.value
            elif s.name == "gql_live_drops_total":
                m.drops += s.value
            elif s.name == "gql_live_delivery_seconds_bucket":
                le = float(s.labels["le"])
                m.latency_buckets[le] = m.latency_buckets.get(le, 0.0) + s.value
    return m


def per_batch(before: Metrics, after: Metrics) -> tuple[float | None, int]:
    """SQL statements per event batch between two scrapes, and the number of batches."""
    batches = int(after.batch_count - before.batch_count)
    if batches == 0:
        return None, 0
    return (after.batch_sum - before.batch_sum) / batches, batches


def bucket_quantile(before: Metrics, after: Metrics, q: float) -> float | None:
    """The histogram bucket bound (s) under which ``q`` of the observations fall."""
    bounds = sorted(after.latency_buckets)
    counts = [after.latency_buckets[b] - before.latency_buckets.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] == 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * counts[-1]:
            return bound
    return math.inf


# ---------------------------------------------------------------- writers


@dataclass
class Writer:
    """The phase's writes: comments in sequence, price adjustments over the rotation."""

    http: httpx.AsyncClient
    url: str
    fx: LiveFixtures
    seq: int = 0  # next comment sequence number
    rank: int = 0  # next product rank in the rotation
    committed_comments: int = 0
    changed_products: int = 0
    product_sent: dict[int, float] = field(default_factory=dict)  # rank -> send time
    comment_ms: list[float] = field(default_factory=list)
    adjust_ms: list[float] = field(default_factory=list)
    failures: list[Any] = field(default_factory=list)

    async def post(self, token: str, query: str, variables: dict[str, Any]) -> Any:
        body = orjson.dumps({"query": query, "variables": variables})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        response = await self.http.post(self.url, content=body, headers=headers)
        payload = response.json()
        if response.status_code != 200 or payload.get("errors"):
            self.failures.append(payload)
            return None
        return payload["data"]

    async def comment(self) -> None:
        seq, self.seq = self.seq, self.seq + 1
        token = self.fx.writer_tokens[seq % len(self.fx.writer_tokens)]
        sent = time.time()
        body = f"{seq} {sent:.6f}"
        data = await self.post(
            token, W4_ADD_COMMENT, {"input": {"postId": self.fx.post_gid, "body": body}}
        )
        self.comment_ms.append((time.time() - sent) * 1000)
        if data and data["addComment"]["comment"] and not data["addComment"]["userErrors"]:
            self.committed_comments += 1
        elif data:
            self.failures.append(data)

    async def adjust(self, products: int) -> None:
        gids = self.fx.product_gids
        if self.rank + products > len(gids):
            raise RuntimeError("the price rotation ran out of products: lower the price rate")
        ranks = range(self.rank, self.rank + products)
        self.rank += products
        sent = time.time()
        for r in ranks:
            self.product_sent[r] = sent
        variables = {"input": {"percent": "1", "productIds": [gids[r] for r in ranks]}}
        data = await self.post(self.fx.admin_token, W6_ADJUST_PRICES, variables)
        self.adjust_ms.append((time.time() - sent) * 1000)
        if data and data["adjustPrices"]["affectedCount"] == products:
            self.changed_products += products
        elif data:
            self.failures.append(data)


async def paced(rate: float, duration: float, action: Any) -> int:
    """Call ``action()`` at ``rate``/s for ``duration`` s, one at a time, open loop."""
    if rate <= 0:
        return 0
    start = time.monotonic()
    n = 0
    while (due := start + n / rate) < start + duration:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await action()
        n += 1
    return n


# ---------------------------------------------------------------- subscriber processes


class Clients:
    """``bench/live_client.py`` processes, commanded over their stdin/stdout."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, configs: list[dict[str, Any]], tmp: Path) -> None:
        for i, config in enumerate(configs):
            path = tmp / f"client-{i}.json"
            path.write_bytes(orjson.dumps(config))
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.live_client",
                str(path),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=2**26,
            )
            self.procs.append(proc)
            _CLIENTS.append(proc)

    async def ask(self, command: str) -> list[dict[str, Any]]:
        answers = []
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(command.encode() + b"\n")
            await proc.stdin.drain()
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a subscriber process exited (code {proc.returncode})")
            answers.append(orjson.loads(line))
        return answers

    async def received(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for status in await self.ask("status"):
            total.update(status["received"])
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(proc.pid).cpu_times()
                total += t.user + t.system
        return total

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(b"quit\n")
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                kill_group(proc.pid)
            if proc in _CLIENTS:
                _CLIENTS.remove(proc)
        self.procs = []


_CLIENTS: list[asyncio.subprocess.Process] = []


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def client_configs(fx: LiveFixtures, server: Server, spec: PhaseSpec) -> list[dict[str, Any]]:
    """Connections interleaved over the processes, both kinds in each; the first
    ``spec.viewers`` of each kind signed in, each as another user."""
    connections: list[tuple[str, str | None]] = []
    for kind, n in (("comment", spec.comments), ("product", spec.products)):
        tokens = fx.viewer_tokens[: min(spec.viewers, n)]
        connections += [(kind, t) for t in tokens] + [(kind, None)] * (n - len(tokens))
    ranks = {gid: rank for rank, gid in enumerate(fx.product_gids)}
    url = f"ws://127.0.0.1:{server.port}/graphql"
    processes = spec.clients
    return [
        {
            "url": url,
            "post_id": fx.post_gid,
            "product_ranks": ranks,
            "connections": connections[i::processes],
        }
        for i in range(processes)
        if connections[i::processes]
    ]


# ---------------------------------------------------------------- one phase


@dataclass
class PhaseSpec:
    name: str
    comments: int  # commentAdded subscribers
    products: int  # productChanged subscribers
    rate: float  # comments per second
    duration: float
    clients: int  # subscriber processes
    price_rate: float  # adjustPrices per second
    price_products: int  # products per adjustPrices
    viewers: int = 0  # subscribers of each kind signed in, each as another user


@dataclass
class PhaseResult:
    spec: PhaseSpec
    opened: int = 0
    failed: int = 0
    rss_before: int = 0
    rss_after: int = 0
    count_comment_sql: float | None = None
    count_product_sql: float | None = None
    load_sql: float | None = None
    load_batches: int = 0
    comments_written: int = 0
    products_changed: int = 0
    write_seconds: float = 0.0
    drain_seconds: float = 0.0
    expected: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    out_of_order: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    unexpected_closes: int = 0
    drops: float = 0.0
    server_deliveries: float = 0.0
    latency: dict[str, Counter[int]] = field(default_factory=dict)
    worst: dict[int, float] = field(default_factory=dict)  # unix second -> worst comment s
    comment_ms: list[float] = field(default_factory=list)
    adjust_ms: list[float] = field(default_factory=list)
    server_queue_p50: float | None = None
    server_queue_p99: float | None = None
    server_cpu: float = 0.0
    pg_cpu: float = 0.0
    client_cpu: float = 0.0
    busy_pct: float = 0.0
    other_pct: float = 0.0  # busy CPU of everything else on the machine
    write_failures: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def subscriptions(self) -> int:
        return self.spec.comments + self.spec.products

    @property
    def kib_per_subscription(self) -> float | None:
        if not self.opened:
            return None
        return (self.rss_after - self.rss_before) / 1024 / self.opened


def server_rss(server: Server) -> int:
    assert server.proc is not None
    root = psutil.Process(server.proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


async def warm_up(http: httpx.AsyncClient, server: Server, writer: Writer) -> None:
    """One subscription of each kind, one write each, results checked: the paths are
    imported and warm before memory is measured, and the payloads are right."""
    url = f"ws://127.0.0.1:{server.port}/graphql"
    documents = [
        (W6_COMMENT_ADDED, {"postId": writer.fx.post_gid}, "commentAdded"),
        (W6_PRODUCT_CHANGED, None, "productChanged"),
    ]
    sockets = []
    for query, variables, _ in documents:
        ws = await connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        sockets.append(ws)
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        message = {"id": "w", "type": "subscribe", "payload": {"query": query}}
        message["payload"]["variables"] = variables  # type: ignore[index]
        await ws.send(orjson.dumps(message).decode())
    await wait_for_subscriptions(http, server, 2)
    await writer.post(
        writer.fx.writer_tokens[0],
        W4_ADD_COMMENT,
        {"input": {"postId": writer.fx.post_gid, "body": "warm-up"}},
    )
    await writer.post(
        writer.fx.admin_token,
        W6_ADJUST_PRICES,
        {"input": {"percent": "0", "productIds": writer.fx.product_gids[-1:]}},
    )
    for ws, (_, _, fieldname) in zip(sockets, documents, strict=True):
        got = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if got.get("type") != "next" or not got["payload"].get("data", {}).get(fieldname):
            raise AssertionError(f"warm-up: unexpected {got!r}")
        print(f"  warm-up {fieldname}: {orjson.dumps(got['payload']).decode()}", flush=True)
        await ws.close()
    await wait_for_subscriptions(http, server, 0)


async def wait_for_subscriptions(
    http: httpx.AsyncClient, server: Server, n: int, limit_s: float = SUBSCRIBE_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + limit_s
    while (m := await scrape(http, server)).subscriptions != n or (n == 0 and m.connections != 0):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{m.subscriptions:g} subscriptions on the server, expected {n}")
        await asyncio.sleep(0.5)


async def count_sql(
    http: httpx.AsyncClient, server: Server, writer: Writer, result: PhaseResult
) -> None:
    """Statements per batch for comments, then for price adjustments, one batch each."""
    before = await scrape(http, server)
    for _ in range(COUNT_COMMENTS):
        await writer.comment()
        await asyncio.sleep(COUNT_PAUSE_S)
    middle = await scrape(http, server)
    for _ in range(COUNT_ADJUSTS):
        await writer.adjust(result.spec.price_products)
        await asyncio.sleep(COUNT_PAUSE_S)
    after = await scrape(http, server)
    result.count_comment_sql, n = per_batch(before, middle)
    if n != COUNT_COMMENTS:
        result.notes.append(f"comment counting step: {n} batches for {COUNT_COMMENTS} comments")
    result.count_product_sql, n = per_batch(middle, after)
    if n != COUNT_ADJUSTS:
        result.notes.append(f"price counting step: {n} batches for {COUNT_ADJUSTS} adjustments")


async def drain(clients: Clients, expected: Counter[str]) -> float:
    """Seconds until every expected delivery arrived (or nothing came for a while)."""
    start = last_change = time.monotonic()
    previous: Counter[str] = Counter()
    while True:
        got = await clients.received()
        now = time.monotonic()
        if all(got[k] >= v for k, v in expected.items()):
            return now - start
        if got != previous:
            previous, last_change = got, now
        elif now - last_change > DRAIN_IDLE_S:
            return now - start
        await asyncio.sleep(0.05)


@dataclass
class CpuSample:
    server: float
    pg: dict[int, float]
    clients: float
    harness: float  # this process: the writers and the bookkeeping
    busy: float  # the whole machine, all cores
    at: float


async def cpu_sample(db: Scratch, server: Server, clients: Clients, pids: set[int]) -> CpuSample:
    t = psutil.Process().cpu_times()
    return CpuSample(
        server.cpu_seconds(),
        pg_cpu(pids | await backend_pids(db)),
        clients.cpu_seconds(),
        t.user + t.system,
        busy_seconds(),
        time.monotonic(),
    )


def cpu_used(result: PhaseResult, a: CpuSample, b: CpuSample) -> None:
    result.server_cpu = b.server - a.server
    result.pg_cpu = sum(v - a.pg.get(pid, 0.0) for pid, v in b.pg.items())
    result.client_cpu = b.clients - a.clients
    capacity = (b.at - a.at) * (os.cpu_count() or 1)
    result.busy_pct = 100 * (b.busy - a.busy) / capacity
    ours = result.server_cpu + result.pg_cpu + result.client_cpu + b.harness - a.harness
    result.other_pct = 100 * (b.busy - a.busy - ours) / capacity


async def load(
    db: Scratch, server: Server, clients: Clients, writer: Writer, result: PhaseResult
) -> None:
    spec = result.spec
    pids = await backend_pids(db)
    before = await cpu_sample(db, server, clients, pids)
    written = await asyncio.gather(
        paced(spec.rate, spec.duration, writer.comment),
        paced(spec.price_rate, spec.duration, lambda: writer.adjust(spec.price_products)),
    )
    result.write_seconds = time.monotonic() - before.at
    print(f"  wrote {written[0]} comments, {written[1]} adjustments", flush=True)
    expected = Counter(
        comment=writer.committed_comments * spec.comments,
        product=writer.changed_products * spec.products,
    )
    result.drain_seconds = await drain(clients, expected)
    cpu_used(result, before, await cpu_sample(db, server, clients, pids))
    result.expected = dict(expected)


async def collect(clients: Clients, writer: Writer, result: PhaseResult, tmp: Path) -> None:
    sent_path = tmp / "product-sent.json"
    sent_path.write_bytes(orjson.dumps({str(k): v for k, v in writer.product_sent.items()}))
    result.latency = {"comment": Counter(), "commit": Counter(), "product": Counter()}
    for key in ("received", "duplicates", "out_of_order"):
        setattr(result, key, Counter())
    for report in await clients.ask(f"report {sent_path}"):
        result.opened += report["opened"]
        result.failed += report["failed"]
        result.errors += report["errors"]
        result.unexpected_closes += report["unexpected_closes"]
        for key in ("received", "duplicates", "out_of_order"):
            getattr(result, key).update(report[key])
        for kind, histogram in report["latency"].items():
            result.latency[kind].update({int(k): v for k, v in histogram.items()})
        for second, worst in report["worst"].items():
            result.worst[int(second)] = max(result.worst.get(int(second), 0.0), worst)
        result.notes += [f"client error: {e}" for e in report["first_errors"][:2]]
        result.notes += [f"client failure: {e}" for e in report["first_failures"][:2]]
    result.comments_written = writer.committed_comments
    result.products_changed = writer.changed_products
    result.comment_ms, result.adjust_ms = writer.comment_ms, writer.adjust_ms
    result.write_failures = writer.failures[:3]


async def subscribe_all(
    http: httpx.AsyncClient,
    server: Server,
    clients: Clients,
    fx: LiveFixtures,
    result: PhaseResult,
    tmp: Path,
) -> None:
    spec = result.spec
    await clients.start(client_configs(fx, server, spec), tmp)
    began = time.monotonic()
    await wait_for_subscriptions(http, server, result.subscriptions)
    print(f"  {result.subscriptions} subscribed in {time.monotonic() - began:.1f}s", flush=True)
    await asyncio.sleep(SETTLE_S)


async def run_phase(db: Scratch, fx: LiveFixtures, spec: PhaseSpec, log_dir: Path) -> PhaseResult:
    print(f"phase {spec.name}: {spec.comments} + {spec.products} subscribers", flush=True)
    result = PhaseResult(spec)
    server = start_server(db, log_dir)
    clients = Clients()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            await wait_ready(http, server)
            writer = Writer(http, server.url, fx)
            await warm_up(http, server, writer)
            writer = Writer(http, server.url, fx)  # sequences start at 0 for the subscribers
            result.rss_before = server_rss(server)
            await subscribe_all(http, server, clients, fx, result, log_dir)
            result.rss_after = server_rss(server)
            await count_sql(http, server, writer, result)
            before = await scrape(http, server)
            await load(db, server, clients, writer, result)
            after = await scrape(http, server)
            result.load_sql, result.load_batches = per_batch(before, after)
            result.server_queue_p50 = bucket_quantile(before, after, 0.5)
            result.server_queue_p99 = bucket_quantile(before, after, 0.99)
            result.drops = after.drops
            result.server_deliveries = after.deliveries
            await collect(clients, writer, result, log_dir)
    except Exception:
        print(f"--- server log\n{server.tail()}", file=sys.stderr)
        raise
    finally:
        await clients.stop()
        server.stop()
        if server in RUNNING_SERVERS:
            RUNNING_SERVERS.remove(server)
    print_phase(result)
    return result


def start_server(db: Scratch, log_dir: Path) -> Server:
    bin_dir = Path(sys.executable).parent
    port = free_port()
    server = Server("gql_app", [str(bin_dir / "gql-app"), "serve", "--port", str(port)], port)
    env = {
        **os.environ,
        "DATABASE_URL": db.url,
        "GQL_SECRET_KEY": "bench-secret-key",  # the default is refused with DATABASE_URL
        "GQL_LOG_LEVEL": "WARNING",
    }
    env.pop("GQL_READ_REPLICA_URL", None)
    server.start(env, log_dir)
    RUNNING_SERVERS.append(server)
    return server


# ---------------------------------------------------------------- numbers


def quantile(histogram: Counter[int], q: float) -> float | None:
    """The ``q`` quantile (ms) of a 0.1 ms-bucket histogram."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= q * total:
            return (bucket + 1) / BUCKET_PER_MS
    return None


def list_quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def total(counts: dict[str, int]) -> int:
    return sum(counts.values())


def deliveries_per_s(r: PhaseResult) -> float:
    seconds = r.write_seconds + r.drain_seconds
    return total(r.received) / seconds if seconds else 0.0


def print_phase(r: PhaseResult) -> None:
    c, p = r.latency.get("comment", Counter()), r.latency.get("product", Counter())
    print(
        f"  received {total(r.received):,}/{total(r.expected):,} "
        f"dup {total(r.duplicates)} ooo {total(r.out_of_order)} errors {r.errors} "
        f"| {deliveries_per_s(r):,.0f}/s | comment p50 {fmt(quantile(c, 0.5))} "
        f"p99 {fmt(quantile(c, 0.99))} ms, product p99 {fmt(quantile(p, 0.99))} ms "
        f"| SQL/batch {fmt(r.count_comment_sql)}/{fmt(r.count_product_sql)} "
        f"| {fmt(r.kib_per_subscription)} KiB/sub | server CPU {r.server_cpu:.1f}s",
        flush=True,
    )
    if r.worst:
        first = min(r.worst)
        series = " ".join(f"{r.worst[s] * 1000:.0f}" for s in sorted(r.worst))
        print(f"  worst commentAdded ms per second from {first}: {series}", flush=True)


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if value == math.inf:
        return "> 5 s"
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------- RESULTS-live.md


@dataclass
class Report:
    args: argparse.Namespace
    command: str
    started: dt.datetime
    pg_version: str = ""
    db: Scratch | None = None
    phases: list[PhaseResult] = field(default_factory=list)
    seconds: float = 0.0
    load_at_start: tuple[float, float, float] = field(default_factory=os.getloadavg)


def versions(report: Report) -> list[str]:
    def v(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return [
        f"- Python {platform.python_version()}; strawberry-graphql {v('strawberry-graphql')}, "
        f"graphql-core {v('graphql-core')}, SQLAlchemy {v('sqlalchemy')}, asyncpg {v('asyncpg')}",
        f"- uvicorn {v('uvicorn')} (uvloop {v('uvloop')}; WebSocket: websockets {v('websockets')}, "
        "uvicorn's sans-I/O implementation, no per-message deflate), starlette "
        f"{v('starlette')}, orjson {v('orjson')}",
        f"- PostgreSQL {report.pg_version}",
    ]


def table(report: Report) -> list[str]:
    rows = [
        (
            "subscribers (commentAdded + productChanged)",
            lambda r: f"{r.spec.comments:,} + {r.spec.products:,}",
        ),
        (
            "of which signed in (one user each)",
            lambda r: f"{r.spec.viewers:,} + {r.spec.viewers:,}",
        ),
        ("connections opened / failed", lambda r: f"{r.opened:,} / {r.failed}"),
        (
            "writes: comments at rate/s; adjustPrices x products",
            lambda r: (
                f"{r.comments_written} at {r.spec.rate:g}/s; "
                f"{r.products_changed // max(r.spec.price_products, 1)} x {r.spec.price_products}"
            ),
        ),
        ("deliveries expected", lambda r: f"{total(r.expected):,}"),
        ("deliveries received", lambda r: f"{total(r.received):,}"),
        ("duplicates / out of order", lambda r: f"{total(r.duplicates)} / {total(r.out_of_order)}"),
        (
            "errors / unexpected closes / server drops",
            lambda r: f"{r.errors} / {r.unexpected_closes} / {r.drops:g}",
        ),
        ("deliveries/s (load + drain)", lambda r: f"{deliveries_per_s(r):,.0f}"),
        ("drain after the last write, s", lambda r: fmt(r.drain_seconds, 2)),
        ("commentAdded send→receive p50 / p99 / max, ms", lambda r: latency(r, "comment")),
        (
            "commentAdded createdAt→receive p50 / p99 / max, ms",
            lambda r: latency(r, "commit"),
        ),
        ("productChanged send→receive p50 / p99 / max, ms", lambda r: latency(r, "product")),
        (
            "addComment round trip p50 / p99, ms",
            lambda r: (
                f"{fmt(list_quantile(r.comment_ms, 0.5))} / "
                f"{fmt(list_quantile(r.comment_ms, 0.99))}"
            ),
        ),
        (
            "adjustPrices round trip p50 / p99, ms",
            lambda r: (
                f"{fmt(list_quantile(r.adjust_ms, 0.5))} / {fmt(list_quantile(r.adjust_ms, 0.99))}"
            ),
        ),
        (
            "server: batch arrival → queued, p50 / p99 bucket, ms",
            lambda r: (
                f"≤ {fmt(ms_or_none(r.server_queue_p50))} / ≤ {fmt(ms_or_none(r.server_queue_p99))}"
            ),
        ),
        ("SQL statements per batch: one comment", lambda r: fmt(r.count_comment_sql, 2)),
        ("SQL statements per batch: one adjustPrices", lambda r: fmt(r.count_product_sql, 2)),
        (
            "SQL statements per batch under load (batches)",
            lambda r: f"{fmt(r.load_sql, 2)} ({r.load_batches})",
        ),
        ("server CPU s (load + drain)", lambda r: f"{r.server_cpu:.1f}"),
        (
            "server CPU µs per delivery",
            lambda r: fmt(1e6 * r.server_cpu / total(r.received), 1) if total(r.received) else "—",
        ),
        ("PostgreSQL backends CPU s", lambda r: f"{r.pg_cpu:.1f}"),
        ("subscriber processes CPU s", lambda r: f"{r.client_cpu:.1f}"),
        (
            "machine busy, all cores (of which others' processes)",
            lambda r: f"{r.busy_pct:.0f}% ({r.other_pct:.0f}%)",
        ),
        (
            "server RSS before → after subscribing, MiB",
            lambda r: f"{r.rss_before / 2**20:.1f} → {r.rss_after / 2**20:.1f}",
        ),
        ("server memory per idle subscription, KiB", lambda r: fmt(r.kib_per_subscription)),
    ]
    phases = report.phases
    lines = [
        "| | " + " | ".join(r.spec.name for r in phases) + " |",
        "|---|" + "--:|" * len(phases),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in phases) + " |")
    return lines


def latency(r: PhaseResult, kind: str) -> str:
    h = r.latency.get(kind, Counter())
    top = (max(h) + 1) / BUCKET_PER_MS if h else None
    return f"{fmt(quantile(h, 0.5))} / {fmt(quantile(h, 0.99))} / {fmt(top)}"


def ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def render(report: Report) -> str:
    args = report.args
    db = report.db
    notes = [f"- {r.spec.name}: {n}" for r in report.phases for n in r.notes]
    notes += [
        f"- {r.spec.name}: write failed: {f}" for r in report.phases for f in r.write_failures
    ]
    return "\n".join(
        [
            "# W6 live fan-out: results",
            "",
            f"Generated by `bench/live.py` on {report.started:%Y-%m-%d %H:%M} UTC in "
            f"{report.seconds / 60:.1f} min. Regenerate with:",
            "",
            "```sh",
            report.command,
            "```",
            "",
            f"Scale {args.scale:,} ({db.rows if db else 0:,} rows). Each phase on a fresh "
            "`gql-app serve` (one process, its defaults, `GQL_LOG_LEVEL=WARNING`); "
            f"subscribers in {args.clients} separate processes (`bench/live_client.py`), one "
            "WebSocket connection and one subscription each; writers over HTTP from the "
            "harness. The method is in `bench/live.py`'s docstring.",
            "",
            *table(report),
            "",
            "Send→receive is the subscriber's receive time minus the writer's `time.time()` "
            "just before sending the mutation: an upper bound of commit-to-delivery that "
            "includes the mutation's own round trip (the next rows), measured on one clock. "
            "Server CPU counts everything the server did during load and drain, the "
            "mutations included: per delivery it means something only with many subscribers.",
            "",
            *(["## Notes", "", *notes, ""] if notes else []),
            "## Machine",
            "",
            *machine(report),  # type: ignore[arg-type]
            "",
            "## Versions",
            "",
            *versions(report),
            "",
        ]
    )


KEPT = "## What the numbers show"


def kept_analysis(output: Path) -> str:
    """The hand-written analysis of the previous results, from ``KEPT`` on."""
    previous = output.read_text() if output.is_file() else ""
    start = previous.find(KEPT)
    return "\n" + previous[start:] if start >= 0 else ""


# ---------------------------------------------------------------- main


def phases(args: argparse.Namespace) -> list[PhaseSpec]:
    """1 subscriber and main under the same writes; the stretch at a lower rate, one
    product per adjustment."""
    price = {"price_rate": args.price_rate, "price_products": args.price_products}
    one = PhaseSpec("1 subscriber", 1, 1, args.rate, min(args.duration, 10), 1, **price)
    n = args.subscribers
    out = [one, PhaseSpec("main", n, n, args.rate, args.duration, args.clients, **price)]
    if args.viewers:
        v = args.viewers
        seconds = min(args.duration, 10)
        out.append(PhaseSpec("signed in", v, v, args.rate, seconds, 1, viewers=v, **price))
    if args.stretch:
        half = args.stretch // 2
        clients = max(args.clients, math.ceil(args.stretch / 2500))
        stretch = PhaseSpec(
            "stretch",
            half,
            args.stretch - half,
            args.stretch_rate,
            args.duration,
            clients,
            price_rate=args.price_rate,
            price_products=1,
        )
        out.append(stretch)
    return out


async def run(args: argparse.Namespace, report: Report) -> None:
    server_url = database_url(Settings())
    with tempfile.TemporaryDirectory(prefix="gql_bench_live_") as tmp:
        async with scratch_database(server_url, args.scale) as db:
            report.db = db
            report.pg_version = await db.conn.fetchval("SHOW server_version")
            fx = await live_fixtures(db, args.viewers)
            for spec in phases(args):
                report.phases.append(await run_phase(db, fx, spec, Path(tmp)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=1000, help="data set scale (users)")
    parser.add_argument("--subscribers", type=int, default=1000, help="of each kind (main)")
    parser.add_argument("--rate", type=float, default=20, help="comments per second")
    parser.add_argument("--duration", type=float, default=30, help="seconds of writing")
    parser.add_argument("--price-rate", type=float, default=1, help="adjustPrices per second")
    parser.add_argument("--price-products", type=int, default=5, help="products per adjustPrices")
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes")
    parser.add_argument(
        "--viewers", type=int, default=100, help="signed-in subscribers of each kind (0: skip)"
    )
    parser.add_argument("--stretch", type=int, default=0, help="subscribers in all (0: skip)")
    parser.add_argument("--stretch-rate", type=float, default=2, help="comments/s (stretch)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write")
    args = parser.parse_args()
    os.chdir(ROOT)
    report = Report(
        args=args,
        command=".venv/bin/python -m bench.live " + shlex.join(sys.argv[1:]),
        started=dt.datetime.now(dt.UTC),
    )

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    began = time.perf_counter()
    try:
        asyncio.run(run(args, report))
    finally:
        for proc in _CLIENTS:
            kill_group(proc.pid)
        stop_all()
    report.seconds = time.perf_counter() - began
    args.output.write_text(render(report) + kept_analysis(args.output))
    print(f"wrote {args.output} ({report.seconds:.0f} s)")


if __name__ == "__main__":
    main()
