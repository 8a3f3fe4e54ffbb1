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


@pytest.mark.parametrize("document", [W1_FEED, W2_PEOPLE, W3_NODE], ids=["W1", "W2", "W3"])
async def test_the_raw_floor_answers_byte_equal_with_the_same_statements(
    gql, world, database_url, sql, document
):
    variables = {"postId": world.gid("Post", world.posts[world.alice][0])}
    body = await gql(document, variables)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    try:
        raw = await raw_floor.answer(conn, document, variables)
    finally:
        await conn.close()
    assert orjson.dumps(without_cursors(raw)) == orjson.dumps(without_cursors(body["data"]))
    assert body["data"] != {"node": None}
    # W3's statement is gql_app's, sent alone: no BEGIN, no ROLLBACK on either side;
    # W1 and W2 keep their transaction
    began = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;" in sent
    if document == W3_NODE:
        assert sql.statements == [raw_floor.POSTS_BY_ID_WITH_AUTHOR]
        assert raw_floor.POSTS_BY_ID_WITH_AUTHOR in sent and not began
    else:
        assert began
