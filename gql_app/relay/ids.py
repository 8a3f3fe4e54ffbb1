"""Opaque global IDs (Relay Object Identification): base64url of "Type:pk"."""

from __future__ import annotations

import base64
import binascii

from gql_app.engine.mutations import fail
from gql_app.errors import BadUserInput

MAX_PK = 2**63 - 1


def encode_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def parse_id(global_id: str) -> tuple[str, int]:
    """(type name, number) of a decodable global ID: the one spelling ``encode_id``
    gives "<letters>:<digits>"; BAD_USER_INPUT otherwise. Whether the type exists
    and the number could be a primary key is not asked: see ``decode_id``."""
    try:
        if len(global_id) > 64:
            raise ValueError
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        type_name, _, pk_text = raw.partition(":")
        if not type_name.isascii() or not type_name.isalpha():
            raise ValueError
        if not pk_text.isascii() or not pk_text.isdigit():
            raise ValueError
        pk = int(pk_text)
        if encode_id(type_name, pk) != global_id:
            raise ValueError  # one spelling per object: no "User:01", no stray characters
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise invalid_id(global_id) from None
    return type_name, pk


def decode_id(global_id: str) -> tuple[str, int]:
    """(type name, primary key) of a global ID; BAD_USER_INPUT when malformed or when
    its number could not be a primary key."""
    type_name, pk = parse_id(global_id)
    if not is_pk(pk):
        raise invalid_id(global_id)
    return type_name, pk


def is_pk(number: int) -> bool:
    """Whether ``number`` could be a primary key (a positive bigint)."""
    return 0 < number <= MAX_PK


def invalid_id(global_id: str) -> BadUserInput:
    return BadUserInput(f"Invalid ID: {global_id[:64]!r}.")


def decode_id_of(global_id: str, type_name: str, argument: str = "id") -> int:
    """The primary key of a global ID that must name a ``type_name``."""
    actual, pk = decode_id(global_id)
    if actual != type_name:
        raise BadUserInput(f"Argument {argument!r} must be the ID of a {type_name}.")
    return pk


def input_id(field: str, global_id: str, type_name: str) -> int:
    """The primary key of a mutation's ID input that must name a ``type_name``;
    a user error on ``field`` otherwise."""
    try:
        return decode_id_of(global_id, type_name, field)
    except BadUserInput:
        raise fail(field, f"`{field}` must be the ID of a {type_name}.") from None
