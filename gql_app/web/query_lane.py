"""The query lane: replaces Strawberry's HTTP view and Starlette's middleware stack
for plain JSON queries.

A POST of ``application/json`` whose document is a query that parses, validates
and passes the limits is answered here, with the full path's own functions
(document checks, context, transaction boundary, planned executor, error
formatting, log line and metrics). Everything else goes to the full path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    specified_rules,
)
from graphql.execution.collect_fields import FragmentDetails
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import validate_document

from gql_app.data.context import Context
from gql_app.data.transaction import operation
from gql_app.engine.limits import Analysis, QueryTooComplex, violations
from gql_app.engine.planned_executor import PlannedExecutor
from gql_app.errors import ErrorCode, error_body
from gql_app.observability import (
    Metrics,
    RequestObservation,
    current_observation,
    finish_request,
    request_id_from,
)
from gql_app.settings import Settings
from gql_app.tracing import Tracer, start_operation
from gql_app.web.trusted import TrustedDocuments, document_id_of
from gql_app.web.view import (
    PersistedQueries,
    graphql_response,
    request_context,
    response_media_type,
)

log = logging.getLogger(__name__)

VALIDATION_RULES = tuple(specified_rules)  # Strawberry's default; validate_document adds its own


@dataclass(frozen=True, slots=True)
class Prepared:
    """A query operation of a valid document, ready to execute."""

    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    details: dict[str, FragmentDetails]
    """The fragments as the executor takes them (none has variables of its own)."""
    name: str | None
    per_request: bool
    """The limits' verdict depends on the variables: checked on every request."""


Planned = tuple[Prepared, dict[str, Any] | None, Any]
"""What the lane runs: the prepared query, its variables and its request extensions."""


