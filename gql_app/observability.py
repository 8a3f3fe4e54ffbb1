"""Request ids, JSON logs, SQL statement counts and Prometheus metrics: one
``RequestObservation`` per HTTP request, and per GraphQL request one log line
(logger ``gql_app.request``) and its ``gql_*`` metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gql_app.errors import ErrorCode
from gql_app.settings import Settings
from gql_app.tracing import Tracer, end_operation, end_statement, start_operation, start_statement

request_log = logging.getLogger("gql_app.request")
sql_log = logging.getLogger("gql_app.sql")

# ---------------------------------------------------------------- the request's observation

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a fresh one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return os.urandom(16).hex()  # a uuid4's 128 random bits, without building a UUID


@dataclass(eq=False, slots=True)
class RequestObservation:
    request_id: str
    method: str = "POST"
    path: str = "/graphql"
    started: float = field(default_factory=time.perf_counter)
    sql_statements: int = 0
    operation_name: str | None = None
    operation_type: str | None = None
    error_codes: list[str] = field(default_factory=list)
    status: int = 0
    span: Any = None
    """The operation's trace span, when tracing is on (``gql_app.tracing``)."""

    @property
    def outcome(self) -> str:
        return "ok" if not self.error_codes and self.status < 400 else "errors"


_current: ContextVar[RequestObservation | None] = ContextVar("gql_app_request", default=None)
current_observation = _current
"""The running request's observation (set by the middleware, or by the query lane)."""


def request_id_for(request: Request) -> str:
    """The request's id: the middleware's, or (without the middleware) one made here."""
    observation = _current.get()
    if observation is not None:
        return observation.request_id
    return request_id_from(request.headers.get("x-request-id"))


def record_errors(codes: list[str]) -> None:
    """Called by the GraphQL view with the codes of the errors it sends."""
    observation = _current.get()
    if observation is not None:
        observation.error_codes.extend(codes)


# ---------------------------------------------------------------- SQL statements


def instrument_engine(
    engine: AsyncEngine, slow_query_ms: float, tracer: Tracer | None = None
) -> None:
    """Count each statement for the current request; log those slower than ``slow_query_ms``;
    with a ``tracer``, a span per statement of a traced operation.

    The slow-query line and the span carry the statement text, never its parameters.
    """

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["gql_app.started"] = time.perf_counter()
        # Exact under concurrency: every task of a request copies its context, and
        # SQLAlchemy runs this in a greenlet that shares its caller's.
        observation = _current.get()
        if observation is not None:
            observation.sql_statements += 1

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.pop("gql_app.started", None)
        if started is None:
            return
        duration_ms = (time.perf_counter() - started) * 1000
        if duration_ms >= slow_query_ms:
            observation = _current.get()
            sql_log.warning(
                "slow query",
                extra={
                    "request_id": observation.request_id if observation else None,
                    "duration_ms": round(duration_ms, 2),
                    "statement": statement[:4000],
                },
            )

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    if tracer is not None:
        trace_engine(engine, tracer)


def trace_engine(engine: AsyncEngine, tracer: Tracer) -> Callable[[], None]:
    """Span listeners, registered only when tracing is on: none on the path otherwise.
    Returns what removes them."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        start_statement(tracer, _current.get(), conn, statement)

    def after(conn: Any, *args: Any) -> None:
        end_statement(conn)

    def failed(context: Any) -> None:
        if context.connection is not None:
            end_statement(context.connection, failed=True)

    listeners: dict[str, Callable[..., None]] = {
        "before_cursor_execute": before,
        "after_cursor_execute": after,
        "handle_error": failed,
    }
    for name, listener in listeners.items():
        event.listen(engine.sync_engine, name, listener)

    def remove() -> None:
        for name, listener in listeners.items():
            event.remove(engine.sync_engine, name, listener)

    return remove


# ---------------------------------------------------------------- metrics

MAX_NAME_LENGTH = 64
MAX_NAMES = 200


class PoolCollector(Collector):
    """Connection pool gauges, read from the engines' pools at scrape time."""

    def __init__(self) -> None:
        self.engines: dict[str, AsyncEngine] = {}
        self.kept: dict[str, Any] = {}
        """Per pool, the connections query operations keep out of it while idle
        (``data.driver_reads.KeptConnections``: its ``idle``)."""

    def collect(self) -> Iterator[Metric]:
        gauges = {
            "size": GaugeMetricFamily(
                "gql_db_pool_size", "Connections the pool keeps open.", labels=["pool"]
            ),
            "in_use": GaugeMetricFamily(
                "gql_db_pool_connections_in_use",
                "Connections checked out by requests.",
                labels=["pool"],
            ),
            "idle": GaugeMetricFamily(
                "gql_db_pool_connections_idle",
                "Open connections waiting in the pool.",
                labels=["pool"],
            ),
            "overflow": GaugeMetricFamily(
                "gql_db_pool_overflow",
                "Connections open beyond the pool size (at max_overflow, requests wait).",
                labels=["pool"],
            ),
        }
        for name, engine in self.engines.items():
            pool: Any = engine.pool
            if not hasattr(pool, "checkedout"):
                continue
            kept = self.kept.get(name)  # out of the pool, kept for the next query
            idle = kept.idle if kept is not None else 0
            gauges["size"].add_metric([name], pool.size())
            gauges["in_use"].add_metric([name], pool.checkedout() - idle)
            gauges["idle"].add_metric([name], pool.checkedin() + idle)
            gauges["overflow"].add_metric([name], max(0, pool.overflow()))
        yield from gauges.values()


