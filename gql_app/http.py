"""The GraphQL endpoint: Strawberry's ASGI view with our context, JSON and error rule."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from gql_app.context import Context
from gql_app.errors import format_error
from gql_app.users.auth import bearer_token


class GraphQLView(GraphQL[Context, None]):
    async def get_context(self, request: Any, response: Any = None) -> Context:
        state = request.app.state
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        return Context(
            request=request,
            settings=state.settings,
            sessionmaker=state.sessionmaker,
            read_sessionmaker=state.read_sessionmaker,
            bearer_token=bearer_token(request.headers.get("authorization")),
            request_id=request_id[:64],
        )

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            try:
                body = orjson.loads(await request.get_body())
            except orjson.JSONDecodeError:
                body = None  # strawberry reports the syntax error itself below
            else:
                if not isinstance(body, dict):
                    raise HTTPException(400, "The request body must be a JSON object.")
        return await super().parse_http_body(request)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        context_id = request.headers.get("x-request-id") or ""
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [format_error(e, context_id) for e in result.errors]
        if result.extensions:
            response["extensions"] = result.extensions
        return response

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)

    def create_response(self, response_data: Any, sub_response: Any) -> Response:
        response = super().create_response(response_data, sub_response)
        return response
