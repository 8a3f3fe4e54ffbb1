"""create_app(): the ASGI application — routes, middleware, the lifespan's resources."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

import strawberry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gql_app.data.db import create_engine, create_sessionmaker
from gql_app.data.driver_reads import kept
from gql_app.data.listener import EventListener
from gql_app.data.replica import Replica
from gql_app.observability import (
    Metrics,
    RequestObservability,
    configure_logging,
    instrument_engine,
)
from gql_app.schema import schema as app_schema
from gql_app.settings import Settings, get_settings
from gql_app.tracing import Tracer, provider_from_environment, tracer_of
from gql_app.web.live import Hub
from gql_app.web.query_lane import QueryLane
from gql_app.web.trusted import TrustedDocuments
from gql_app.web.view import BodySizeLimit, GraphQLView, PersistedQueries, app_context
from gql_app.web.websocket import GraphQLWebSocket

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


class App(Starlette):
    """Starlette, with ``POST /graphql`` offered to the query lane first and
    WebSockets at ``/graphql`` served by ``web.websocket``.

    The lane answers the queries it can and hands everything else to the
    middleware stack and routes below (``gql_app.web.query_lane``).
    """

    lane: QueryLane | None = None
    websocket = GraphQLWebSocket(lambda scope: scope["app"].state.hub)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "lifespan" and scope["path"] in (
            "/graphql",
            scope.get("root_path", "") + "/graphql",
        ):
            if kind == "websocket":  # no middleware: the connection holds the server's send
                scope["app"] = self
                await self.websocket(scope, receive, send)
                return
            if self.lane is not None and scope["method"] == "POST":
                scope["app"] = self
                await self.lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def full_path(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    schema: strawberry.Schema = app_schema,
    tracer_provider: TracerProvider | None = None,
) -> App:
    """The application for ``settings`` (default: from the environment) serving ``schema``.

    Traces go to ``tracer_provider``, else to an OTLP exporter when the standard
    ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` names one (``gql_app.tracing``), else nowhere.

    Raises ``UnsafeSettings`` for settings no server may start with (the development
    secret key outside development), so ``uvicorn --factory`` exits on them too.
    """
    settings = settings or get_settings()
    settings.check_safe()
    metrics = Metrics()
    provider = tracer_provider or provider_from_environment()
    tracer = tracer_of(provider)
    owned = provider if tracer_provider is None else None  # shut down (flushed) with the app
    persisted_queries = PersistedQueries()
    trusted = (
        TrustedDocuments(settings.trusted_documents_refresh_s)
        if settings.trusted_documents
        else None
    )
    graphql = GraphQLView(
        schema,
        graphql_ide="graphiql" if settings.graphiql and trusted is None else None,
        allow_queries_via_get=True,
        persisted_queries=persisted_queries,
        trusted=trusted,
    )
    app = App(
        routes=[
            # Every method reaches the view, which answers 405 with the right Allow.
            Route("/graphql", graphql),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics.endpoint),
        ],
        middleware=middleware(settings, metrics, tracer),
        lifespan=lambda app: lifespan(app, settings, metrics, schema, trusted, tracer, owned),
    )
    if settings.query_lane:
        app.lane = QueryLane(
            app.full_path, settings, schema._schema, metrics, persisted_queries, trusted, tracer
        )
    return app


def middleware(settings: Settings, metrics: Metrics, tracer: Tracer | None) -> list[Middleware]:
    """Outermost first: observability (every request is logged), the body limit, CORS."""
    stack = [
        Middleware(RequestObservability, metrics=metrics, tracer=tracer),
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
    ]
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID"],
            )
        )
    return stack


@contextlib.asynccontextmanager
async def lifespan(
    app: Starlette,
    settings: Settings,
    metrics: Metrics,
    schema: strawberry.Schema,
    trusted: TrustedDocuments | None = None,
    tracer: Tracer | None = None,
    owned: TracerProvider | None = None,
) -> AsyncIterator[None]:
    """The engines (primary, and a read replica with its monitor when configured), the
    sessionmakers, the live fan-out with its LISTEN connection, and the trusted documents."""
    configure_logging(settings)
    engine = create_engine(settings)
    instrument_engine(engine, settings.slow_query_ms, tracer)
    metrics.watch_pool("primary", engine, kept(engine))
    state = app.state
    state.settings = settings
    state.engine = engine
    state.sessionmaker = create_sessionmaker(engine)
    # Query operations on the driver connection (data/driver_reads.py); None: on a session.
    state.read_engine = engine if settings.driver_reads else None
    state.replica = replica = start_replica(settings, engine, metrics, tracer)
    state.hub = Hub(
        settings,
        schema,
        EventListener.from_settings(settings),
        metrics.live,
        # Live data reads the primary: an event's rows were committed there a moment
        # ago, and a replica may not show them yet (README, "Read replica").
        partial(app_context, state, replica=None),
        trusted,
        tracer,
    )
    await state.hub.start()
    if trusted is not None:
        await trusted.start(engine)  # from the primary: it has every document trusted
    monitor = await replica.watch(engine) if replica is not None else None
    tune_garbage_collector()
    try:
        yield
    finally:
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        await state.hub.close()
        await kept(engine).release()
        await engine.dispose()
        if replica is not None:
            await kept(replica.engine).release()
            await replica.engine.dispose()
        if owned is not None:
            owned.shutdown()  # exports the last spans


def start_replica(
    settings: Settings, primary: AsyncEngine, metrics: Metrics, tracer: Tracer | None
) -> Replica | None:
    """The read replica of ``GQL_READ_REPLICA_URL``, if set (``data.replica``)."""
    if not settings.read_replica_url:
        return None
    engine = create_engine(settings, settings.read_replica_url)
    instrument_engine(engine, settings.slow_query_ms, tracer)
    metrics.watch_pool("replica", engine, kept(engine))
    replica = Replica(
        engine,
        create_sessionmaker(engine),
        max_lag_s=settings.replica_max_lag_s,
        interval_s=settings.replica_check_interval_s,
        timeout_s=2 * settings.connect_timeout_s,  # two connections may be opened
    )
    metrics.watch_replica(replica)
    return replica


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic collections.

    Everything alive at start-up (schema, modules, metadata) is frozen, so full
    collections stop rescanning it, and young collections run every 5 000
    allocations instead of 700: a query request leaves nothing for the cycle
    collector (tests/test_lane.py checks: the context, its loaders and the
    executor let go of each other, and answered errors of their tracebacks, when
    it ends), so its objects are freed as it ends and collections stay rare.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 10, 10)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    """Ready when the primary answers. A read replica's state (its monitor's last
    check: ``ok``, ``lagging`` or ``unavailable``, and its lag) is reported but does
    not decide: every app replica shares it, so taking them all out of the load
    balancer would only turn failed queries into failed mutations too; and queries
    already read the primary while it is not ``ok``."""
    state = request.app.state
    primary = await reachable(state.engine)
    body: dict[str, object] = {"status": "ready" if primary else "unavailable"}
    replica: Replica | None = state.replica
    if replica is not None:
        body["replica"] = replica.state.value
        body["replica_lag_bytes"] = replica.lag_bytes
        lag = replica.lag_seconds
        body["replica_lag_seconds"] = None if lag is None else round(lag, 3)
    return JSONResponse(body, status_code=200 if primary else 503)


async def reachable(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
