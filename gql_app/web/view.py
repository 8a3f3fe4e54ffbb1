"""The GraphQL endpoint: Strawberry's ASGI view with our context, JSON, error rule,
persisted queries and the GraphQL-over-HTTP status codes; the body size limit.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson
from cachetools import LRUCache
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from gql_app.data.context import Context
from gql_app.errors import ErrorCode, error_body, forget_tracebacks, format_error
from gql_app.observability import record_errors, request_id_for
from gql_app.users.auth import authenticate
from gql_app.web.trusted import TrustedDocuments, Untrusted, document_id_of

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def request_context(request: Request, authorization: str | None, request_id: str) -> Context:
    """The GraphQL context of one HTTP request (the view's and the query lane's)."""
    return app_context(
        request.app.state,
        request=request,
        bearer_token=bearer_token(authorization),
        authenticate=authenticate,
        request_id=request_id,
    )


def app_context(state: Any, **fields: Any) -> Context:
    """A Context on the app's resources (``app.state``); ``fields`` add the rest."""
    return Context(
        settings=state.settings,
        sessionmaker=state.sessionmaker,
        read_engine=state.read_engine,
        **{"request": None, "replica": state.replica, **fields},
    )


class HTTPError(HTTPException):
    def __init__(self, status_code: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(status_code, reason)
        self.headers = headers or {}


@lru_cache(maxsize=64)  # clients send a handful of distinct Accept headers
def response_media_type(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither."""
    if not accept:
        return JSON
    offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if GRAPHQL_RESPONSE in offered:
        return GRAPHQL_RESPONSE
    if any(media in offered for media in (JSON, "application/*", "*/*")):
        return JSON
    return None


class PersistedQueryNotFound(Exception):
    """APQ: the hash is not known (yet); the client re-sends it with the document."""


class PersistedQueries:
    """Automatic Persisted Queries (the protocol Apollo and Relay clients speak).

    A request may carry ``extensions.persistedQuery = {version: 1, sha256Hash}``
    instead of the document. Known hashes resolve to the stored document; an
    unknown one is answered with PERSISTED_QUERY_NOT_FOUND, and the client's
    retry with the full document registers it. The store is a bounded LRU per
    process: a miss costs one round trip, never a wrong answer.
    """

    def __init__(self, maxsize: int = 2048) -> None:
        self._documents: LRUCache[str, str] = LRUCache(maxsize)

    def resolve(self, data: GraphQLRequestData) -> None:
        data.query = self.document(data.extensions, data.query)

    def document(self, extensions: Any, query: str | None) -> str | None:
        """The document to run: ``query``, or the one stored under the request's hash.

        Raises ``HTTPException`` (400) for a malformed ``persistedQuery`` and
        ``PersistedQueryNotFound`` for an unknown hash sent without its document.
        """
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise HTTPException(400, "Unsupported persistedQuery version.")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or len(digest) != 64:
            raise HTTPException(400, "persistedQuery needs a sha256Hash.")
        if query is None:
            document = self._documents.get(digest)
            if document is None:
                raise PersistedQueryNotFound
            return document
        if hashlib.sha256(query.encode()).hexdigest() != digest:
            raise HTTPException(400, "persistedQuery sha256Hash does not match the query.")
        self._documents[digest] = query
        return query


def graphql_response(result: ExecutionResult, context: Context | None) -> GraphQLHTTPResponse:
    """The response body of an executed operation: ``data``, coded ``errors``, ``extensions``.

    Shared by the view and the query lane; the error codes are recorded for the
    request's log line and metrics.
    """
    request_id = context.request_id if context is not None else ""
    suggestions = context.settings.introspection if context is not None else True
    response: GraphQLHTTPResponse = {}
    if not isinstance(result, PreExecutionError):
        response["data"] = result.data
    if result.errors:
        errors = [format_error(e, request_id, suggestions=suggestions) for e in result.errors]
        record_errors([e["extensions"]["code"] for e in errors])
        response["errors"] = list(errors)
        forget_tracebacks(result.errors)  # answered (and logged): the frames may go
    if result.extensions:
        response["extensions"] = result.extensions
    return response


class GraphQLView(GraphQL[Context, None]):
    """Status codes (GraphQL over HTTP, draft of 2025, and the graphql-http audit agree):

    - not a well-formed GraphQL-over-HTTP request (body not a JSON object, no
      query, bad ``variables``) → 400, both media types;
    - a request error (syntax, validation, a refused limit: no ``data``) → 400
      with ``application/graphql-response+json``, 200 with ``application/json``
      (the spec's legacy media type keeps 200);
    - execution with field errors (``data`` present, even null) → 200;
    - a mutation over GET, or a method other than GET/POST → 405 with ``Allow``;
    - a body that is not ``application/json`` → 415, never executed; an
      ``Accept`` we cannot serve → 406; a body over the limit → 413.

    ``application/graphql-response+json`` is used when the client accepts it,
    otherwise (no ``Accept``, ``*/*``) ``application/json``.
    """

    def __init__(
        self,
        *args: Any,
        persisted_queries: PersistedQueries | None = None,
        trusted: TrustedDocuments | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.persisted_queries = persisted_queries or PersistedQueries()
        self.trusted = trusted
        """Trusted-documents mode (``web.trusted``): set, it replaces APQ."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as error:
            response = self.error_response(request, error)
        except PersistedQueryNotFound:
            body = error_body("PersistedQueryNotFound", ErrorCode.PERSISTED_QUERY_NOT_FOUND)
            response = self.json_response(request, body, 200)
        except Untrusted as error:  # a request error: 400 unless the legacy media type
            body = error_body(str(error), ErrorCode.UNTRUSTED_DOCUMENT)
            record_errors([ErrorCode.UNTRUSTED_DOCUMENT])
            legacy = response_media_type(request.headers.get("accept")) != GRAPHQL_RESPONSE
            response = self.json_response(request, body, 200 if legacy else 400)
        await response(scope, receive, send)

    def error_response(self, request: Request, error: HTTPException) -> Response:
        """An HTTP-level refusal, still shaped as a GraphQL response with a code."""
        body = error_body(error.reason, ErrorCode.BAD_REQUEST)
        return self.json_response(request, body, error.status_code, getattr(error, "headers", None))

    def json_response(
        self, request: Request, body: Any, status: int, headers: dict[str, str] | None = None
    ) -> Response:
        """``body`` as JSON, in the media type the client accepts."""
        media = response_media_type(request.headers.get("accept")) or JSON
        return Response(orjson.dumps(body), status_code=status, media_type=media, headers=headers)

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        if request.method not in ("GET", "POST"):
            raise HTTPError(405, "GraphQL accepts GET and POST.", {"Allow": "GET, POST"})
        if self.should_render_graphql_ide(self.request_adapter_class(request)):
            return await super().run(request)
        media = response_media_type(request.headers.get("accept"))
        if media is None:
            raise HTTPError(406, f"Accept {GRAPHQL_RESPONSE} or {JSON}.")
        if request.method == "POST":
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != JSON:
                raise HTTPError(415, f"POST bodies must be {JSON}.")
        request.state.request_error = False
        response = await super().run(request)
        response.headers["content-type"] = f"{media}; charset=utf-8"
        if media == GRAPHQL_RESPONSE and request.state.request_error:
            response.status_code = 400
        return response

    def should_render_graphql_ide(self, request: Any) -> bool:
        """GraphiQL for a browser's plain GET; never for an API call (e.g. an APQ GET)."""
        params = request.query_params
        return (
            request.method == "GET"
            and params.get("query") is None
            and params.get("extensions") is None
            and "text/html" in (request.headers.get("accept") or "")
        )

    async def get_context(self, request: Any, response: Any = None) -> Context:
        context = request_context(
            request, request.headers.get("authorization"), request_id_for(request)
        )
        request.state.context = context
        return context

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):
                raise HTTPError(
                    405, "Mutations are only accepted over POST.", {"Allow": "POST"}
                ) from error
            raise

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        body: Any = request.query_params
        if request.method == "POST":
            try:
                body = orjson.loads(await request.get_body())
            except orjson.JSONDecodeError:
                raise HTTPException(400, "The request body is not valid JSON.") from None
            if not isinstance(body, dict):
                raise HTTPException(400, "The request body must be a JSON object.")
            if (
                not isinstance(body.get("query"), str)
                and not body.get("extensions")
                and self.trusted is None
            ):
                raise HTTPException(400, "The request has no `query` string.")
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):
            if self.trusted is not None:  # before the document is parsed, and instead of APQ
                data.query = await self.trusted.resolve(
                    data.query, data.extensions, document_id_of(body)
                )
            else:
                self.persisted_queries.resolve(data)
        return data

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if isinstance(result, PreExecutionError):
            request.state.request_error = True  # no execution: the response has no `data`
        return graphql_response(result, getattr(request.state, "context", None))

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)


class BodySizeLimit:
    """413 for request bodies over ``max_bytes``, without reading them into memory.

    A declared Content-Length over the limit is refused before any byte is read;
    otherwise the body is counted as it streams and refused at the first byte
    past the limit.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than {self.max_bytes} bytes."
        body = error_body(message, ErrorCode.BAD_REQUEST)
        response = Response(orjson.dumps(body), status_code=413, media_type=JSON)
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass
