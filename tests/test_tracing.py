"""OpenTelemetry traces: a span per operation, a child span per SQL statement named by
the field path that sent it; nothing at all when tracing is not configured."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import event

from gql_app import observability, tracing
from gql_app.settings import Settings
from gql_app.web import query_lane
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, scratch_database
from tests.factories import World, build_world

DEEP = """
query Deep($n: Int) {
  users(first: $n) { nodes { posts(first: $n) { totalCount nodes { comments(first: $n) {
    nodes { author { profile { displayName } } } } } } } }
}
"""
ROOT = 'query Searched { posts(first: 2, filter: {search: "secret-needle"}) { nodes { title } } }'
VIEWER = "query Me { viewer { username } }"
COMMENT = """
mutation AddComment($postId: ID!, $body: String!) {
  addComment(input: {postId: $postId, body: $body}) {
    comment { body author { username } post { commentCount } } userErrors { code } } }
"""


class Traced:
    """Two apps on one scratch database, tracing into one in-memory exporter: the
    default one (query lane, driver reads) and the full path (ORM sessions)."""

    def __init__(self, exporter: InMemorySpanExporter, world: World) -> None:
        self.exporter = exporter
        self.world = world
        self.clients: dict[str, GraphQLClient] = {}
        self.engines: dict[str, Any] = {}
        self.statements = 0

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture(scope="module")
async def traced(server_url: str) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with scratch_database(server_url, "gql_traced") as url:
        settings = Settings(DATABASE_URL=url, secret_key="test", pool_size=5, max_overflow=5)
        lane = create_app(settings, tracer_provider=provider)
        full = create_app(
            settings.model_copy(update={"query_lane": False, "driver_reads": False}),
            tracer_provider=provider,
        )
        async with (
            lane.router.lifespan_context(lane),
            full.router.lifespan_context(full),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=lane), base_url="http://t") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=full), base_url="http://t") as b,
        ):
            world = await build_world(lane.state.engine)
            state = Traced(exporter, world)
            state.clients = {"lane": GraphQLClient(a), "full": GraphQLClient(b)}
            state.engines = {"lane": lane.state.engine, "full": full.state.engine}
            yield state
    provider.shutdown()


@pytest.fixture
def counted(traced: Traced) -> Iterator[Traced]:
    """Spans and statements of this test only (the statement counter's own listener)."""

    def count(*args: Any) -> None:
        traced.statements += 1

    traced.exporter.clear()
    traced.statements = 0
    for engine in traced.engines.values():
        event.listen(engine.sync_engine, "before_cursor_execute", count)
    yield traced
    for engine in traced.engines.values():
        event.remove(engine.sync_engine, "before_cursor_execute", count)


def split(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one operation span and its SQL spans (each a child of it)."""
    (operation,) = [s for s in spans if s.parent is None]
    sql = [s for s in spans if s.parent is not None]
    assert operation.context is not None
    for span in sql:
        assert span.parent is not None and span.parent.span_id == operation.context.span_id
        assert span.context is not None and span.context.trace_id == operation.context.trace_id
    return operation, sql


@pytest.mark.parametrize("path", ["lane", "full"])
async def test_a_query_has_an_operation_span_and_a_span_per_statement(counted, path):
    await counted.clients[path](DEEP, {"n": 2})

    operation, sql = split(counted.spans())
    assert operation.name == "query Deep"
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.type"] == "query"
    assert operation.attributes["graphql.operation.name"] == "Deep"
    assert len(str(operation.attributes["gql_app.request_id"])) == 32
    assert len(sql) == counted.statements == 5
    assert [s.name for s in sql] == [
        "SQL Query.users",
        "SQL User.posts",
        "SQL Post.comments",
        "SQL Comment.author",
        "SQL User.profile",
    ]
    for span in sql:
        assert span.attributes is not None
        assert span.attributes["db.system"] == "postgresql"
        assert str(span.attributes["db.statement"]).lstrip().startswith("SELECT")
        assert span.start_time is not None and operation.start_time is not None
        assert operation.start_time <= span.start_time
        assert span.end_time is not None and operation.end_time is not None
        assert span.end_time <= operation.end_time


@pytest.mark.parametrize("path", ["lane", "full"])
async def test_statements_carry_their_text_never_their_parameters(counted, path):
    await counted.clients[path](ROOT)

    _, sql = split(counted.spans())
    assert [s.name for s in sql] == ["SQL Query.posts"]
    statement = str(sql[0].attributes["db.statement"])  # type: ignore[index]
    assert "ILIKE" in statement.upper() or "LIKE" in statement.upper()
    for span in counted.spans():
        for value in (span.attributes or {}).values():
            assert "secret-needle" not in str(value)


@pytest.mark.parametrize("path", ["lane", "full"])
async def test_the_viewer_lookup_is_named(counted, path):
    body = await counted.clients[path](VIEWER, token=counted.world.tokens["alice"])
    assert body["data"]["viewer"] == {"username": "alice"}

    operation, sql = split(counted.spans())
    assert operation.name == "query Me"
    assert len(sql) == counted.statements >= 1
    assert {s.name for s in sql} == {"SQL viewer"}
    token = counted.world.tokens["alice"]
    assert all(token not in str(v) for s in sql for v in (s.attributes or {}).values())


async def test_a_mutation_names_its_field_and_its_commit(counted):
    world = counted.world
    post = world.gid("Post", world.posts[world.alice][0])
    body = await counted.clients["lane"](
        COMMENT, {"postId": post, "body": "traced words"}, token=world.tokens["bob"]
    )
    assert body["data"]["addComment"]["userErrors"] == []

    operation, sql = split(counted.spans())
    assert operation.name == "mutation AddComment"
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.type"] == "mutation"
    assert len(sql) == counted.statements
    names = [s.name for s in sql]
    assert names[0] == "SQL viewer"
    assert "SQL Mutation.addComment" in names
    assert names[-1] == "SQL notify"
    assert set(names) <= {"SQL viewer", "SQL Mutation.addComment", "SQL notify"} | {
        "SQL Comment.author",
        "SQL Comment.post",
        "SQL Post.commentCount",
    }
    for span in sql:
        assert "traced words" not in str((span.attributes or {}).values())


async def test_error_codes_are_on_the_operation_span(counted):
    body = await counted.clients["lane"]("query Bad { post(id: 12) { title } }", expect_errors=True)
    codes = sorted({e["extensions"]["code"] for e in body["errors"]})

    spans = counted.spans()
    (operation,) = [s for s in spans if s.parent is None]
    assert operation.attributes is not None
    assert list(operation.attributes["gql_app.error_codes"]) == codes  # type: ignore[arg-type]
    assert not operation.status.is_ok


# ---------------------------------------------------------------- not configured


async def test_without_an_endpoint_nothing_is_traced(app, client, world, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.provider_from_environment() is None
    assert app.lane.tracer is None and app.state.hub.tracer is None
    called: list[str] = []
    for module, name in [
        (observability, "start_statement"),
        (observability, "start_operation"),
        (observability, "end_operation"),
        (query_lane, "start_operation"),
    ]:
        monkeypatch.setattr(module, name, lambda *a, name=name: called.append(name))

    for path in ("lane", "full"):  # the second goes to the full path: not JSON
        response = (
            await client.post("/graphql", json={"query": DEEP, "variables": {"n": 2}})
            if path == "lane"
            else await client.get("/graphql", params={"query": ROOT})
        )
        assert response.status_code == 200
    assert called == []


def test_an_endpoint_turns_tracing_on(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    provider = tracing.provider_from_environment()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "gql_app"
    finally:
        provider.shutdown()

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-api")
    provider = tracing.provider_from_environment()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "shop-api"
    finally:
        provider.shutdown()


def test_a_statement_that_raised_ends_its_span_as_failed():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    observation = observability.RequestObservation("r1")
    tracing.start_operation(tracer, observation)
    conn = SimpleNamespace(info={})

    tracing.start_statement(tracer, observation, conn, "SELECT 1")
    tracing.start_statement(tracer, observation, conn, "SELECT 2")  # the first never got after
    tracing.end_statement(conn, failed=True)  # handle_error, or the driver read's except
    tracing.end_statement(conn)  # nothing left
    tracing.end_operation(observation)

    first, second, operation = exporter.get_finished_spans()
    assert [first.name, second.name, operation.name] == ["SQL operation"] * 2 + ["graphql"]
    assert not first.status.is_ok and not second.status.is_ok
    assert [s.attributes["db.statement"] for s in (first, second)] == ["SELECT 1", "SELECT 2"]  # type: ignore[index]
    provider.shutdown()
