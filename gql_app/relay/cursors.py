"""Opaque keyset cursors, signed with the server's secret key (HMAC).

A cursor is ``base64(payload).base64(hmac)``, its payload the sort values of one
row. The HMAC signs them together with what the cursor is bound to: the
connection (``<ParentType>.<field>``), the parent's key for a nested connection,
the filter and the ordering (``binding``). The binding is not carried in the
cursor, which stays short: the server knows it where a cursor is used and signs
with it again, so a cursor used elsewhere (another parent's page, another
connection, filter or ordering) fails the check exactly as an edited one does,
with BAD_USER_INPUT, before any of it is decoded.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Hashable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gql_app.data.pages import Ordering, SortKey
from gql_app.errors import BadUserInput

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def binding(scope: Hashable, parent: Hashable, ordering: Ordering) -> bytes:
    """What a cursor is bound to, as the bytes its signature covers: ``scope`` (the
    connection and its filter criteria, JSON-serializable: dataclasses, enums,
    dates, times and Decimals included), the parent's key (None at the root) and the
    ordering. Equal criteria give equal bytes: an instant whatever its offset, a
    number whatever its trailing zeros."""
    return orjson.dumps(
        ["cursor", scope, parent, ordering.token],
        default=_canonical,
        option=orjson.OPT_PASSTHROUGH_DATETIME,
    )


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return (value - EPOCH) // MICROSECOND  # exact, and never out of range
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value.normalize())
    raise TypeError(f"a cursor cannot be bound to a {type(value).__name__}")


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode_value(raw: Any, key: SortKey) -> Any:
    if raw is None:
        if not key.nullable:
            raise ValueError("null value")
        return None
    py_type = key.column.type.python_type
    if py_type is datetime:
        if not isinstance(raw, str):
            raise ValueError("not a timestamp")
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
    if py_type is Decimal:
        if not isinstance(raw, str) or len(raw) > 40:
            raise ValueError("not a decimal")
        number = Decimal(raw)
        if not number.is_finite() or abs(number) >= 10**15:
            raise ValueError("decimal out of range")
        return number
    if py_type is int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("not an integer")
        return raw
    if not isinstance(raw, str) or "\x00" in raw:
        raise ValueError("not a string")
    return raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signature(key: bytes, bound: bytes, payload: bytes) -> str:
    # ``bound`` is one JSON array: no other (bound, payload) pair joins to the same bytes
    return _b64(hmac.digest(key, bound + payload, "sha256")[:12])


def encode_cursor(bound: bytes, values: tuple[Any, int], key: bytes) -> str:
    """``base64(payload).base64(hmac)``: opaque, signed with the server's secret key
    over ``bound`` (see ``binding``) and the payload."""
    payload = orjson.dumps([_encode_value(values[0]), values[1]])
    return f"{_b64(payload)}.{_signature(key, bound, payload)}"


def decode_cursor(cursor: str, bound: bytes, ordering: Ordering, key: bytes) -> tuple[Any, int]:
    """The sort values of a cursor issued for ``bound``; BAD_USER_INPUT otherwise."""
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        body, _, signature = cursor.partition(".")
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(signature, _signature(key, bound, payload)):
            raise ValueError("edited, or issued for another connection, parent, filter or ordering")
        raw = orjson.loads(payload)
        if not isinstance(raw, list) or len(raw) != 2:
            raise ValueError("shape")
        value, ident = raw
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 < ident < 2**63:
            raise ValueError("id")
        return _decode_value(value, ordering.key), ident
    except (ValueError, TypeError, binascii.Error, InvalidOperation, orjson.JSONDecodeError):
        raise BadUserInput(
            f"Invalid cursor {cursor[:80]!r}: it does not belong to this connection "
            "(its parent, filter and ordering)."
        ) from None
