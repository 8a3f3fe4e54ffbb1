"""The raw floor (bench/raw_floor.py) answers W1-W3 as gql_app does, with its own
hand-written copies of gql_app's statements: they must change together."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from bench import raw_floor
from bench.workloads import W1_FEED, W2_PEOPLE, W3_NODE
from gql_app.data.db import asyncpg_dsn


def without_cursors(value: Any) -> Any:
    """The answer without cursors: they are signed with another key here."""
    if isinstance(value, dict):
        return {k: without_cursors(v) for k, v in value.items() if k != "cursor"}
    if isinstance(value, list):
        return [without_cursors(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("document", "handler"),
    [(W1_FEED, raw_floor.feed), (W2_PEOPLE, raw_floor.people), (W3_NODE, raw_floor.node)],
    ids=["W1", "W2", "W3"],
)
async def test_the_raw_floor_answers_byte_equal(gql, world, database_url, document, handler):
    variables = {"postId": world.gid("Post", world.posts[world.alice][0])}
    body = await gql(document, variables)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            raw = await handler(conn, variables)
    finally:
        await conn.close()
    assert orjson.dumps(without_cursors(raw)) == orjson.dumps(without_cursors(body["data"]))
    assert body["data"] != {"node": None}
