"""Substring searches read the trigram indexes, not the whole table.

Tables big enough for the planner to care (vacuumed and analyzed), a few rows
holding a rare word: the statement the app sends for ``filter: {search: ...}`` is run again
under EXPLAIN ANALYZE, and its plan must find the rows with a Bitmap Index Scan
of each searched column's ``ix_<table>_<column>_trgm`` and never scan the table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gql_app.settings import Settings
from gql_app.users.passwords import token_digest
from gql_app.web.app import create_app
from tests.conftest import scratch_database
from tests.plans import answer_and_plan

ROWS = 50_000
ADMIN_TOKEN = "search-plans-admin"

USERS = """query($search: String!) {
  users(first: 10, filter: {search: $search}) { totalCount nodes { username } } }"""
POSTS = """query($search: String!) {
  posts(first: 10, filter: {search: $search}) { totalCount nodes { title } } }"""
PRODUCTS = """query($search: String!) {
  products(first: 10, filter: {search: $search}) { totalCount nodes { sku } } }"""

# Every 10 000th row holds the rare word; the rows after them hold near misses that
# would match if `%` or `_` in a search were LIKE wildcards.
FILL = [
    f"""INSERT INTO users (username, email, password_hash, is_admin)
    SELECT CASE WHEN i % 10000 = 0 THEN 'zebra' || i ELSE 'user' || i END,
           CASE WHEN i % 10000 = 2 THEN 'walrus' || i ELSE 'mail' || i END || '@example.com',
           'x', i = 1
    FROM generate_series(1, {ROWS}) AS i""",
    """INSERT INTO profiles (user_id, display_name)
    SELECT id, CASE WHEN id % 10000 = 1 THEN 'Quokka ' ELSE 'Person ' END || id FROM users""",
    f"""INSERT INTO auth_tokens (user_id, token_hash, expires_at)
    VALUES (1, '{token_digest(ADMIN_TOKEN)}', now() + interval '1 day')""",
    f"""INSERT INTO posts (author_id, title, content, published_at)
    SELECT 1 + i % 100,
           CASE WHEN i % 10000 = 0 THEN 'The needle ' ELSE 'Title ' END || i,
           'Body ' || i || CASE i % 10000 WHEN 1 THEN ' a needle_x% here'
                                          WHEN 2 THEN ' a needleZxY here' ELSE '' END,
           timestamptz '2026-01-01' + i * interval '1 minute'
    FROM generate_series(1, {ROWS}) AS i""",
    f"""INSERT INTO products (sku, name, price)
    SELECT 'SKU-' || lpad(i::text, 6, '0'),
           CASE WHEN i % 10000 = 0 THEN 'Gizmo ' ELSE 'Product ' END || i, 1
    FROM generate_series(1, {ROWS}) AS i""",
    # Vacuumed as autovacuum would have: the GIN indexes' statistics (and their
    # pending lists, where the inserts above wait) are what the planner costs.
    "VACUUM ANALYZE",
]


@pytest.fixture(scope="module")
async def searched(server_url: str) -> AsyncIterator[tuple[Any, str]]:
    async with scratch_database(server_url, "gql_search") as url:
        raw = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(raw)
        try:
            for statement in FILL:
                await conn.execute(statement)
        finally:
            await conn.close()
        app = create_app(Settings(DATABASE_URL=url, secret_key="test"))
        async with app.router.lifespan_context(app):
            yield app, raw


async def plan_of_search(
    searched: tuple[Any, str], query: str, search: str, token: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer's data, and the EXPLAIN ANALYZE plan of the statement that read it."""
    app, raw_url = searched
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body, plan = await answer_and_plan(
        app, raw_url, {"query": query, "variables": {"search": search}}, "ILIKE", headers
    )
    assert "errors" not in body, body
    return body["data"], plan


