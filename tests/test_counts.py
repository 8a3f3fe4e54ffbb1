"""Maintained counts (migration 0006): exact after every write path, read for free.

``posts.comment_count``, ``users.post_count``/``published_post_count``,
``tags.published_post_count`` and the striped ``post_totals`` are kept by
statement-level triggers in the writing transaction. Each write below is followed
by ``drift()``: every maintained count against ``count(*)`` recomputed from the
tables. The GraphQL answers are compared with counts computed here from the rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bench.workloads import W1_FEED, W2_PEOPLE
from gql_app.data.db import asyncpg_dsn
from gql_app.relay.ids import decode_id
from gql_app.tools.seed import seed
from tests.conftest import Stack, scratch_database
from tests.documents import W1_FEED_N, W2_PEOPLE_N
from tests.factories import MANY_USERS, TAG_NAMES
from tests.plans import answer_and_plan

DRIFT = """
SELECT
  (SELECT count(*) FROM posts p
   WHERE p.comment_count <> (SELECT count(*) FROM comments c WHERE c.post_id = p.id))
    AS posts_comment_count,
  (SELECT count(*) FROM users u
   WHERE u.post_count <> (SELECT count(*) FROM posts p WHERE p.author_id = u.id))
    AS users_post_count,
  (SELECT count(*) FROM users u
   WHERE u.published_post_count <> (SELECT count(*) FROM posts p
                                    WHERE p.author_id = u.id AND p.published_at IS NOT NULL))
    AS users_published_post_count,
  (SELECT count(*) FROM tags t
   WHERE t.published_post_count <> (SELECT count(*) FROM post_tags l JOIN posts p
                                    ON p.id = l.post_id AND p.published_at IS NOT NULL
                                    WHERE l.tag_id = t.id))
    AS tags_published_post_count,
  (SELECT coalesce(sum(posts), 0) FROM post_totals) - (SELECT count(*) FROM posts)
    AS total_posts,
  (SELECT coalesce(sum(published), 0) FROM post_totals)
    - (SELECT count(*) FROM posts WHERE published_at IS NOT NULL)
    AS total_published
"""
NO_DRIFT = {
    "posts_comment_count": 0,
    "users_post_count": 0,
    "users_published_post_count": 0,
    "tags_published_post_count": 0,
    "total_posts": 0,
    "total_published": 0,
}


async def drift(stack: Stack, conn: AsyncConnection | None = None) -> dict[str, int]:
    """Each maintained count's rows that differ from count(*) (the totals: the difference)."""
    if conn is not None:
        return dict((await conn.execute(text(DRIFT))).one()._mapping)
    async with stack.engine.connect() as own:
        return dict((await own.execute(text(DRIFT))).one()._mapping)


async def scalar(stack: Stack, sql: str, **params: Any) -> Any:
    async with stack.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def run_sql(stack: Stack, *statements: str) -> None:
    async with stack.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


ADD_COMMENT = """
mutation Add($input: AddCommentInput!) {
  addComment(input: $input) { comment { id post { commentCount } } userErrors { code } }
}
"""
CREATE_POST = """
mutation Create($input: CreatePostInput!) {
  createPost(input: $input) {
    post { id commentCount author { postCount } tags { name postCount } }
    userErrors { code }
  }
}
"""
PUBLISH = """
mutation Publish($id: ID!) {
  publishPost(input: {id: $id}) { post { author { postCount } tags { postCount } } userErrors { code } }
}
"""
UPDATE_TAGS = """
mutation Retag($id: ID!, $tags: [String!]) {
  updatePost(input: {id: $id, tags: $tags}) { post { tags { name postCount } } userErrors { code } }
}
"""
DELETE_POST = """
mutation Delete($id: ID!) { deletePost(input: {id: $id}) { deletedPostId userErrors { code } } }
"""
DEACTIVATE = """
mutation { deactivateInactiveUsers(input: {lastLoginBefore: "2100-01-01T00:00:00Z"}) {
  affectedCount userErrors { code } } }
"""
TWO_COMMENTS = """
mutation Two($ok: AddCommentInput!, $bad: AddCommentInput!) {
  ok: addComment(input: $ok) { comment { id } userErrors { code } }
  bad: addComment(input: $bad) { comment { id } userErrors { code } }
}
"""


