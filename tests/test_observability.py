"""Request ids, the per-request log line, the slow-query log and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import subprocess
import sys
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route

from gql_app.content.loaders import TagByNameLoader
from gql_app.observability import (
    BufferedLines,
    JSONFormatter,
    Metrics,
    RequestObservability,
    RequestObservation,
    finish_request,
)
from gql_app.web.app import create_app

GENERATED = re.compile(r"[0-9a-f]{32}")

AUTHORS = "query ObsAuthors { posts(first: 3) { nodes { title author { username } } } }"
TOO_MANY = "{ posts(first: 500) { totalCount } }"
TAG = 'query ObsTag { tag(name: "alpha") { name } }'

# Shapes of known, different cost; their counts are measured, then checked under concurrency.
SHAPES = [
    "query Shape0_{i} {{ __typename }}",
    'query Shape1_{i} {{ tag(name: "alpha") {{ name }} }}',
    "query Shape2_{i} {{ posts(first: 3) {{ nodes {{ title author {{ username }} }} }} }}",
    "query Shape3_{i} {{ posts(first: 2) {{ totalCount nodes {{ title author {{ username }} tags {{ name }} commentCount }} }} }}",
]


async def post(client: httpx.AsyncClient, query: str, **headers: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers=headers)


def request_lines(caplog: pytest.LogCaptureFixture) -> dict[str, logging.LogRecord]:
    return {
        r.request_id: r  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "gql_app.request"
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------- X-Request-ID


async def test_a_sane_request_id_is_echoed(client, world):
    response = await post(client, TAG, **{"X-Request-ID": "abc-123.X_y"})
    assert response.headers["x-request-id"] == "abc-123.X_y"


async def test_a_request_id_is_generated_when_absent(client, world):
    response = await post(client, TAG)
    assert GENERATED.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize(
    "sent", ["x" * 65, "two words", "<script>alert(1)</script>", "a/b", "", "id;drop"]
)
async def test_a_malicious_request_id_is_replaced(client, world, sent):
    response = await post(client, TAG, **{"X-Request-ID": sent})
    assert GENERATED.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/health", {}),
        ("GET", "/ready", {}),
        ("GET", "/metrics", {}),
        ("GET", "/nowhere", {}),
        (
            "POST",
            "/graphql",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        ),
        ("PUT", "/graphql", {}),
    ],
)
async def test_every_response_carries_the_request_id(client, method, path, kwargs):
    headers = {**kwargs.pop("headers", {}), "X-Request-ID": "every-1"}
    response = await client.request(method, path, headers=headers, **kwargs)
    assert response.headers["x-request-id"] == "every-1"


async def test_an_unhandled_exception_still_answers_500_with_the_request_id(caplog):
    async def explode(request: Request) -> None:
        raise RuntimeError("kaboom")

    app = Starlette(
        routes=[Route("/graphql", explode, methods=["POST"])],
        middleware=[Middleware(RequestObservability, metrics=Metrics())],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/graphql", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    assert "kaboom" not in response.text
    line = request_lines(caplog)["boom-1"]
    assert (line.status, line.outcome) == (500, "errors")  # type: ignore[attr-defined]


async def test_a_masked_internal_error_names_the_request_id_of_the_response(
    client, world, monkeypatch, caplog
):
    async def broken(self: Any, keys: list[Any]) -> list[Any]:
        raise RuntimeError("driver text that must stay private")

    monkeypatch.setattr(TagByNameLoader, "batch_load", broken)
    for headers in ({}, {"X-Request-ID": "trace-42"}):
        response = await post(client, TAG, **headers)
        request_id = response.headers["x-request-id"]
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        assert request_id in error["message"]
        assert "private" not in response.text
        line = request_lines(caplog)[request_id]
        assert line.outcome == "errors"  # type: ignore[attr-defined]
        assert line.error_codes == ["INTERNAL_SERVER_ERROR"]  # type: ignore[attr-defined]
    assert "trace-42" in error["message"]


# ---------------------------------------------------------------- the log line


async def test_one_log_line_per_request_with_the_exact_statement_count(client, world, sql, caplog):
    caplog.set_level(logging.INFO, logger="gql_app.request")
    sql.reset()
    response = await post(client, AUTHORS, **{"X-Request-ID": "line-1"})
    assert response.status_code == 200 and "errors" not in response.json()
    lines = [r for r in caplog.records if r.name == "gql_app.request"]
    assert len(lines) == 1
    line: Any = lines[0]
    assert line.request_id == "line-1"
    assert line.sql_statements == 2 == sql.count
    assert (line.operation_name, line.operation_type) == ("ObsAuthors", "query")
    assert (line.outcome, line.error_codes, line.status) == ("ok", [], 200)
    assert (line.method, line.path) == ("POST", "/graphql")
    assert line.duration_ms > 0
    entry = orjson.loads(JSONFormatter().format(line))
    assert entry == {
        "time": entry["time"],
        "level": "INFO",
        "logger": "gql_app.request",
        "message": "graphql request",
        "request_id": "line-1",
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "duration_ms": line.duration_ms,
        "operation_type": "query",
        "operation_name": "ObsAuthors",
        "sql_statements": 2,
        "outcome": "ok",
        "error_codes": [],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])


async def test_the_log_line_of_the_full_path_names_its_method(client, world, caplog):
    caplog.set_level(logging.INFO, logger="gql_app.request")
    response = await client.get(
        "/graphql", params={"query": TAG}, headers={"X-Request-ID": "get-1"}
    )
    assert response.json() == {"data": {"tag": {"name": "alpha"}}}
    line: Any = request_lines(caplog)["get-1"]
    assert (line.method, line.path, line.status, line.outcome) == ("GET", "/graphql", 200, "ok")
    assert (line.operation_name, line.sql_statements) == ("ObsTag", 1)


def test_the_json_formatter_writes_the_time_to_the_millisecond_in_utc():
    formatter = JSONFormatter()
    for created, shown in [
        (1_700_000_000.0, "2023-11-14T22:13:20.000+00:00"),
        (1_700_000_000.9996, "2023-11-14T22:13:20.999+00:00"),
        (1_700_000_001.0019, "2023-11-14T22:13:21.001+00:00"),
        (1_700_000_000.5, "2023-11-14T22:13:20.500+00:00"),  # back to a second seen before
    ]:
        record = logging.makeLogRecord({"name": "gql_app.x", "msg": "m", "created": created})
        assert orjson.loads(formatter.format(record))["time"] == shown


async def test_a_refused_query_logs_its_error_code(client, world, caplog):
    caplog.set_level(logging.INFO, logger="gql_app.request")
    response = await post(client, TOO_MANY, **{"X-Request-ID": "refused-1"})
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    line: Any = request_lines(caplog)["refused-1"]
    assert (line.outcome, line.error_codes) == ("errors", ["BAD_USER_INPUT"])
    assert line.operation_name is None and line.operation_type == "query"
    assert line.sql_statements == 0


async def test_statement_counts_stay_exact_per_request_under_concurrency(
    client, world, sql, caplog
):
    caplog.set_level(logging.INFO, logger="gql_app.request")
    # Given each shape's count, measured alone
    expected: dict[int, int] = {}
    for n, shape in enumerate(SHAPES):
        sql.reset()
        await post(client, shape.format(i="alone"), **{"X-Request-ID": f"alone-{n}"})
        expected[n] = request_lines(caplog)[f"alone-{n}"].sql_statements  # type: ignore[attr-defined]
        assert expected[n] == sql.count
    assert len(set(expected.values())) == len(SHAPES)
    # When 20 requests of mixed shapes run at once
    responses = await asyncio.gather(
        *(
            post(client, SHAPES[i % len(SHAPES)].format(i=i), **{"X-Request-ID": f"conc-{i}"})
            for i in range(20)
        )
    )
    assert all(r.status_code == 200 and "errors" not in r.json() for r in responses)
    # Then every log line has its own request's count and name
    lines = request_lines(caplog)
    for i in range(20):
        line: Any = lines[f"conc-{i}"]
        assert line.sql_statements == expected[i % len(SHAPES)], i
        assert line.operation_name == f"Shape{i % len(SHAPES)}_{i}"


# ---------------------------------------------------------------- the slow-query log


async def test_the_slow_query_log_names_the_statement_but_never_its_parameters(
    settings, world, caplog
):
    caplog.set_level(logging.WARNING, logger="gql_app.sql")
    app = create_app(settings.model_copy(update={"slow_query_ms": 0}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await post(http, '{ tag(name: "s3cr3t-needle") { name } }')
    assert response.json() == {"data": {"tag": None}}
    slow: list[Any] = [r for r in caplog.records if r.name == "gql_app.sql"]
    assert len(slow) == 1
    assert slow[0].levelno == logging.WARNING
    assert slow[0].request_id == response.headers["x-request-id"]
    assert "tags" in slow[0].statement and slow[0].duration_ms >= 0
    assert "s3cr3t" not in JSONFormatter().format(slow[0])


async def test_no_slow_query_log_under_the_threshold(client, world, caplog):
    caplog.set_level(logging.WARNING, logger="gql_app.sql")
    await post(client, "{ __typename }")
    assert not [r for r in caplog.records if r.name == "gql_app.sql"]


# ---------------------------------------------------------------- metrics


async def test_metrics_count_requests_by_operation(client, world):
    before = await scrape(client)
    await post(client, AUTHORS)
    after = await scrape(client)
    labels = {"operation_type": "query", "operation_name": "ObsAuthors"}
    assert value(after, "gql_requests_total", outcome="ok", **labels) == (
        value(before, "gql_requests_total", outcome="ok", **labels) + 1
    )
    assert value(after, "gql_request_duration_seconds_count", **labels) == (
        value(before, "gql_request_duration_seconds_count", **labels) + 1
    )
    assert value(after, "gql_request_sql_statements_sum", operation_type="query") == (
        value(before, "gql_request_sql_statements_sum", operation_type="query") + 2
    )
    assert value(after, "gql_request_sql_statements_bucket", operation_type="query", le="2.0") > 0


async def test_metrics_count_errors_by_code(client, world):
    before = await scrape(client)
    await post(client, TOO_MANY)
    await post(client, TOO_MANY)
    after = await scrape(client)
    assert value(after, "gql_errors_total", code="BAD_USER_INPUT") == (
        value(before, "gql_errors_total", code="BAD_USER_INPUT") + 2
    )
    anonymous = {"operation_type": "query", "operation_name": "anonymous", "outcome": "errors"}
    assert value(after, "gql_requests_total", **anonymous) >= 2


async def test_metrics_show_the_pool(client, world, settings):
    samples = await scrape(client)
    assert value(samples, "gql_db_pool_size", pool="primary") == settings.pool_size
    assert ("gql_db_pool_connections_in_use", frozenset({("pool", "primary")})) in samples
    assert ("gql_db_pool_connections_idle", frozenset({("pool", "primary")})) in samples
    assert value(samples, "gql_db_pool_overflow", pool="primary") >= 0


async def test_metrics_count_every_request_of_a_name_past_the_bound_as_other(settings, world):
    # Given an app of its own (the session's keeps its name labels for other tests)
    app = create_app(settings)
    names = [f"Bounded{i}" for i in range(210)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            # When more operation names than the bound are sent, the last one twice
            for name in [*names, names[-1]]:
                response = await post(http, f"query {name} {{ __typename }}")
                assert response.json() == {"data": {"__typename": "Query"}}
            samples = await scrape(http)

    def requests(name: str) -> float:
        labels = {"operation_type": "query", "operation_name": name, "outcome": "ok"}
        return value(samples, "gql_requests_total", **labels)

    # Then the first 200 names have a label each and the rest are "other", each request once
    assert [requests(name) for name in names[:200]] == [1.0] * 200
    assert [requests(name) for name in names[200:]] == [0.0] * 10
    assert requests("other") == 11


def test_operation_name_labels_are_bounded():
    metrics = Metrics()
    assert metrics.name_label(None) == "anonymous"
    assert metrics.name_label("N" * 65) == "other"
    names = [f"Op{i}" for i in range(250)]
    labels = [metrics.name_label(n) for n in names]
    assert labels[:200] == names[:200]
    assert set(labels[200:]) == {"other"}
    assert metrics.name_label("Op7") == "Op7"


def test_multiprocess_metrics_are_summed_over_workers(tmp_path):
    observe = (
        "from gql_app.observability import Metrics, RequestObservation\n"
        "o = RequestObservation('x', operation_type='query', operation_name='Multi')\n"
        "Metrics().observe(o, 0.01)\n"
    )
    render = (
        "from prometheus_client import generate_latest\n"
        "from gql_app.observability import Metrics\n"
        "print(generate_latest(Metrics().exposition_registry()).decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two worker processes
        subprocess.run([sys.executable, "-c", observe], env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert (
        'gql_requests_total{operation_name="Multi",operation_type="query",outcome="ok"} 2.0' in out
    )


def test_the_json_formatter_adds_the_current_request_id():
    from gql_app.observability import _current

    record = logging.makeLogRecord({"name": "gql_app.x", "msg": "hi %s", "args": ("there",)})
    token = _current.set(RequestObservation("ctx-1"))
    try:
        entry = orjson.loads(JSONFormatter().format(record))
    finally:
        _current.reset(token)
    assert entry["message"] == "hi there" and entry["request_id"] == "ctx-1"


class Writes(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def buffered(stream: Writes) -> logging.Logger:
    handler = BufferedLines()
    handler.setStream(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.buffered.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


async def test_log_lines_on_the_event_loop_are_written_together_within_a_tenth_of_a_second():
    stream = Writes()
    log = buffered(stream)
    # When a hundred lines are logged on the event loop
    for i in range(100):
        log.info("line %d", i)
    # Then none is written yet, and all are, in order, in one write, soon after
    assert stream.writes == 0
    await asyncio.sleep(BufferedLines.FLUSH_S * 2)
    assert stream.writes == 1
    assert stream.getvalue().splitlines() == [f"INFO line {i}" for i in range(100)]


async def test_a_warning_is_written_at_once_with_the_lines_before_it():
    stream = Writes()
    log = buffered(stream)
    log.info("before")
    log.warning("careful")
    assert stream.getvalue().splitlines() == ["INFO before", "WARNING careful"]
    assert stream.writes == 1


def test_log_lines_outside_an_event_loop_are_written_at_once():
    stream = Writes()
    log = buffered(stream)
    log.info("one")
    assert stream.getvalue() == "INFO one\n"
    log.info("two")
    assert stream.writes == 2


def test_lines_left_by_an_event_loop_that_ended_go_out_with_the_next_loops():
    stream = Writes()
    log = buffered(stream)

    async def one(text: str, wait: float) -> None:
        log.info(text)
        await asyncio.sleep(wait)

    asyncio.run(one("first", 0))  # its loop ends before the flush is due
    asyncio.run(one("second", BufferedLines.FLUSH_S * 2))
    assert stream.getvalue().splitlines() == ["INFO first", "INFO second"]


def request_line_setup(
    monkeypatch: pytest.MonkeyPatch, *others: logging.Handler
) -> tuple[io.StringIO, RequestObservation]:
    """The app's log setup (one ``BufferedLines`` of JSON lines, on the root logger),
    plus ``others`` beside it; a finished query's observation."""
    stream = io.StringIO()
    handler = BufferedLines()
    handler.setStream(stream)
    handler.setFormatter(JSONFormatter())
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler, *others])
    monkeypatch.setattr(logging.getLogger("gql_app"), "level", logging.INFO)
    observation = RequestObservation(
        "line-7", operation_type="query", operation_name="Feed", sql_statements=3, status=200
    )
    return stream, observation