def nodes_of(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of the plan tree, subplans included."""
    return [plan] + [node for child in plan.get("Plans", []) for node in nodes_of(child)]


def outline(plan: dict[str, Any], depth: int = 0) -> str:
    """The plan as EXPLAIN's text shows it, in short: node, relation or index, rows."""
    what = plan.get("Index Name") or plan.get("Relation Name") or ""
    line = f"{'  ' * depth}{plan['Node Type']} {what} rows={plan['Actual Rows']}"
    line += f" loops={plan['Actual Loops']} {plan.get('Filter', plan.get('Index Cond', ''))}"
    return "\n".join([line] + [outline(child, depth + 1) for child in plan.get("Plans", [])])


def assert_searched_through(plan: dict[str, Any], table: str, *indexes: str) -> None:
    nodes = nodes_of(plan)
    used = {node.get("Index Name") for node in nodes if node["Node Type"] == "Bitmap Index Scan"}
    shown = "\n" + outline(plan)
    assert set(indexes) <= used, shown
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == table], (
        shown
    )


def names(data: dict[str, Any], field: str, key: str) -> list[str]:
    return sorted(node[key] for node in data[field]["nodes"])


def every(template: str, remainder: int) -> list[str]:
    """``template`` for each row number ``i <= ROWS`` with ``i % 10 000 == remainder``."""
    return sorted(template.format(i) for i in range(1, ROWS + 1) if i % 10_000 == remainder)


@pytest.mark.parametrize(
    ("search", "titles"),
    [
        ("The needle 2", ["The needle 20000"]),
        ("NEEDLE", every("The needle {}", 0) + every("Title {}", 1) + every("Title {}", 2)),
    ],
)
async def test_post_search_reads_the_title_and_content_trigram_indexes(searched, search, titles):
    # When posts are searched for a rare word (in some titles, in some contents)
    data, plan = await plan_of_search(searched, POSTS, search)
    # Then the rows come from both columns' trigram indexes, not a scan of posts
    assert data["posts"]["totalCount"] == len(titles)
    assert set(names(data, "posts", "title")) <= set(titles)
    assert_searched_through(plan, "posts", "ix_posts_title_trgm", "ix_posts_content_trgm")


@pytest.mark.parametrize(
    ("search", "titles"),
    [
        ("needle_x%", every("Title {}", 1)),
        ("needle_x", every("Title {}", 1)),
        ("needle%x", []),
        ("needle_xY", []),
    ],
)
async def test_post_search_keeps_percent_and_underscore_literal_on_the_index(
    searched, search, titles
):
    # When the search holds LIKE wildcards (other rows hold "needleZxY", which they
    # would match as wildcards)
    data, plan = await plan_of_search(searched, POSTS, search)
    # Then they match only themselves, and the index still finds the rows
    assert names(data, "posts", "title") == titles
    assert_searched_through(plan, "posts", "ix_posts_content_trgm")


@pytest.mark.parametrize(
    ("viewer", "search", "usernames", "indexes"),
    [
        (None, "ZEBRA", every("zebra{}", 0), ["ix_users_username_trgm"]),
        (None, "quokka 2", ["user20001"], ["ix_profiles_display_name_trgm"]),
        (None, "walrus", [], ["ix_users_username_trgm", "ix_profiles_display_name_trgm"]),
        (ADMIN_TOKEN, "walrus3", ["user30002"], ["ix_users_email_trgm"]),
    ],
)
async def test_user_search_reads_the_username_display_name_and_email_trigram_indexes(
    searched, viewer, search, usernames, indexes
):
    # When users are searched (by email too for an admin, only)
    data, plan = await plan_of_search(searched, USERS, search, viewer)
    # Then each searched column is read through its trigram index, never a scan
    assert names(data, "users", "username") == usernames
    assert_searched_through(plan, "users", *indexes)
    assert_searched_through(plan, "profiles", "ix_profiles_display_name_trgm")


@pytest.mark.parametrize(
    ("search", "skus"),
    [("gizmo", every("SKU-{:06}", 0)), ("sku-04999", [f"SKU-04999{i}" for i in range(10)])],
)
async def test_product_search_reads_the_name_and_sku_trigram_indexes(searched, search, skus):
    # When products are searched by name or SKU
    data, plan = await plan_of_search(searched, PRODUCTS, search)
    # Then both columns are read through their trigram indexes
    assert names(data, "products", "sku") == skus
    assert_searched_through(plan, "products", "ix_products_name_trgm", "ix_products_sku_trgm")
