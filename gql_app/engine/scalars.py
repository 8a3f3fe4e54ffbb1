"""The ``Decimal`` and ``DateTime`` scalars.

``Decimal`` replaces Strawberry's, which also takes JSON numbers
(floats among them, read through their binary value) and whatever Python's
``Decimal()`` reads (" 12.5 ", "1e3", "1_000", "NaN", other scripts' digits).

The contract: "Exact decimal number encoded as a string, e.g. "12.50". Never a
float." So an input is a JSON string (a string literal in a document) in plain
decimal notation: an optional minus sign, the integer digits without leading
zeros, then optionally a point and at least one digit. That is JSON's own number
grammar without the exponent, and the form the server writes its Decimals in,
so a value a client was sent can always be sent back. Anything else ("+1", ".5",
"5.", "007", padding) is refused when the document is validated or its variables
are coerced, before any resolver runs: a GraphQL error coded BAD_USER_INPUT.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import strawberry
from graphql import StringValueNode, ValueNode
from strawberry.schema.types.base_scalars import DateTimeDefinition

DESCRIPTION = 'Exact decimal number encoded as a string, e.g. "12.50". Never a float.'
PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
EXPECTED = 'A Decimal is a string in plain decimal notation, e.g. "12.50"'


def serialize_decimal(value: Decimal) -> str:
    return format(value, "f")  # plain notation, never an exponent


def parse_decimal(value: Any) -> Decimal:
    """A Decimal variable's value: a string in plain decimal notation."""
    if not isinstance(value, str):
        raise ValueError(f"{EXPECTED}, not a JSON {_json_kind(value)}.")
    if PLAIN_DECIMAL.fullmatch(value) is None:
        raise ValueError(f"{EXPECTED}.")
    return Decimal(value)


def parse_decimal_literal(node: ValueNode, _variables: Any = None) -> Decimal:
    """A Decimal written in the document: a string literal, never a number literal."""
    if not isinstance(node, StringValueNode):
        raise ValueError(f"{EXPECTED}: write it in quotes.")
    return parse_decimal(node.value)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object"


DECIMAL = strawberry.scalar(
    name="Decimal",
    description=DESCRIPTION,
    serialize=serialize_decimal,
    parse_value=parse_decimal,
    parse_literal=parse_decimal_literal,
)


def parse_datetime(value: Any) -> datetime:
    """Strawberry's ISO 8601 parsing, and a value PostgreSQL can store: one whose
    offset carries it before year 1 or past year 9999 in UTC
    ("0001-01-01T00:00:00+14:00") would fail in the driver, after BEGIN."""
    parsed: datetime = DateTimeDefinition.parse_value(value)  # type: ignore[misc]
    if parsed.tzinfo is not None:
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f'Value cannot represent a DateTime: "{value}". It is out of range in UTC.'
            ) from None
    return parsed


DATETIME = strawberry.scalar(
    name="DateTime",
    description=DateTimeDefinition.description,
    serialize=datetime.isoformat,
    parse_value=parse_datetime,
)