EXPECTED_LINE = {
    "level": "INFO",
    "logger": "gql_app.request",
    "message": "graphql request",
    "request_id": "line-7",
    "method": "POST",
    "path": "/graphql",
    "status": 200,
    "operation_type": "query",
    "operation_name": "Feed",
    "sql_statements": 3,
    "outcome": "ok",
    "error_codes": [],
}


def test_the_request_line_reads_the_same_whether_or_not_another_handler_listens(monkeypatch):
    # Given the app's own log setup: the request's line is written straight to its handler
    stream, observation = request_line_setup(monkeypatch)
    finish_request(Metrics(), observation)
    alone = orjson.loads(stream.getvalue())
    # And given another handler beside it: the line goes through logging's records
    records: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = records.append  # type: ignore[method-assign]
    stream, observation = request_line_setup(monkeypatch, collector)
    finish_request(Metrics(), observation)
    shared = orjson.loads(stream.getvalue())
    # Then both lines are the same line, and the other handler got the record
    for line in (alone, shared):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line.pop("time"))
        assert line.pop("duration_ms") >= 0
        assert line == EXPECTED_LINE
    assert [(r.name, r.request_id) for r in records] == [("gql_app.request", "line-7")]  # type: ignore[attr-defined]


def test_a_filter_on_the_request_logger_still_sees_every_request_line(monkeypatch):
    stream, observation = request_line_setup(monkeypatch)
    seen: list[str] = []

    def keep_none(record: logging.LogRecord) -> bool:
        seen.append(record.request_id)  # type: ignore[attr-defined]
        return False

    request_log = logging.getLogger("gql_app.request")
    request_log.addFilter(keep_none)
    try:
        finish_request(Metrics(), observation)
    finally:
        request_log.removeFilter(keep_none)
    # The filter decided: it saw the line's record and nothing was written
    assert seen == ["line-7"]
    assert stream.getvalue() == ""
