"""OpenTelemetry traces, when an OTLP endpoint is configured: a span per GraphQL
operation (or live event batch) and, as its children, a span per SQL statement
named by the field path that sent it ("SQL Query.posts", "SQL Post.comments").

Without an endpoint nothing here runs on the request path: no tracer exists, the
SQL span listeners are not registered and no operation span is started. The SDK
and the exporter are imported only when tracing is turned on.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import StatusCode, Tracer, set_span_in_context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = "gql_app"

sql_origin: ContextVar[Any] = ContextVar("gql_app_sql_origin", default=None)
"""What the statements sent now are for: a resolver's ``info`` (its field path,
``Post.comments``, names them), or a phase of the transaction ("viewer",
"notify"). Set around each loader batch, root page, mutation field and phase."""


def origin_name(origin: Any) -> str:
    """The field path of ``origin`` (``Type.field``, without list indexes), or its name."""
    if origin is None:
        return "operation"
    if isinstance(origin, str):
        return origin
    info = getattr(origin, "_raw_info", origin)  # Strawberry's Info wraps graphql-core's
    try:
        return f"{info.parent_type.name}.{info.field_name}"
    except AttributeError:  # not a resolver's: the fan-out's fetches name themselves
        return getattr(info, "trace_name", "operation")


def configured() -> bool:
    """Whether the standard OTLP variables name an endpoint for traces."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def provider_from_environment() -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP in batches, or None without an endpoint.

    The exporter reads the endpoint, headers, timeout and compression from the
    ``OTEL_EXPORTER_OTLP_*`` variables; the service is ``gql_app`` unless
    ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``) names another.
    """
    if not configured():
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_of(provider: Any) -> Tracer | None:
    return provider.get_tracer("gql_app") if provider is not None else None


# ---------------------------------------------------------------- operation spans


def start_operation(tracer: Tracer | None, observation: Any, name: str = "graphql") -> None:
    """Start the request's operation span (renamed at the end, once the operation is known)."""
    if tracer is not None:
        observation.span = tracer.start_span(
            name, attributes={"gql_app.request_id": observation.request_id}
        )


def end_operation(observation: Any) -> None:
    """End the operation span: its name ("query PostFeed"), type, name and error codes."""
    span = observation.span
    if span is None:
        return
    observation.span = None
    kind, name = observation.operation_type, observation.operation_name
    if kind is not None:
        span.update_name(f"{kind} {name}" if name else kind)
        span.set_attribute("graphql.operation.type", kind)
    if name is not None:
        span.set_attribute("graphql.operation.name", name)
    if observation.status:
        span.set_attribute("http.response.status_code", observation.status)
    if observation.error_codes:
        span.set_attribute("gql_app.error_codes", sorted(set(observation.error_codes)))
        span.set_status(StatusCode.ERROR)
    span.end()


# ---------------------------------------------------------------- SQL spans

_SQL_SPAN = "gql_app.span"


def start_statement(tracer: Tracer, observation: Any, conn: Any, statement: str) -> None:
    """A span for the statement about to be sent on ``conn``, a child of the
    operation's: its SQL text, never its parameters."""
    end_statement(conn, failed=True)  # the previous one raised: no after_cursor_execute
    parent = observation.span if observation is not None else None
    if parent is None:
        return
    conn.info[_SQL_SPAN] = tracer.start_span(
        "SQL " + origin_name(sql_origin.get()),
        context=set_span_in_context(parent),
        attributes={"db.system": "postgresql", "db.statement": statement},
    )


def end_statement(conn: Any, failed: bool = False) -> None:
    span = conn.info.pop(_SQL_SPAN, None)
    if span is not None:
        if failed:
            span.set_status(StatusCode.ERROR)
        span.end()
