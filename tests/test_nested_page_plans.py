"""Every nested page reads about page-size rows through an index, for a parent with
100 000 children: each connection, ordering, direction, visibility and window.

One module-scoped database: a user ``author`` with 100 000 posts (drafts at both
ends of every ordering: ids up to 25 000 and above 75 000), all tagged ``big``,
100 000 comments (on one published post of ``other``), 100 000 orders and an
account with 100 000 transfers in and out. Each case sends the real GraphQL query,
checks the answer against the order computed here, then runs the page statement
the app sent again under EXPLAIN (ANALYZE, BUFFERS) with the same parameters: the
rows read from the children's table (rows returned plus rows filtered out, over
all loops) stay within a few of the page size, with no sort of the children and
no sequential or bitmap scan of them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gql_app.relay.ids import encode_id, parse_id
from gql_app.settings import Settings
from gql_app.users.passwords import token_digest
from gql_app.web.app import create_app
from tests.conftest import scratch_database
from tests.plans import answer_and_plan

N = 100_000
PAGE = 5
SLACK = 3  # rows read beyond the page: the look-ahead row, a merge's other side
BUFFERS = 200  # shared buffers touched by a page statement (the children fill thousands)
DISCUSSED = N + 1  # the post (by ``other``) carrying the 100 000 comments
OWN_DRAFT = N + 2  # ``other``'s draft
VIEWERS = ("author", "other", "admin", "few_drafts", "few_published")  # users 1-5
FEW_DRAFTS = N + 3  # the first of few_drafts' posts: all published but the last two
FEW_PUBLISHED = 2 * N + 3  # the first of few_published's: all drafts but the first two

SETUP = f"""
INSERT INTO users (username, email, password_hash, is_admin) VALUES
  ('author', 'author@example.com', 'x', false), ('other', 'other@example.com', 'x', false),
  ('admin', 'admin@example.com', 'x', true);
