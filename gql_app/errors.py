"""Error codes, the typed exceptions domain code raises, and the masking rule."""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import exc as sa_exc


class ErrorCode(enum.StrEnum):
    """``extensions.code`` of a GraphQL error (a str: it goes on the wire as its value)."""

    BAD_REQUEST = "BAD_REQUEST"  # refused at the HTTP level (405, 413, 415, bad JSON...)
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"  # APQ: send the document too
    UNTRUSTED_DOCUMENT = "UNTRUSTED_DOCUMENT"  # trusted-documents mode: not in the manifests
    BAD_USER_INPUT = "BAD_USER_INPUT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"  # the connection's cap is reached
    TIMEOUT = "TIMEOUT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


def error_body(message: str, code: ErrorCode) -> dict[str, Any]:
    """A GraphQL response body that is one coded error and no ``data``."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


class AppError(Exception):
    """An error the client may see as it is: its message and code are safe."""

    code: ErrorCode = ErrorCode.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadUserInput(AppError):
    code = ErrorCode.BAD_USER_INPUT


class Unauthenticated(AppError):
    code = ErrorCode.UNAUTHENTICATED

    def __init__(self, message: str = "You must be signed in.") -> None:
        super().__init__(message)


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN

    def __init__(self, message: str = "You are not allowed to see this.") -> None:
        super().__init__(message)


@strawberry.enum
class UserErrorCode(enum.Enum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    TAKEN = "TAKEN"
    FORBIDDEN = "FORBIDDEN"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    INVALID_STATE = "INVALID_STATE"


@strawberry.type(description="An expected, user-correctable failure of a mutation.")
class UserError:
    field: list[str] | None
    message: str
    code: UserErrorCode


class UserFailure(Exception):
    """Raised inside a mutation: becomes its payload's userErrors, and rolls the field back."""

    def __init__(self, *errors: UserError) -> None:
        super().__init__(errors[0].message if errors else "user error")
        self.errors = list(errors)

    @classmethod
    def of(cls, code: UserErrorCode, message: str, field: list[str] | None = None) -> UserFailure:
        return cls(UserError(field=field, message=message, code=code))


# ---------------------------------------------------------------- the masking rule

_log = logging.getLogger("gql_app.errors")


def forget_tracebacks(errors: list[GraphQLError]) -> None:
    """Drop the tracebacks of answered errors (and of the errors they wrap and were
    raised from). A traceback holds the frames it passed through, and so the
    executor and the request's context that hold the error: a reference cycle
    that would keep the whole request alive until the next cyclic collection."""
    seen: set[int] = set()
    pending: list[BaseException | None] = list(errors)
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += (getattr(error, "original_error", None), error.__cause__, error.__context__)


def database_fault(exc: BaseException) -> ErrorCode | None:
    """TIMEOUT or SERVICE_UNAVAILABLE for faults of the database, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in {"QueryCanceledError", "QueryCanceled"}:
            return ErrorCode.TIMEOUT
        if isinstance(current, (ConnectionError, OSError, asyncio.TimeoutError)) or name in {
            "TimeoutError",
            "CannotConnectNowError",
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "TooManyConnectionsError",
            "AdminShutdownError",
            "InternalClientError",
        }:
            return ErrorCode.SERVICE_UNAVAILABLE
        if isinstance(current, sa_exc.TimeoutError):  # pool exhausted
            return ErrorCode.SERVICE_UNAVAILABLE
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return ErrorCode.SERVICE_UNAVAILABLE
        current = current.__cause__ or current.__context__
    return None


def _caused_by(exc: BaseException, names: set[str]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in names:
            return True
        current = current.__cause__ or current.__context__
    return False


_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def format_error(
    error: GraphQLError, request_id: str, *, suggestions: bool = True
) -> dict[str, Any]:
    """The one place a GraphQL error becomes what the client sees.

    AppErrors keep their message and code; errors graphql-core raised before
    execution (syntax, validation, variable coercion) keep their message;
    database faults become TIMEOUT / SERVICE_UNAVAILABLE; anything else is
    masked and logged with the request id.
    """
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    code = (error.extensions or {}).get("code")
    if isinstance(original, AppError):
        formatted["message"] = original.message
        code = original.code.value
    elif code is not None:
        pass
    elif original is not None and _caused_by(
        original, {"CharacterNotInRepertoireError", "UntranslatableCharacterError"}
    ):
        formatted["message"] = "Text arguments must not contain NUL characters."
        code = ErrorCode.BAD_USER_INPUT.value
    elif original is None and "tokens. Parsing aborted" in error.message:
        code = ErrorCode.QUERY_TOO_COMPLEX.value
    elif original is None or (
        error.path is None
        and isinstance(original, (GraphQLError, ValueError, TypeError))
        and database_fault(original) is None
    ):
        code = ErrorCode.BAD_USER_INPUT.value
    else:
        fault = database_fault(original)
        if fault is ErrorCode.TIMEOUT:
            formatted["message"] = "The operation took too long and was cancelled."
        elif fault is ErrorCode.SERVICE_UNAVAILABLE:
            formatted["message"] = "The database is unavailable; try again shortly."
        else:
            formatted["message"] = f"Internal server error (request id {request_id})."
            _log.error(
                "unexpected error",
                exc_info=(type(original), original, original.__traceback__),
                extra={"request_id": request_id, "path": error.path},
            )
        code = (fault or ErrorCode.INTERNAL_SERVER_ERROR).value
        if fault is not None:
            _log.warning("database fault: %r", original, extra={"request_id": request_id})
    if not suggestions:  # with introspection off, do not leak the schema through hints
        formatted["message"] = _SUGGESTION.sub("", formatted["message"])
    extensions = dict(formatted.get("extensions") or {})
    extensions["code"] = code
    formatted["extensions"] = extensions
    return formatted
