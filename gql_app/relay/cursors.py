"""Opaque keyset cursors, signed with the server's secret key (HMAC).

A cursor is ``base64(payload).base64(hmac)``, its payload the connection's scope,
the ordering and the sort values of one row. An edited or foreign cursor is
refused with BAD_USER_INPUT before any of it is decoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gql_app.data.pages import Ordering, SortKey
from gql_app.errors import BadUserInput


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


def _signature(key: bytes, payload: bytes) -> str:
    return _b64(hmac.new(key, payload, hashlib.sha256).digest()[:12])


def encode_cursor(scope: str, ordering: Ordering, values: tuple[Any, int], key: bytes) -> str:
    """``base64(payload).base64(hmac)``: opaque, and signed with the server's secret key."""
    payload = orjson.dumps([scope, ordering.token, _encode_value(values[0]), values[1]])
    return f"{_b64(payload)}.{_signature(key, payload)}"


def decode_cursor(cursor: str, scope: str, ordering: Ordering, key: bytes) -> tuple[Any, int]:
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        body, _, signature = cursor.partition(".")
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(signature, _signature(key, payload)):
            raise ValueError("not a cursor this server issued")
        raw = orjson.loads(payload)
        if not isinstance(raw, list) or len(raw) != 4:
            raise ValueError("shape")
        got_scope, token, value, ident = raw
        if got_scope != scope or token != ordering.token:
            raise ValueError("cursor of another connection or ordering")
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 < ident < 2**63:
            raise ValueError("id")
        return _decode_value(value, ordering.key), ident
    except (ValueError, TypeError, binascii.Error, InvalidOperation, orjson.JSONDecodeError):
        raise BadUserInput(
            f"Invalid cursor {cursor[:80]!r}: it does not belong to this connection and ordering."
        ) from None
