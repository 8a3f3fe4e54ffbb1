"""What a mutation changed, told to every process through PostgreSQL's NOTIFY.

Domain code records ids on the request's ``Events`` (``ctx.events.add(Topic.ORDER,
ids)``, no I/O); ``data.transaction`` drops those of a field that rolled back and
sends the rest in one ``pg_notify`` statement just before COMMIT, so they are
delivered only if the commit succeeds. Payloads carry ids only:
``"<topic>:<id>,<id>,..."``, chunked under PostgreSQL's 8 000-byte limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

CHANNEL = "gql_app_events"
MAX_PAYLOAD_BYTES = 7_900
"""PostgreSQL refuses payloads of 8 000 bytes or more; ids are ASCII, so chars = bytes."""


class Topic(StrEnum):
    COMMENT = "comment"  # a comment was added
    ORDER = "order"  # an order was placed, cancelled or changed status
    TRANSFER = "transfer"  # a transfer was posted
    PRODUCT = "product"  # a product's price or stock changed
    TOKEN = "token"  # a bearer token was revoked (ids of auth_tokens rows)
    USER = "user"  # a user was deactivated (their tokens stop working)


NOTIFY = text(
    f"SELECT pg_notify('{CHANNEL}', p) FROM unnest(CAST(:payloads AS text[])) AS p"
).bindparams(bindparam("payloads", type_=ARRAY(Text)))
"""Every payload of an operation in one statement, sent in array order."""


class MalformedPayload(ValueError):
    """A payload that ``encode`` could not have written (unknown topic, bad ids)."""


class Events:
    """One request's pending events: (topic, id) pairs in the order they were added.

    ``mark()``/``discard(mark)`` let ``transaction.atomic`` drop what a failed field
    added; ``payloads()`` is what the operation sends at commit.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[tuple[Topic, int]] = []

    def add(self, topic: Topic, ids: Iterable[int]) -> None:
        self._pending.extend((topic, pk) for pk in ids)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def mark(self) -> int:
        return len(self._pending)

    def discard(self, mark: int = 0) -> None:
        """Forget every event added since ``mark`` (all of them by default)."""
        del self._pending[mark:]

    def payloads(self) -> list[str]:
        """The pending events encoded: topics in order of first appearance, each
        topic's ids in the order added, duplicates removed."""
        by_topic: dict[Topic, dict[int, None]] = {}
        for topic, pk in self._pending:
            by_topic.setdefault(topic, {})[pk] = None
        return [payload for topic, ids in by_topic.items() for payload in encode(topic, ids)]


def encode(topic: Topic, ids: Iterable[int]) -> list[str]:
    """``"<topic>:<id>,<id>,..."`` payloads, each at most MAX_PAYLOAD_BYTES long."""
    prefix = f"{topic.value}:"
    payloads: list[str] = []
    chunk: list[str] = []
    size = len(prefix)
    for pk in ids:
        part = str(pk)
        if chunk and size + 1 + len(part) > MAX_PAYLOAD_BYTES:
            payloads.append(prefix + ",".join(chunk))
            chunk, size = [], len(prefix)
        size += len(part) + (1 if chunk else 0)
        chunk.append(part)
    if chunk:
        payloads.append(prefix + ",".join(chunk))
    return payloads


def decode(payload: str) -> tuple[Topic, list[int]]:
    """``"order:3,5"`` -> ``(Topic.ORDER, [3, 5])``; MalformedPayload for anything
    ``encode`` does not write (unknown topic, no ids, an id that is not a plain
    non-negative decimal, an oversized payload)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedPayload("payload too long")
    name, colon, body = payload.partition(":")
    try:
        topic = Topic(name)
    except ValueError:
        raise MalformedPayload(f"unknown topic {name[:20]!r}") from None
    parts = body.split(",")
    if not colon or not all(part.isascii() and part.isdigit() for part in parts):
        raise MalformedPayload(f"bad ids in a {topic.value} payload")
    return topic, [int(part) for part in parts]