def gid(stack: Stack, type_name: str, pk: int) -> str:
    return stack.world.gid(type_name, pk)


async def test_the_world_starts_counted_and_the_counts_are_not_zero(stack):
    assert await drift(stack) == NO_DRIFT
    alice = stack.world.alice
    published = stack.world.posts[alice][0]
    assert await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=published) == 4
    assert await scalar(
        stack, "SELECT post_count * 10 + published_post_count FROM users WHERE id = :u", u=alice
    ) == (6 * 10 + 4)
    assert await scalar(stack, "SELECT sum(published) FROM post_totals") == 4 * (2 + MANY_USERS)


async def test_add_comment_counts_it_in_the_same_transaction(stack):
    post = stack.world.posts[stack.world.bob][0]
    before = await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=post)
    body = await stack.gql(
        ADD_COMMENT,
        {"input": {"postId": gid(stack, "Post", post), "body": "counted"}},
        token=stack.world.tokens["alice"],
    )
    # The payload, read after the write in the same transaction, sees the new count
    assert body["data"]["addComment"]["comment"]["post"]["commentCount"] == before + 1
    assert await drift(stack) == NO_DRIFT


async def test_create_publish_retag_and_delete_keep_every_count(stack):
    token = stack.world.tokens["alice"]
    alice_published = await scalar(
        stack, "SELECT published_post_count FROM users WHERE id = :u", u=stack.world.alice
    )
    # A draft with two tags (one of them new)
    body = await stack.gql(
        CREATE_POST,
        {"input": {"title": "t", "content": "c", "tags": ["alpha", "brand-new"]}},
        token=token,
    )
    post = body["data"]["createPost"]["post"]
    assert post["commentCount"] == 0
    assert post["author"]["postCount"] == alice_published  # drafts are not counted
    assert {t["name"]: t["postCount"] for t in post["tags"]}["brand-new"] == 0
    assert await drift(stack) == NO_DRIFT
    # Published: the author and both tags count it
    body = await stack.gql(PUBLISH, {"id": post["id"]}, token=token)
    published = body["data"]["publishPost"]["post"]
    assert published["author"]["postCount"] == alice_published + 1
    assert sorted(t["postCount"] for t in published["tags"])[0] == 1  # brand-new
    assert await drift(stack) == NO_DRIFT
    # Retagged: one tag dropped, two added
    body = await stack.gql(UPDATE_TAGS, {"id": post["id"], "tags": ["beta", "gamma"]}, token=token)
    assert [t["name"] for t in body["data"]["updatePost"]["post"]["tags"]] == ["beta", "gamma"]
    assert await drift(stack) == NO_DRIFT
    # Commented, then deleted: the comments and the links go with it (cascades)
    await stack.gql(ADD_COMMENT, {"input": {"postId": post["id"], "body": "x"}}, token=token)
    body = await stack.gql(DELETE_POST, {"id": post["id"]}, token=token)
    assert body["data"]["deletePost"]["userErrors"] == []
    assert await drift(stack) == NO_DRIFT
    assert (
        await scalar(
            stack, "SELECT published_post_count FROM users WHERE id = :u", u=stack.world.alice
        )
        == alice_published
    )


async def test_a_failing_field_rolls_back_only_its_own_writes(stack):
    post = stack.world.posts[stack.world.alice][1]
    before = await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=post)
    body = await stack.gql(
        TWO_COMMENTS,
        {
            "ok": {"postId": gid(stack, "Post", post), "body": "kept"},
            "bad": {"postId": gid(stack, "Post", post), "body": " "},  # blank: refused
        },
        token=stack.world.tokens["bob"],
    )
    assert body["data"]["ok"]["comment"] is not None
    assert body["data"]["bad"]["userErrors"] != []
    assert (
        await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=post) == before + 1
    )
    assert await drift(stack) == NO_DRIFT


async def test_rolled_back_transactions_and_savepoints_leave_the_counts(stack):
    post = stack.world.posts[stack.world.alice][2]
    insert = (
        f"INSERT INTO comments (post_id, author_id, body) VALUES ({post}, {stack.world.bob}, 'r')"
    )
    before = await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=post)
    async with stack.engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text(insert))
        assert await drift(stack, conn) == NO_DRIFT  # exact inside the transaction too
        savepoint = await conn.begin_nested()
        await conn.execute(text(insert))
        await savepoint.rollback()
        await conn.execute(text(insert))
        assert await drift(stack, conn) == NO_DRIFT
        await transaction.rollback()
    assert await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=post) == before
    assert await drift(stack) == NO_DRIFT


