"""Nested pages read about the requested rows through the index, not every child.

A user with 100 000 posts asked for ``posts(first: 5)``: the exact statement the
loader sends is run again under EXPLAIN ANALYZE, and the plan must touch only a
handful of post rows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.conftest import scratch_database
from tests.plans import answer_and_plan

POSTS = 100_000
QUERY = """
query($order: PostOrder) { user(username: "prolific") {
  posts(first: 5, orderBy: $order) { nodes { title } pageInfo { hasNextPage } } } }
"""


@pytest.fixture(scope="module")
async def big_app(server_url: str) -> AsyncIterator[tuple[Any, str]]:
    async with scratch_database(server_url, "gql_big") as url:
        raw = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(raw)
        try:
            await conn.execute(
                "INSERT INTO users (username, email, password_hash) VALUES ('prolific', 'p@example.com', 'x'),"
                " ('quiet', 'q@example.com', 'x')"
            )
            await conn.execute(
                f"""INSERT INTO posts (author_id, title, content, published_at, created_at)
                SELECT CASE WHEN i % 1000 = 0 THEN 2 ELSE 1 END, 'title ' || i, 'body',
                       timestamptz '2026-01-01' + i * interval '1 minute',
                       timestamptz '2026-01-01' + i * interval '1 minute'
                FROM generate_series(1, {POSTS}) AS i"""
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        app = create_app(Settings(DATABASE_URL=url, secret_key="test"))
        async with app.router.lifespan_context(app):
            yield app, raw


def rows_read_from(plan: dict[str, Any], table: str) -> int:
    """Rows that scan nodes over ``table`` produced, over all loops."""
    total = 0
    if plan.get("Relation Name") == table:
        total += int(plan["Actual Rows"] * plan["Actual Loops"])
    for child in plan.get("Plans", []):
        total += rows_read_from(child, table)
    return total


@pytest.mark.parametrize(
    "order",
    [
        None,
        {"field": "PUBLISHED_AT", "direction": "DESC"},
        {"field": "CREATED_AT", "direction": "ASC"},
    ],
)
async def test_first_five_of_a_hundred_thousand_posts_reads_about_five_rows(big_app, order):
    app, raw_url = big_app
    body, plan = await answer_and_plan(
        app, raw_url, {"query": QUERY, "variables": {"order": order}}, "LATERAL"
    )
    data = body["data"]["user"]["posts"]
    assert len(data["nodes"]) == 5 and data["pageInfo"]["hasNextPage"] is True

    assert rows_read_from(plan, "posts") <= 6, json.dumps(plan, indent=1)