class ReplicaCollector(Collector):
    """The read replica's gauges, read from its monitor's last check at scrape time
    (``data.replica.Replica``: ``state``, ``lag_bytes``, ``lag_seconds``)."""

    STATES = ("ok", "lagging", "unavailable")

    def __init__(self, replica: Any) -> None:
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        replica = self.replica
        state = replica.state.value
        states = GaugeMetricFamily(
            "gql_replica_state", "The read replica's state (1: current).", labels=["state"]
        )
        reads = GaugeMetricFamily(
            "gql_reads_engine",
            "Where query operations read (1: there; the primary also for writers and "
            "tokens the replica does not know yet).",
            labels=["engine"],
        )
        for name in self.STATES:
            states.add_metric([name], 1.0 if name == state else 0.0)
        reads.add_metric(["replica"], 1.0 if state == "ok" else 0.0)
        reads.add_metric(["primary"], 0.0 if state == "ok" else 1.0)
        yield states
        yield reads
        lag_bytes, lag_seconds = replica.lag_bytes, replica.lag_seconds
        if lag_bytes is not None:
            yield GaugeMetricFamily(
                "gql_replica_lag_bytes",
                "WAL the primary has written and the replica not replayed yet.",
                value=lag_bytes,
            )
        if lag_seconds is not None:
            yield GaugeMetricFamily(
                "gql_replica_lag_seconds",
                "Age of the oldest primary WAL position the replica has not replayed (0: none).",
                value=lag_seconds,
            )


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (one per app, not global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pools = PoolCollector()
        self.registry.register(self.pools)
        self._names: set[str] = set()
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        """A request's three labelled metrics by (type, name label, outcome): bounded by
        the name labels, and cheaper than ``labels()`` on every request."""
        self.requests = Counter(
            "gql_requests",
            "GraphQL requests.",
            ["operation_type", "operation_name", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gql_request_duration_seconds",
            "GraphQL request latency.",
            ["operation_type", "operation_name"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.errors = Counter(
            "gql_errors",
            "Errors sent to clients, by code (BAD_REQUEST: refused at the HTTP level).",
            ["code"],
            registry=self.registry,
        )
        self.sql_statements = Histogram(
            "gql_request_sql_statements",
            "SQL statements per GraphQL request.",
            ["operation_type"],
            buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100),
            registry=self.registry,
        )

        self.live = LiveMetrics(self.registry)
        self.replica: ReplicaCollector | None = None

    def watch_pool(self, name: str, engine: AsyncEngine, kept: Any = None) -> None:
        self.pools.engines[name] = engine
        if kept is not None:
            self.pools.kept[name] = kept

    def watch_replica(self, replica: Any) -> None:
        self.replica = ReplicaCollector(replica)
        self.registry.register(self.replica)

    def name_label(self, name: str | None) -> str:
        """Bounded cardinality: long names, and names beyond the first 200, are "other"."""
        if not name:
            return "anonymous"
        if name in self._names:
            return name
        if len(name) > MAX_NAME_LENGTH or len(self._names) >= MAX_NAMES:
            return "other"
        self._names.add(name)
        return name

    def observe(self, observation: RequestObservation, duration: float) -> None:
        kind = observation.operation_type or "unknown"
        name = self.name_label(observation.operation_name)
        key = (kind, name, observation.outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(*key),
                self.latency.labels(kind, name),
                self.sql_statements.labels(kind),
            )
        requests, latency, sql_statements = children
        requests.inc()
        latency.observe(duration)
        sql_statements.observe(observation.sql_statements)
        for code in observation.error_codes:
            self.errors.labels(code).inc()

    def exposition_registry(self) -> Collector:
        """What a scrape sees. Every worker process (``--workers N``) has its own
        metrics: with ``PROMETHEUS_MULTIPROC_DIR`` set to an empty directory every
        worker can write (emptied at each start), counters and histograms are summed
        over all workers; the pool gauges are those of the worker that answers."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.pools)
        if self.replica is not None:
            registry.register(self.replica)
        return registry

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics in the Prometheus text format (OpenMetrics when asked for)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.exposition_registry()), headers={"Content-Type": content_type})


class LiveMetrics:
    """The WebSocket endpoint's and the live fan-out's metrics (``web.websocket``, ``web.live``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "gql_ws_connections",
            "Open WebSocket connections.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.subscriptions = Gauge(
            "gql_subscriptions",
            "Active subscriptions.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.events = Counter(
            "gql_live_events",
            "Events heard on the LISTEN connection, by topic.",
            ["topic"],
            registry=registry,
        )
        self.deliveries = Counter(
            "gql_live_deliveries", "Subscription results queued to sockets.", registry=registry
        )
        self.drops = Counter(
            "gql_live_drops",
            "Subscriptions ended by the server, by reason (slow_consumer, interrupted, "
            "session_ended, database).",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "gql_live_delivery_seconds",
            "From an event batch's arrival on the LISTEN connection to its results "
            "queued on every socket.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.batch_statements = Histogram(
            "gql_live_batch_sql_statements",
            "SQL statements per event batch (all of its subscribers together).",
            buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100),
            registry=registry,
        )


# ---------------------------------------------------------------- the middleware


class RequestObservability:
    """Pure ASGI middleware: request id in and out, one log line and metrics per GraphQL request.

    It never buffers: it only adds ``X-Request-ID`` to the response start message.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        graphql_path: str = "/graphql",
        tracer: Tracer | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.graphql_path = graphql_path
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        observation = RequestObservation(
            request_id_from(header.decode("latin-1") if header is not None else None),
            scope["method"],
            scope["path"],
        )

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                observation.status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = observation.request_id
            await send(message)

        graphql = scope["path"] in {
            self.graphql_path,
            scope.get("root_path", "") + self.graphql_path,
        }
        if graphql and self.tracer is not None:
            start_operation(self.tracer, observation)
        token = _current.set(observation)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not observation.status:  # answer the 500 here, so it carries the id too
                await Response("Internal Server Error", status_code=500, media_type="text/plain")(
                    scope, receive, send_with_id
                )
            raise
        finally:
            _current.reset(token)
            if graphql:
                self.finish(observation)

    def finish(self, observation: RequestObservation) -> None:
        finish_request(self.metrics, observation)


def finish_request(metrics: Metrics, observation: RequestObservation) -> None:
    """The request's metrics and its one log line."""
    duration = time.perf_counter() - observation.started
    if observation.status >= 400 and not observation.error_codes:
        # An HTTP-level refusal (405, 413, 415...): the code its body carries.
        observation.error_codes.append(
            ErrorCode.INTERNAL_SERVER_ERROR if observation.status >= 500 else ErrorCode.BAD_REQUEST
        )
    metrics.observe(observation, duration)
    if observation.span is not None:
        end_operation(observation)
    level = logging.ERROR if observation.status >= 500 else logging.INFO
    if request_log.disabled or not request_log.isEnabledFor(level):
        return
    fields = {
        "request_id": observation.request_id,
        "method": observation.method,
        "path": observation.path,
        "status": observation.status,
        "duration_ms": round(duration * 1000, 2),
        "operation_type": observation.operation_type,
        "operation_name": observation.operation_name,
        "sql_statements": observation.sql_statements,
        "outcome": observation.outcome,
        "error_codes": sorted(set(observation.error_codes)),
    }
    sole = sole_handler(request_log, level)
    if sole is not None:
        # The default setup: the line the handler would write, without making a
        # LogRecord and passing it down logging's loggers and handlers (together
        # about a tenth of a one-statement query's CPU).
        formatter = cast(JSONFormatter, sole.formatter)
        name = logging.getLevelName(level)
        line = formatter.line(time.time(), name, request_log.name, "graphql request", fields)
        with sole.lock:  # type: ignore[union-attr]
            sole.add(line, level)
        return
    # The record is made here, not by ``log()``: a logging call looks up its caller's
    # frame and file, which this line never shows.
    record = logging.LogRecord(request_log.name, level, __file__, 0, "graphql request", None, None)
    record.__dict__.update(fields)
    request_log.handle(record)


def sole_handler(logger: logging.Logger, level: int) -> BufferedLines | None:
    """The one handler a record of ``logger`` at ``level`` reaches when it writes JSON
    lines (``BufferedLines`` with a ``JSONFormatter``) and no filter is on the way:
    the default setup. None otherwise (another handler, a filter, a test's capture),
    and the record goes through ``logging`` as usual."""
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BufferedLines
                or handler.filters
                or level < handler.level
                or type(handler.formatter) is not JSONFormatter
            ):
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


# ---------------------------------------------------------------- logging

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field."""

    _second: int = -1
    _second_text: str = ""

    def timestamp(self, created: float) -> str:
        """``created`` in ISO 8601, UTC, to the millisecond (the date and time of the
        second are formatted once per second)."""
        second = int(created)
        if second != self._second:
            text = datetime.fromtimestamp(second, UTC).isoformat()  # ...T04:25:00+00:00
            self._second, self._second_text = second, text[:-6]
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if "request_id" not in fields and (observation := _current.get()) is not None:
            fields["request_id"] = observation.request_id
        if record.exc_info:
            fields["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any]
    ) -> str:
        """One line: the time, level, logger and message, then ``fields``."""
        entry: dict[str, Any] = {
            "time": self.timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        entry.update(fields)
        return orjson.dumps(entry, default=repr).decode()


class BufferedLines(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines together: within ``FLUSH_S`` of the
    first one waiting (on the running event loop), when ``LINES`` wait, at once for
    warnings and above, and at exit (``logging.shutdown``). The request log line
    costs no write of its own: under load one write carries a hundred lines.
    Outside an event loop every line is written at once."""

    FLUSH_S = 0.1
    LINES = 256

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._due_on: asyncio.AbstractEventLoop | None = None
        """The event loop where a flush of the waiting lines is due."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add(line, record.levelno)

    def add(self, line: str, level: int) -> None:
        """A formatted line, written with the next ones (under the handler's lock)."""
        lines = self._lines
        lines.append(line)
        if level < logging.WARNING and len(lines) < self.LINES:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: written now
                loop = None
            if loop is not None:
                if self._due_on is not loop:  # none due, or on a loop that has ended
                    self._due_on = loop
                    loop.call_later(self.FLUSH_S, self.flush)
                return
        self.write()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.write()

    def write(self) -> None:
        self._due_on = None
        lines, self._lines = self._lines, []
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


def configure_logging(settings: Settings) -> None:
    """JSON lines on stderr from the root logger (``BufferedLines``); ``gql_app.*`` at
    ``settings.log_level``.

    Idempotent: calling it again (another app in the same process) only sets the level.
    """
    # No record carries its thread's or process's name (the JSON lines do not show
    # them): logging skips looking them up for every record (its "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JSONFormatter) for h in root.handlers):
        handler = BufferedLines()
        handler.setFormatter(JSONFormatter())
        root.addHandler(handler)
    logging.getLogger("gql_app").setLevel(settings.log_level.upper())