async def test_bulk_statements_do_one_aggregated_update(stack):
    bob = stack.world.bob
    # Many comments in one statement, spread over many posts
    await run_sql(
        stack,
        "INSERT INTO comments (post_id, author_id, body) "
        f"SELECT p.id, {bob}, 'bulk ' || g FROM posts p, generate_series(1, 3) g "
        "WHERE p.published_at IS NOT NULL",
    )
    assert await drift(stack) == NO_DRIFT
    # Every post of a member unpublished, then republished, in single statements
    member = stack.world.users[5]
    await run_sql(stack, f"UPDATE posts SET published_at = NULL WHERE author_id = {member}")
    assert (
        await scalar(stack, "SELECT published_post_count FROM users WHERE id = :u", u=member) == 0
    )
    assert await drift(stack) == NO_DRIFT
    await run_sql(stack, f"UPDATE posts SET published_at = now() WHERE author_id = {member}")
    assert await drift(stack) == NO_DRIFT
    # A post moved to another author, links dropped in bulk, comments deleted in bulk
    post = stack.world.posts[member][0]
    await run_sql(
        stack,
        f"UPDATE posts SET author_id = {bob} WHERE id = {post}",
        f"DELETE FROM post_tags WHERE tag_id = (SELECT id FROM tags WHERE name = '{TAG_NAMES[0]}')",
        "DELETE FROM comments WHERE body LIKE 'bulk %'",
    )
    assert await drift(stack) == NO_DRIFT


async def test_deactivation_and_a_deleted_user_with_everything_they_wrote(stack):
    body = await stack.gql(DEACTIVATE, token=stack.world.tokens["admin"])
    assert body["data"]["deactivateInactiveUsers"]["affectedCount"] > 0
    assert await drift(stack) == NO_DRIFT
    await run_sql(stack, "UPDATE users SET is_active = true")  # the later tests sign in
    # A user's deletion cascades to their posts (and those posts' comments and links)
    # and their comments on other posts
    member = stack.world.users[6]
    assert await scalar(stack, "SELECT count(*) FROM comments WHERE author_id = :u", u=member)
    await run_sql(stack, f"DELETE FROM users WHERE id = {member}")
    assert await drift(stack) == NO_DRIFT


async def test_fifty_concurrent_comments_on_one_post_and_on_many(stack):
    world = stack.world
    target = world.posts[world.alice][3]
    others = [world.posts[user][n % 4] for n, user in enumerate(world.users[8:33])]
    before = await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=target)

    async def add(post: int, token: str) -> dict[str, Any]:
        return await stack.gql(
            ADD_COMMENT, {"input": {"postId": gid(stack, "Post", post), "body": "c"}}, token=token
        )

    tokens = [world.tokens[name] for name in ("alice", "bob", "admin")]
    same = [add(target, tokens[i % 3]) for i in range(50)]
    spread = [add(others[i % len(others)], tokens[i % 3]) for i in range(50)]
    answers = await asyncio.wait_for(asyncio.gather(*same, *spread), timeout=60)
    assert all(a["data"]["addComment"]["userErrors"] == [] for a in answers)
    assert await scalar(stack, "SELECT comment_count FROM posts WHERE id = :p", p=target) == (
        before + 50
    )
    assert await drift(stack) == NO_DRIFT


async def test_concurrent_creates_and_publishes_spread_over_stripes(stack):
    tokens = [stack.world.tokens[name] for name in ("alice", "bob", "admin")]
    create = [
        stack.gql(
            CREATE_POST,
            {
                "input": {
                    "title": f"c{i}",
                    "content": "c",
                    "tags": ["alpha", "zeta"],
                    "publish": True,
                }
            },
            token=tokens[i % 3],
        )
        for i in range(30)
    ]
    answers = await asyncio.wait_for(asyncio.gather(*create), timeout=60)
    assert all(a["data"]["createPost"]["userErrors"] == [] for a in answers)
    assert await drift(stack) == NO_DRIFT
    stripes = await scalar(stack, "SELECT count(*) FROM post_totals WHERE stripe <> 0")
    assert stripes > 1  # different transactions wrote to different rows


