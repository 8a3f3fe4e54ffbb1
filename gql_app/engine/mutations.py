"""Mutation fields: ``atomic_mutation`` declares one, the input checks every mutation
shares, and the payloads several domains return.

Each failed check is a ``UserFailure``: the mutation's payload gets it as
``userErrors`` and the field writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, ParamSpec, TypeVar, get_type_hints

import strawberry

from gql_app.data.context import Context, Info
from gql_app.data.transaction import atomic
from gql_app.errors import UserError, UserErrorCode, UserFailure
from gql_app.tracing import sql_origin

P = TypeVar("P")
T = TypeVar("T")
A = ParamSpec("A")


def atomic_mutation(
    body: Callable[[Info, Any], Awaitable[P]], payload: Callable[..., P], **options: Any
) -> Any:
    """The Mutation field for ``body(info, input)``, run by ``transaction.atomic``.

    ``body`` stays a plain function that reads top to bottom; its ``input``
    annotation is the field's input type and ``payload(user_errors=...)`` is what
    a ``UserFailure`` becomes.
    """
    input_type = get_type_hints(body)["input"]

    async def resolve(info: Info, input: Any) -> Any:
        token = sql_origin.set(info)  # names the field's statements in traces
        try:
            return await atomic(
                info.context, lambda: body(info, input), lambda errors: payload(user_errors=errors)
            )
        finally:
            sql_origin.reset(token)

    resolve.__annotations__ = {"info": Info, "input": input_type, "return": payload}
    return strawberry.mutation(resolver=resolve, **options)


@strawberry.type
class Payload:
    """Base of the mutation payloads: ``userErrors``, what a ``UserFailure`` becomes."""

    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class BulkUpdatePayload(Payload):
    """What a set-based update mutation returns (any domain's)."""

    affected_count: int = 0


MAX_AMOUNT = Decimal("1000000000")  # 1e9: far above any real transfer, far below numeric(14,2)


def input_error(field: str, message: str, code: UserErrorCode = UserErrorCode.INVALID) -> UserError:
    """A UserError on ``["input", <field path>]`` (dotted paths: "lines.0.quantity")."""
    return UserError(field=["input", *field.split(".")], message=message, code=code)


def fail(
    field: str | None, message: str, code: UserErrorCode = UserErrorCode.INVALID
) -> UserFailure:
    if field is None:
        return UserFailure(UserError(field=None, message=message, code=code))
    return UserFailure(input_error(field, message, code))


def collect(
    errors: list[UserError], check: Callable[A, T], *args: A.args, **kwargs: A.kwargs
) -> T | None:
    """``check(*args, **kwargs)``, or None with its failure added to ``errors``: a
    mutation reports every bad input field at once (see ``raise_collected``)."""
    try:
        return check(*args, **kwargs)
    except UserFailure as failure:
        errors += failure.errors
        return None


def raise_collected(errors: list[UserError]) -> None:
    """The failure of every collected input error, if there is any."""
    if errors:
        raise UserFailure(*errors)


def text(field: str, value: str, *, max_length: int, min_length: int = 1) -> str:
    """A trimmed string of ``min_length``..``max_length`` characters, without NUL."""
    if "\x00" in value:
        raise fail(field, f"`{field}` must not contain NUL characters.")
    stripped = value.strip()
    if not min_length <= len(stripped) <= max_length:
        raise fail(field, f"`{field}` must be {min_length} to {max_length} characters.")
    return stripped


def amount(field: str, value: Any, *, allow_zero: bool = False) -> Decimal:
    """A positive money amount with at most 2 decimals, at most ``MAX_AMOUNT``."""
    try:
        parsed = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise fail(field, f"`{field}` must be a decimal number.") from None
    if not parsed.is_finite():
        raise fail(field, f"`{field}` must be a finite number.")
    if parsed < 0 or (parsed == 0 and not allow_zero):
        raise fail(field, f"`{field}` must be greater than 0.")
    if parsed > MAX_AMOUNT:
        raise fail(field, f"`{field}` must be at most {MAX_AMOUNT}.")
    if parsed != parsed.quantize(Decimal("0.01")):
        raise fail(field, f"`{field}` takes at most 2 decimals.")
    return parsed.quantize(Decimal("0.01"))


def signed_in(ctx: Context) -> Any:
    if ctx.viewer is None:
        raise fail(None, "You must be signed in.", UserErrorCode.UNAUTHENTICATED)
    return ctx.viewer


def admin(ctx: Context) -> Any:
    viewer = signed_in(ctx)
    if not viewer.is_admin:
        raise fail(None, "Only admins may do this.", UserErrorCode.FORBIDDEN)
    return viewer