class PreparedQueries:
    """Documents by (text, operationName): prepared, or None for the full path. LRU.

    A document is parsed and validated once; the limits' verdict is kept with it
    when it does not depend on the variables.
    """

    def __init__(self, settings: Settings, schema: Any, maxsize: int = 512) -> None:
        self.settings = settings
        self.schema = schema
        self._entries: LRUCache[tuple[str, str | None], Prepared | None] = LRUCache(maxsize)

    def get(self, query: str, operation_name: str | None) -> Prepared | None:
        key = (query, operation_name)
        try:
            return self._entries[key]
        except KeyError:
            prepared = self._entries[key] = self._prepare(query, operation_name)
            return prepared

    def _prepare(self, query: str, operation_name: str | None) -> Prepared | None:
        settings = self.settings
        if len(query) > settings.max_document_chars:
            return None
        try:
            document = parse(query, max_tokens=settings.max_tokens)
        except GraphQLError:
            return None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is None and len(operations) != 1:
            return None
        found = next(
            (o for o in operations if operation_name in (None, o.name and o.name.value)),
            None,
        )
        if found is None or found.operation is not OperationType.QUERY:
            return None
        if validate_document(self.schema, document, VALIDATION_RULES):
            return None
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        if any(fragment.variable_definitions for fragment in fragments.values()):
            return None  # fragment variables (experimental): the full path executes them
        admitted, per_request = self.admits(found, fragments, {})
        if not admitted and not per_request:
            return None
        details = {name: FragmentDetails(d, None) for name, d in fragments.items()}
        name = found.name.value if found.name else None
        return Prepared(document, found, fragments, details, name, per_request)

    def admits(
        self,
        found: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> tuple[bool, bool]:
        """Whether the limits admit the operation, and whether that depends on the variables."""
        analysis = Analysis(self.settings, self.schema, fragments, variables)
        try:
            shape = analysis.selection_set(
                found.selection_set, self.schema.get_root_type(found.operation)
            )
        except QueryTooComplex:
            return False, analysis.reads_variables
        return not any(violations(self.settings, shape)), analysis.reads_variables


class QueryLane:
    """Answers lane requests (see the module docstring); hands the rest to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        schema: Any,
        metrics: Metrics,
        persisted_queries: PersistedQueries,
        trusted: TrustedDocuments | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.app = app
        self.trusted = trusted
        self.tracer = tracer
        self.settings = settings
        self.schema = schema
        self.metrics = metrics
        self.persisted_queries = persisted_queries
        self.prepared = PreparedQueries(settings, schema)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = LaneHeaders.of(scope)
        media = self._media_type(headers)
        if media is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        planned = self._plan(body)
        if planned is None:
            await self.app(scope, replay(body, receive), send)
            return
        observation = RequestObservation(
            request_id_from(latin1(headers.request_id)), "POST", scope["path"]
        )
        observation.operation_type = "query"
        observation.operation_name = planned[0].name
        if self.tracer is not None:
            start_operation(self.tracer, observation)
        status, response = await self._answer(scope, receive, planned, headers, observation)
        try:
            observation.status = status
            await send_json(send, status, media, response, observation.request_id)
        finally:
            finish_request(self.metrics, observation)

    def _media_type(self, headers: LaneHeaders) -> str | None:
        """The response's media type when the headers make this a lane request, else None."""
        media = response_media_type(latin1(headers.accept))
        content_type = headers.content_type
        if (
            media is None
            or (headers.origin and self.settings.cors_origins)  # the CORS middleware answers
            or not 0 <= headers.length <= self.settings.max_body_bytes
            or content_type is None
            or content_type.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            return None
        return media

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        planned: Planned,
        headers: LaneHeaders,
        observation: RequestObservation,
    ) -> tuple[int, Any]:
        """(status, body): the query's response, or a masked 500 if the lane failed."""
        token = current_observation.set(observation)
        try:
            request = Request(scope, receive)
            authorization = latin1(headers.authorization)
            ctx = request_context(request, authorization, observation.request_id)
            return 200, await self._execute(ctx, *planned)
        except Exception:
            log.exception("query lane failed", extra={"request_id": observation.request_id})
            observation.error_codes.append(ErrorCode.INTERNAL_SERVER_ERROR)
            message = f"Internal server error (request id {observation.request_id})."
            return 500, error_body(message, ErrorCode.INTERNAL_SERVER_ERROR)
        finally:
            current_observation.reset(token)

    def _plan(self, body: bytes) -> Planned | None:
        """What to run, or None when the request belongs to the full path, which then
        answers as it would without the lane (refusals are defined there only)."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict:
            return None
        query = data.get("query")
        variables = data.get("variables")
        operation_name = data.get("operationName")
        extensions = data.get("extensions")
        if (
            (variables is not None and type(variables) is not dict)
            or (operation_name is not None and type(operation_name) is not str)
            or (extensions is not None and type(extensions) is not dict)
        ):
            return None
        if self.trusted is not None:  # a miss: the full path refreshes, or refuses
            query = self.trusted.lookup(query, extensions, document_id_of(data))
        elif extensions is not None and "persistedQuery" in extensions:
            try:
                query = self.persisted_queries.document(extensions, query)
            except Exception:  # unknown hash, malformed: the full path answers
                return None
        if type(query) is not str:
            return None
        prepared = self.prepared.get(query, operation_name)
        if prepared is None:
            return None
        if (
            prepared.per_request
            and not self.prepared.admits(prepared.operation, prepared.fragments, variables or {})[0]
        ):
            return None
        return prepared, variables, extensions

    async def _execute(
        self, ctx: Context, prepared: Prepared, variables: dict[str, Any] | None, extensions: Any
    ) -> Any:
        async with operation(ctx, read_only=True) as op:
            result: Any
            if op.fault is not None:
                result = op.unavailable()
            else:
                result = PlannedExecutor.run(
                    self.schema,
                    prepared.operation,
                    prepared.fragments,
                    prepared.details,
                    ctx,
                    variables,
                    extensions,
                )
                if optimized_is_awaitable(result):
                    result = await result
            op.result = result
        return graphql_response(result, ctx)


@dataclass(slots=True)
class LaneHeaders:
    """The request headers the lane reads (raw bytes, as ASGI gives them)."""

    content_type: bytes | None = None
    length: int = -1
    accept: bytes | None = None
    authorization: bytes | None = None
    request_id: bytes | None = None
    origin: bool = False

    @classmethod
    def of(cls, scope: Scope) -> LaneHeaders:
        headers = cls()
        for name, value in scope["headers"]:
            if name == b"content-type":
                headers.content_type = value
            elif name == b"content-length":
                headers.length = int(value) if value.isdigit() else -1
            elif name == b"accept":
                headers.accept = value
            elif name == b"authorization":
                headers.authorization = value
            elif name == b"x-request-id":
                headers.request_id = value
            elif name == b"origin":
                headers.origin = True
        return headers


def latin1(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


async def send_json(send: Send, status: int, media: str, body: Any, request_id: str) -> None:
    """The whole response, ``body`` as JSON, with its ``X-Request-ID``."""
    content = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media.encode() + b"; charset=utf-8"),
                (b"content-length", str(len(content)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the body already read, then the client's messages."""
    sent = False

    async def replayed() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