# ---------------------------------------------------------------- the answers


@dataclass(frozen=True)
class Row:
    id: int
    author_id: int
    published: bool
    tags: frozenset[str]
    text: str  # title and content, lower-cased


@pytest.fixture
async def rows(stack: Stack) -> AsyncIterator[list[Row]]:
    async with stack.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT p.id, p.author_id, p.published_at IS NOT NULL AS published, "
                "array_remove(array_agg(t.name), NULL) AS tags, "
                "lower(p.title || ' ' || p.content) AS text FROM posts p "
                "LEFT JOIN post_tags l ON l.post_id = p.id LEFT JOIN tags t ON t.id = l.tag_id "
                "GROUP BY p.id"
            )
        )
        yield [Row(r.id, r.author_id, r.published, frozenset(r.tags), r.text) for r in result]


def expected(rows: list[Row], viewer: str, viewer_id: int | None, flt: dict[str, Any]) -> int:
    """How many posts a filter selects for a viewer, counted here from the rows."""

    def visible(row: Row) -> bool:
        return row.published or viewer == "admin" or row.author_id == viewer_id

    def selected(row: Row) -> bool:
        if "published" in flt and row.published != flt["published"]:
            return False
        if "authorId" in flt and row.author_id != flt["authorId"]:
            return False
        if "search" in flt and flt["search"].lower() not in row.text:
            return False
        return "tag" not in flt or flt["tag"] in row.tags

    return sum(1 for row in rows if visible(row) and selected(row))


TOTAL = "query Total($f: PostFilter) { posts(first: 1, filter: $f) { totalCount } }"
USER_TOTALS = """
query UserTotals($id: ID!, $f: PostFilter) {
  node(id: $id) { ... on User { postCount posts(first: 2, filter: $f) { totalCount } } }
}
"""
TAG_TOTALS = (
    "query TagTotals($n: String!) { tag(name: $n) { postCount posts(first: 2) { totalCount } } }"
)
FILTERS = [
    {},
    {"published": True},
    {"published": False},
    {"authorId": "alice"},
    {"authorId": "alice", "published": False},
    {"tag": "beta"},
    {"tag": "beta", "published": True},
    {"tag": "beta", "authorId": "bob"},
    {"search": "ALICE post"},  # counted exactly: no maintained count knows it
    {"search": "post 1", "published": False},
]
VIEWERS = ["anonymous", "alice", "admin"]