INSERT INTO posts (author_id, title, content, published_at, created_at)
SELECT 1, 'post ' || lpad(i::text, 6, '0'), 'body',
       CASE WHEN i <= {N // 4} OR i > {3 * N // 4} THEN NULL
            ELSE timestamptz '2026-01-01' + i * interval '1 minute' + interval '30 seconds' END,
       timestamptz '2026-01-01' + i * interval '1 minute'
FROM generate_series(1, {N}) AS i;
INSERT INTO posts (author_id, title, content, published_at, created_at)
VALUES (2, 'discussed', 'body', timestamptz '2025-12-31', timestamptz '2025-12-31'),
       (2, 'own draft', 'body', NULL, timestamptz '2025-12-30');
INSERT INTO users (username, email, password_hash) VALUES
  ('few_drafts', 'few_drafts@example.com', 'x'), ('few_published', 'few_published@example.com', 'x');
INSERT INTO posts (author_id, title, content, published_at, created_at)
SELECT 4, 'mostly published', 'body',
       CASE WHEN i > {N - 2} THEN NULL
            ELSE timestamptz '2026-01-01' + i * interval '1 minute' + interval '30 seconds' END,
       timestamptz '2026-01-01' + i * interval '1 minute'
FROM generate_series(1, {N}) AS i;
INSERT INTO posts (author_id, title, content, published_at, created_at)
SELECT 5, 'mostly drafts', 'body',
       CASE WHEN i <= 2
            THEN timestamptz '2026-01-01' + i * interval '1 minute' + interval '30 seconds' END,
       timestamptz '2026-01-01' + i * interval '1 minute'
FROM generate_series(1, {N}) AS i;
INSERT INTO tags (name) VALUES ('big');
INSERT INTO post_tags (post_id, tag_id, published_at, created_at, title)
SELECT id, 1, published_at, created_at, title FROM posts WHERE author_id = 1;
INSERT INTO comments (post_id, author_id, body, created_at)
SELECT {DISCUSSED}, 1, 'comment', timestamptz '2026-01-01' + i * interval '1 minute'
FROM generate_series(1, {N}) AS i;
INSERT INTO orders (customer_id, status, created_at)
SELECT 1, 'PAID', timestamptz '2026-01-01' + i * interval '1 minute'
FROM generate_series(1, {N}) AS i;
INSERT INTO accounts (owner_id) VALUES (1), (2);
INSERT INTO transfers (from_account_id, to_account_id, amount, created_at)
SELECT CASE WHEN i % 2 = 0 THEN 1 ELSE 2 END, CASE WHEN i % 2 = 0 THEN 2 ELSE 1 END, 1,
       timestamptz '2026-01-01' + i * interval '1 minute'
FROM generate_series(1, {N}) AS i;
"""

BIG_TABLES = ("posts", "post_tags", "comments", "orders", "transfers")
SECONDARY_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS ddl
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname = ANY($1::text[]) AND NOT i.indisprimary AND NOT i.indisunique
"""

WINDOW = "first: $first, last: $last, after: $after, before: $before"
VARIABLES = "$first: Int, $last: Int, $after: String, $before: String"
PAGE_FIELDS = "nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
USER_POSTS = f"""query({VARIABLES}, $order: PostOrder) {{ user(username: "author") {{
  posts({WINDOW}, orderBy: $order) {{ {PAGE_FIELDS} }} }} }}"""
TAG_POSTS = f"""query({VARIABLES}, $order: PostOrder) {{ tag(name: "big") {{
  posts({WINDOW}, orderBy: $order) {{ {PAGE_FIELDS} }} }} }}"""
POST_COMMENTS = f"""query({VARIABLES}, $order: CommentOrder) {{
  post(id: "{encode_id("Post", DISCUSSED)}") {{
  comments({WINDOW}, orderBy: $order) {{ {PAGE_FIELDS} }} }} }}"""
USER_COMMENTS = f"""query({VARIABLES}) {{ user(username: "author") {{
  comments({WINDOW}) {{ {PAGE_FIELDS} }} }} }}"""
USER_ORDERS = f"""query({VARIABLES}, $order: OrderOrder) {{ user(username: "author") {{
  orders({WINDOW}, orderBy: $order) {{ {PAGE_FIELDS} }} }} }}"""
ACCOUNT_TRANSFERS = f"""query({VARIABLES}) {{ user(username: "author") {{
  accounts {{ transfers({WINDOW}) {{ {PAGE_FIELDS} }} }} }} }}"""


def is_draft(i: int) -> bool:
    return i <= N // 4 or i > 3 * N // 4


def post_order(field: str, desc: bool, published_only: bool) -> list[int]:
    """The author's post ids in the order asked (publishedAt: drafts last either way)."""
    ids = [i for i in range(1, N + 1) if not (published_only and is_draft(i))]
    if field != "PUBLISHED_AT":  # created_at and title both rise with the id
        return ids[::-1] if desc else ids
    published = [i for i in ids if not is_draft(i)]
    drafts = [i for i in ids if is_draft(i)]
    return published[::-1] + drafts[::-1] if desc else published + drafts


def by_id(desc: bool) -> list[int]:
    ids = list(range(1, N + 1))
    return ids[::-1] if desc else ids


Case = tuple[str, str, Callable[[], list[int]], tuple[str, ...], str | None, dict[str, Any]]
"""(name, document, expected ids, tables read, viewer, extra variables)"""


def cases() -> list[Any]:
    found: list[Any] = []

    def add(
        name: str,
        doc: str,
        order: Callable[[], list[int]],
        tables: tuple[str, ...],
        viewer: str | None,
        variables: dict[str, Any],
    ) -> None:
        found.append(pytest.param(doc, order, tables, viewer, variables, id=f"{name}-{viewer}"))

    for field in ("CREATED_AT", "PUBLISHED_AT", "TITLE"):
        for direction in ("ASC", "DESC"):
            order = {"order": {"field": field, "direction": direction}}
            desc = direction == "DESC"
            for viewer in (None, *VIEWERS):
                everything = viewer in ("author", "admin")  # the author's own drafts
                add(
                    f"User.posts-{field}-{direction}",
                    USER_POSTS,
                    lambda f=field, d=desc, e=everything: post_order(f, d, not e),
                    ("posts",),
                    viewer,
                    order,
                )
            for viewer in (None, "author"):  # published posts only, for everyone
                add(
                    f"Tag.posts-{field}-{direction}",
                    TAG_POSTS,
                    lambda f=field, d=desc: post_order(f, d, True),
                    ("post_tags", "posts"),
                    viewer,
                    order,
                )
    for direction in ("ASC", "DESC"):
        desc = direction == "DESC"
        add(
            f"Post.comments-CREATED_AT-{direction}",
            POST_COMMENTS,
            lambda d=desc: by_id(d),
            ("comments",),
            None,
            {"order": {"field": "CREATED_AT", "direction": direction}},
        )
        for viewer in ("author", "admin"):
            add(
                f"User.orders-CREATED_AT-{direction}",
                USER_ORDERS,
                lambda d=desc: by_id(d),
                ("orders",),
                viewer,
                {"order": {"field": "CREATED_AT", "direction": direction}},
            )
    for viewer in (None, "other", "admin"):
        add(
            "User.comments-CREATED_AT-ASC",
            USER_COMMENTS,
            lambda: by_id(False),
            ("comments",),
            viewer,
            {},
        )
    for viewer in ("author", "admin"):
        add(
            "Account.transfers-CREATED_AT-DESC",
            ACCOUNT_TRANSFERS,
            lambda: by_id(True),
            ("transfers",),
            viewer,
            {},
        )
    return found


@pytest.fixture(scope="module")
async def big_app(server_url: str) -> AsyncIterator[tuple[Any, str]]:
    async with scratch_database(server_url, "gql_nested") as url:
        raw = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(raw)
        try:
            # bulk load, then build the indexes once (as the seed does)
            indexes = await conn.fetch(SECONDARY_INDEXES, list(BIG_TABLES))
            for index in indexes:
                await conn.execute(f"DROP INDEX {index['name']}")
            await conn.execute(SETUP)
            for index in indexes:
                await conn.execute(index["ddl"])
            expires = datetime.now(UTC) + timedelta(days=1)
            for user_id, name in enumerate(VIEWERS, start=1):
                await conn.execute(
                    "INSERT INTO auth_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
                    user_id,
                    token_digest(f"token-{name}"),
                    expires,
                )
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        app = create_app(Settings(DATABASE_URL=url, secret_key="test"))
        async with app.router.lifespan_context(app):
            yield app, raw


def connection_of(data: dict[str, Any]) -> dict[str, Any]:
    """The one connection in an answer, whatever path leads to it."""
    (node,) = data.values()
    while "nodes" not in node:
        node = node[0] if isinstance(node, list) else next(iter(node.values()))
    return node


def scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += scans(child)
    return nodes


def rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows the scans of ``table`` produced or filtered out, over all loops."""
    return sum(
        int(
            (
                node["Actual Rows"]
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            * node["Actual Loops"]
        )
        for node in scans(plan)
        if node.get("Relation Name") == table
    )


def sorted_under_a_limit(plan: dict[str, Any], limited: bool = False) -> list[int]:
    """The rows each Sort inside a LIMITed page sorted: more than a page means the
    children were sorted rather than read in index order. (A sort of the few rows an
    index condition already bounds, e.g. ``id > :cursor`` near the end, is the
    planner's cheaper choice and reads no more.)"""
    found = []
    if limited and "Sort" in plan["Node Type"]:
        found.append(int(sum(c["Actual Rows"] * c["Actual Loops"] for c in plan["Plans"])))
    limited = limited or plan["Node Type"] == "Limit"
    for child in plan.get("Plans", []):
        found += sorted_under_a_limit(child, limited)
    return found


async def page(
    app: Any, raw: str, doc: str, viewer: str | None, variables: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"Authorization": f"Bearer token-{viewer}"} if viewer else {}
    body, plan = await answer_and_plan(
        app, raw, {"query": doc, "variables": variables}, "LATERAL", headers
    )
    assert "errors" not in body, body
    return connection_of(body["data"]), plan


def ids_of(conn: dict[str, Any]) -> list[int]:
    return [parse_id(node["id"])[1] for node in conn["nodes"]]


def assert_bounded(plan: dict[str, Any], tables: tuple[str, ...]) -> None:
    shown = json.dumps(plan, indent=1)
    for table in tables:
        assert rows_read(plan, table) <= PAGE + SLACK, (table, shown)
        kinds = {n["Node Type"] for n in scans(plan) if n.get("Relation Name") == table}
        assert kinds <= {"Index Scan", "Index Only Scan"}, (table, kinds, shown)
    assert all(rows <= PAGE + SLACK for rows in sorted_under_a_limit(plan)), shown
    touched = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    assert touched <= BUFFERS, (touched, shown)


@pytest.mark.parametrize(("doc", "order", "tables", "viewer", "extra"), cases())
async def test_first_and_last_pages_read_a_page_of_rows(big_app, doc, order, tables, viewer, extra):
    app, raw = big_app
    expected = order()

    first, plan = await page(app, raw, doc, viewer, {**extra, "first": PAGE})
    assert ids_of(first) == expected[:PAGE]
    assert first["pageInfo"]["hasNextPage"] is True
    assert_bounded(plan, tables)

    last, plan = await page(app, raw, doc, viewer, {**extra, "last": PAGE})
    assert ids_of(last) == expected[-PAGE:]
    assert last["pageInfo"]["hasPreviousPage"] is True
    assert_bounded(plan, tables)


@pytest.mark.parametrize(("doc", "order", "tables", "viewer", "extra"), cases())
async def test_pages_after_and_before_a_far_cursor_read_a_page_of_rows(
    big_app, doc, order, tables, viewer, extra
):
    # Given the cursors at both ends of the children (all but 5 before or after them)
    app, raw = big_app
    expected = order()
    first, _ = await page(app, raw, doc, viewer, {**extra, "first": PAGE})
    last, _ = await page(app, raw, doc, viewer, {**extra, "last": PAGE})

    # When the pages after the last page's start and before the first page's end are read
    tail, tail_plan = await page(
        app, raw, doc, viewer, {**extra, "first": PAGE, "after": last["pageInfo"]["startCursor"]}
    )
    head, head_plan = await page(
        app, raw, doc, viewer, {**extra, "last": PAGE, "before": first["pageInfo"]["endCursor"]}
    )

    # Then they hold the 4 children beyond the cursor, and read no further than them
    assert ids_of(tail) == expected[-PAGE + 1 :]
    assert tail["pageInfo"]["hasNextPage"] is False
    assert ids_of(head) == expected[: PAGE - 1]
    assert head["pageInfo"]["hasPreviousPage"] is False
    assert_bounded(tail_plan, tables)
    assert_bounded(head_plan, tables)


EVERYONES_POSTS = """{ users(first: 3) { nodes { username posts(first: 2) { nodes { id } } } } }"""


async def test_one_statement_shows_the_viewer_their_drafts_and_others_their_published_posts(
    big_app,
):
    # Given ``other`` signed in, and the posts of three users asked for in one page
    app, raw = big_app
    body, plan = await answer_and_plan(
        app, raw, {"query": EVERYONES_POSTS}, "LATERAL", {"Authorization": "Bearer token-other"}
    )

    # Then ``other`` sees their own draft, only the author's published posts
    pages = {user["username"]: user["posts"] for user in body["data"]["users"]["nodes"]}
    assert {name: ids_of(conn) for name, conn in pages.items()} == {
        "author": [3 * N // 4, 3 * N // 4 - 1],
        "other": [DISCUSSED, OWN_DRAFT],
        "admin": [],
    }
    # And the one statement read the published part for the author, all for ``other``
    assert rows_read(plan, "posts") <= 2 * (2 + 1) + 1, json.dumps(plan, indent=1)


EDGE_POSTS = f"""query({VARIABLES}, $name: String!, $order: PostOrder) {{
  user(username: $name) {{ posts({WINDOW}, orderBy: $order) {{ {PAGE_FIELDS} }} }} }}"""


@pytest.mark.parametrize("viewer", ["admin", "self"])
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_a_cursor_deep_among_published_posts_or_drafts_bounds_an_index_range(
    big_app, direction, viewer
):
    # publishedAt with drafts shown: past a cursor, the posts with a date and the
    # drafts (NULL, last either way) are two index ranges, not an OR left to a filter
    app, raw = big_app
    order = {"field": "PUBLISHED_AT", "direction": direction}

    def in_order(published: list[int], drafts: list[int]) -> list[int]:
        return published + drafts if direction == "ASC" else published[::-1] + drafts[::-1]

    # few_drafts: the last page starts on a published post; the page after it
    name = "few_drafts"
    who = name if viewer == "self" else viewer
    ids = list(range(FEW_DRAFTS, FEW_DRAFTS + N))
    expected = in_order(ids[:-2], ids[-2:])
    last, _ = await page(app, raw, EDGE_POSTS, who, {"name": name, "order": order, "last": PAGE})
    start = last["pageInfo"]["startCursor"]
    tail, plan = await page(
        app, raw, EDGE_POSTS, who, {"name": name, "order": order, "first": PAGE, "after": start}
    )
    assert ids_of(tail) == expected[-PAGE + 1 :]
    assert_bounded(plan, ("posts",))

    # few_published: the first page ends on a draft; the page before it
    name = "few_published"
    who = name if viewer == "self" else viewer
    ids = list(range(FEW_PUBLISHED, FEW_PUBLISHED + N))
    expected = in_order(ids[:2], ids[2:])
    first, _ = await page(app, raw, EDGE_POSTS, who, {"name": name, "order": order, "first": PAGE})
    end = first["pageInfo"]["endCursor"]
    head, plan = await page(
        app, raw, EDGE_POSTS, who, {"name": name, "order": order, "last": PAGE, "before": end}
    )
    assert ids_of(head) == expected[: PAGE - 1]
    assert_bounded(plan, ("posts",))