def as_variables(stack: Stack, flt: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the filter for GraphQL, the filter for ``expected``): author names made ids."""
    ids = {"alice": stack.world.alice, "bob": stack.world.bob}
    graphql = dict(flt)
    counted = dict(flt)
    if "authorId" in flt:
        graphql["authorId"] = gid(stack, "User", ids[flt["authorId"]])
        counted["authorId"] = ids[flt["authorId"]]
    return graphql, counted


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_total_counts_equal_exact_counts_for_every_viewer(stack, rows, viewer):
    token = stack.world.tokens.get(viewer)
    viewer_id = {"alice": stack.world.alice, "admin": stack.world.admin}.get(viewer)
    for flt in FILTERS:
        graphql, counted = as_variables(stack, flt)
        body = await stack.gql(TOTAL, {"f": graphql}, token=token)
        assert body["data"]["posts"]["totalCount"] == expected(rows, viewer, viewer_id, counted), (
            flt
        )
    for user in (stack.world.alice, stack.world.bob):
        mine = [row for row in rows if row.author_id == user]
        for flt in ({}, {"published": True}, {"published": False}):
            body = await stack.gql(
                USER_TOTALS, {"id": gid(stack, "User", user), "f": flt}, token=token
            )
            node = body["data"]["node"]
            assert node["postCount"] == sum(1 for r in mine if r.published)
            assert node["posts"]["totalCount"] == expected(mine, viewer, viewer_id, flt), flt
    for name in TAG_NAMES:
        body = await stack.gql(TAG_TOTALS, {"n": name}, token=token)
        tagged = sum(1 for r in rows if r.published and name in r.tags)
        assert body["data"]["tag"] == {"postCount": tagged, "posts": {"totalCount": tagged}}


COMMENT_COUNTS = """
query CommentCounts($n: Int) {
  posts(first: $n, orderBy: {field: PUBLISHED_AT, direction: ASC}) { nodes { id commentCount } }
}
"""
EXACT_COMMENT_COUNTS = """
SELECT p.id, (SELECT count(*) FROM comments c WHERE c.post_id = p.id) AS n FROM posts p
WHERE p.published_at IS NOT NULL
"""


async def test_comment_counts_are_read_from_the_rows_without_a_statement(stack, stack_sql):
    async with stack.engine.connect() as conn:
        exact = dict((await conn.execute(text(EXACT_COMMENT_COUNTS))).tuples().all())
    for size in (3, 30):
        stack_sql.reset()
        body = await stack.gql(COMMENT_COUNTS, {"n": size})
        # One statement (the page), whatever the page size: the counts come with the rows
        assert stack_sql.count == 1, stack_sql.statements
        nodes = body["data"]["posts"]["nodes"]
        assert len(nodes) == size
        got = {decode_id(node["id"])[1]: node["commentCount"] for node in nodes}
        assert got == {pk: exact[pk] for pk in got}
        assert any(count > 0 for count in got.values())


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_the_root_total_reads_the_striped_rows_not_the_posts(stack, stack_sql, viewer):
    token = stack.world.tokens.get(viewer)
    for size in (2, 20):
        stack_sql.reset()
        await stack.gql(TOTAL.replace("first: 1", f"first: {size}"), {"f": {}}, token=token)
        statements = [s for s in stack_sql.statements if "FROM posts" in s]
        assert len(statements) == 1
        assert "post_totals" in statements[0]
        assert "count(" not in statements[0]


# ---------------------------------------------------------------- the seed


async def test_the_seed_loads_the_counts_and_leaves_the_triggers_on(server_url):
    async with scratch_database(server_url, "seedcounts") as url:
        await seed(url, 20, progress=False)
        engine = create_async_engine(url)
        try:
            seeded = Stack(None, engine, None, None, None, url)  # type: ignore[arg-type]
            # Then every count is exact, and none is trivially zero
            assert await drift(seeded) == NO_DRIFT
            assert await scalar(seeded, "SELECT sum(published) FROM post_totals") == 160
            assert await scalar(seeded, "SELECT min(comment_count) FROM posts") == 0
            assert await scalar(seeded, "SELECT max(comment_count) FROM posts") > 1
            assert await scalar(seeded, "SELECT sum(published_post_count) FROM tags") > 160
            # And the triggers count the next write
            await run_sql(
                seeded, "INSERT INTO comments (post_id, author_id, body) VALUES (1, 1, 'x')"
            )
            await run_sql(seeded, "UPDATE posts SET published_at = NULL WHERE id < 10")
            assert await drift(seeded) == NO_DRIFT
        finally:
            await engine.dispose()


def scans(plan: dict[str, Any]) -> list[tuple[str, int]]:
    """(relation, rows read) of every scan in a plan."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Relation Name"], plan["Actual Rows"] * plan["Actual Loops"]))
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def test_w1_total_reads_the_stripes_and_w2_totals_read_nothing(stack):
    # W1: the page statement scans posts once (the page); the total reads at most 16 rows
    _, plan = await answer_and_plan(
        stack.app, asyncpg_dsn(stack.url), {"query": W1_FEED}, "post_totals"
    )
    read = scans(plan)
    assert [relation for relation, _ in read].count("posts") == 1, read
    assert [rows <= 16 for relation, rows in read if relation == "post_totals"] == [True]
    # W2: the per-user post pages carry no count at all
    _, plan = await answer_and_plan(
        stack.app, asyncpg_dsn(stack.url), {"query": W2_PEOPLE}, "LATERAL"
    )
    assert [relation for relation, _ in scans(plan)] == ["posts"]


@pytest.mark.parametrize(("document", "expected"), [(W1_FEED_N, 6), (W2_PEOPLE_N, 3)])
async def test_w1_and_w2_statements_do_not_grow_with_page_size(gql, world, sql, document, expected):
    # On the shared read-only world (the stack's newest posts changed above).
    # W1: the page with its total, authors, tags, comment pages, profiles, comment
    # authors (no comment counts); W2: users, their post pages, tags (no post counts,
    # no totals)
    counts = []
    for size in (2, 10):
        sql.reset()
        body = await gql(document, {"n": size})
        assert body["data"]
        counts.append(sql.count)
    assert counts == [expected, expected], sql.statements
