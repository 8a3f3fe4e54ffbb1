"""Relay pagination as a client sees it: keyset cursors, page limits, nested pages per parent.

Read-only against the shared ``world``: published posts are ordered by createdAt DESC, id DESC
unless asked otherwise.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from gql_app.content.types import POST_ORDER, PostFilter, PostOrderField
from gql_app.data.pages import Ordering
from gql_app.relay.connection import OrderDirection
from gql_app.relay.cursors import _signature, binding
from gql_app.settings import Settings
from tests.conftest import TaskWatch, close_leaked_sessions, in_use
from tests.factories import World

POSTS_PAGE = """
query PostsPage($first: Int, $after: String, $last: Int, $before: String) {
  posts(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

POSTS_BY_TITLE = """
query PostsByTitle($first: Int) {
  posts(first: $first, orderBy: {field: TITLE, direction: ASC}) { edges { cursor node { id } } }
}
"""

POSTS_AFTER = """
query PostsAfter($after: String) { posts(first: 1, after: $after) { nodes { id } } }
"""

POSTS_BY_TITLE_AFTER = """
query ByTitle($after: String) {
  posts(first: 1, after: $after, orderBy: {field: TITLE}) { nodes { id } }
}
"""

POSTS_NO_ARGS = """
query PostsDefault { posts { edges { node { id } } pageInfo { hasNextPage } } }
"""

POSTS_BOTH_FIRST_AND_LAST = """
query Both { posts(first: 2, last: 2) { nodes { id } } }
"""

USERS_PAGE = """
query UsersPage($first: Int) { users(first: $first) { edges { cursor } } }
"""

USER_POSTS_AFTER = """
query UserPostsAfter($username: String!, $first: Int, $after: String) {
  user(username: $username) {
    posts(first: $first, after: $after) {
      nodes { id }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}
"""

USERS_WITH_FIRST_POSTS = """
query UsersWithPosts {
  users(first: 10) {
    nodes {
      id
      username
      posts(first: 2) { nodes { id } pageInfo { hasNextPage endCursor } }
    }
  }
}
"""

USERS_WITH_LAST_POSTS = """
query UsersWithLastPosts {
  users(first: 6) {
    nodes {
      id
      posts(last: 2) { nodes { id } pageInfo { hasNextPage hasPreviousPage } }
    }
  }
}
"""

FAILING_FIELD_BESIDE_A_LOADED_FIELD = """
query FailingBesideLoaded {
  alice: user(username: "alice") { profile { displayName } }
  orders(first: 5) { totalCount }
}
"""

INTERNALS = ("SELECT", "sqlalchemy", "asyncpg", "Traceback", 'File "', "psycopg", "orjson")


# ---------------------------------------------------------------- helpers


def gids(world: World, pks: list[int]) -> list[str]:
    return [world.gid("Post", pk) for pk in pks]


def published_newest_first(world: World) -> list[int]:
    """Published posts in the default order. Post ids grow with createdAt in the world."""
    return sorted((pk for pks in world.posts.values() for pk in pks), reverse=True)


def visible_newest_first(world: World, viewer: int | None) -> list[int]:
    visible = [pk for pks in world.posts.values() for pk in pks]
    for author, drafts in world.drafts.items():
        if viewer == world.admin or viewer == author:
            visible += drafts
    return sorted(visible, reverse=True)


def edge_ids(connection: dict) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


QUERY_POSTS = ("Query.posts", PostFilter().criteria())  # Query.posts with no filter
NEWEST_FIRST = POST_ORDER.default  # CREATED_AT DESC
BY_TITLE_DESC = POST_ORDER.ordering(
    POST_ORDER.input(field=PostOrderField.TITLE, direction=OrderDirection.DESC)
)


def signed(
    payload: Any,
    settings: Settings,
    ordering: Ordering = NEWEST_FIRST,
    scope: Any = QUERY_POSTS,
    parent: Any = None,
) -> str:
    """A cursor of any payload, signed with the server's secret key as its own are, and
    bound as Query.posts binds them (unless told otherwise): it passes the signature
    check there, so the server's checks of the values are reached."""
    raw = orjson.dumps(payload)
    bound = binding(scope, parent, ordering)
    return f"{encode(raw)}.{_signature(settings.secret_key.encode(), bound, raw)}"


def error_codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


# ---------------------------------------------------------------- forward and backward


async def test_forward_paging_visits_every_published_post_once_newest_first(gql, world):
    # Given the 128 published posts, seen anonymously
    seen: list[str] = []
    pages = []
    after = None
    # When a client follows endCursor with first: 30 until hasNextPage is false
    while True:
        body = await gql(POSTS_PAGE, {"first": 30, "after": after})
        page = body["data"]["posts"]
        pages.append(page)
        seen += edge_ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # Then every post came exactly once, in createdAt DESC, id DESC order
    assert seen == gids(world, published_newest_first(world))
    assert [len(page["edges"]) for page in pages] == [30, 30, 30, 30, 8]
    assert [page["totalCount"] for page in pages] == [128] * 5
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [
        False,
        True,
        True,
        True,
        True,
    ]
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [True, True, True, True, False]
    for page in pages:
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]


async def test_backward_paging_reproduces_the_same_sequence(gql, world):
    # Given the 128 published posts
    seen: list[str] = []
    flags = []
    before = None
    # When a client follows startCursor with last: 30 until hasPreviousPage is false
    while True:
        body = await gql(POSTS_PAGE, {"last": 30, "before": before})
        page = body["data"]["posts"]
        seen = edge_ids(page) + seen
        flags.append((page["pageInfo"]["hasPreviousPage"], page["pageInfo"]["hasNextPage"]))
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    # Then the pages, put back together, are the forward sequence
    assert seen == gids(world, published_newest_first(world))
    assert flags == [(True, False), (True, True), (True, True), (True, True), (False, True)]


async def test_a_page_between_two_cursors(gql, world):
    # Given the cursors of the first ten posts
    first_ten = (await gql(POSTS_PAGE, {"first": 10}))["data"]["posts"]["edges"]
    # When asking for everything after the 2nd and before the 7th
    body = await gql(
        """query Between($after: String, $before: String) {
             posts(first: 10, after: $after, before: $before) { nodes { id } } }""",
        {"after": first_ten[1]["cursor"], "before": first_ten[6]["cursor"]},
    )
    # Then exactly the 3rd to the 6th come back
    assert [node["id"] for node in body["data"]["posts"]["nodes"]] == [
        edge["node"]["id"] for edge in first_ten[2:6]
    ]


# ---------------------------------------------------------------- totalCount


async def test_first_zero_returns_no_edges_but_the_total(gql, world):
    # When asking for zero posts
    body = await gql(POSTS_PAGE, {"first": 0})
    # Then there are no edges, and totalCount still counts every visible post
    assert body["data"]["posts"] == {
        "totalCount": 128,
        "edges": [],
        "pageInfo": {
            "hasNextPage": True,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


@pytest.mark.parametrize(
    ("viewer", "expected_total"),
    [(None, 128), ("alice", 130), ("bob", 130), ("admin", 192)],
)
async def test_total_count_is_the_number_of_visible_posts_and_agrees_with_edges(
    gql, world, viewer, expected_total
):
    # Given a viewer who sees the published posts plus their own drafts (admin: all drafts)
    token = world.tokens[viewer] if viewer else None
    viewer_id = getattr(world, viewer) if viewer else None
    seen: list[str] = []
    totals = set()
    after = None
    # When paging through everything with the biggest page allowed
    while True:
        page = (await gql(POSTS_PAGE, {"first": 100, "after": after}, token=token))["data"]["posts"]
        seen += edge_ids(page)
        totals.add(page["totalCount"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # Then totalCount is the number of posts the edges delivered
    assert totals == {expected_total}
    assert seen == gids(world, visible_newest_first(world, viewer_id))


async def test_cursors_are_stable_while_other_pages_are_read(gql, world):
    # Given the first page of ten
    before = (await gql(POSTS_PAGE, {"first": 10}))["data"]["posts"]
    # When other pages and orderings are read in between
    await gql(POSTS_PAGE, {"first": 5, "after": before["edges"][4]["cursor"]})
    await gql(POSTS_PAGE, {"last": 3, "before": before["edges"][7]["cursor"]})
    await gql(POSTS_BY_TITLE, {"first": 10})
    again = (await gql(POSTS_PAGE, {"first": 10}))["data"]["posts"]
    starting_at_fourth = (
        await gql(POSTS_PAGE, {"first": 3, "after": before["edges"][2]["cursor"]})
    )["data"]["posts"]
    # Then the same items carry the same cursors, whichever page they were read on
    assert again == before
    assert starting_at_fourth["edges"] == before["edges"][3:6]


async def test_default_page_size_is_twenty(gql, world):
    # When neither first nor last is given
    body = await gql(POSTS_NO_ARGS)
    # Then the first twenty posts come, and there are more
    page = body["data"]["posts"]
    assert edge_ids(page) == gids(world, published_newest_first(world)[:20])
    assert page["pageInfo"] == {"hasNextPage": True}


async def test_first_one_hundred_is_allowed(gql, world):
    # Given an admin, who sees all 192 posts
    # When asking for the largest page
    body = await gql(POSTS_PAGE, {"first": 100}, token=world.tokens["admin"])
    # Then exactly one hundred come
    assert len(body["data"]["posts"]["edges"]) == 100
    assert body["data"]["posts"]["pageInfo"]["hasNextPage"] is True


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "variables",
    [{"first": 101}, {"first": -1}, {"last": 101}, {"last": -1}],
    ids=["first-101", "first-minus-1", "last-101", "last-minus-1"],
)
async def test_page_size_out_of_range_is_bad_user_input(gql, world, variables):
    # When a page size outside 0..100 is asked for
    body = await gql(POSTS_PAGE, variables, expect_errors=True)
    # Then the request is refused with BAD_USER_INPUT before execution: no `data` at all
    assert "data" not in body
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_first_and_last_together_are_bad_user_input(gql, world):
    # When both first and last are passed
    body = await gql(POSTS_BOTH_FIRST_AND_LAST, expect_errors=True)
    # Then the request is refused
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def _foreign_cursors(gql) -> dict[str, str]:
    users_cursor = (await gql(USERS_PAGE, {"first": 1}))["data"]["users"]["edges"][0]["cursor"]
    title_cursor = (await gql(POSTS_BY_TITLE, {"first": 1}))["data"]["posts"]["edges"][0]["cursor"]
    return {"users": users_cursor, "title": title_cursor}


@pytest.mark.parametrize(
    "kind",
    [
        "abc",
        "base64-garbage",
        "base64-json-of-another-shape",
        "cursor-from-users",
        "cursor-from-title-ordering",
    ],
)
async def test_malformed_or_foreign_cursor_is_bad_user_input(gql, world, kind):
    # Given a cursor that is not one of Query.posts in its default ordering
    foreign = await _foreign_cursors(gql)
    cursor = {
        "abc": "abc",
        "base64-garbage": encode(b"\x8f\x00\xfe garbage \xff\x10"),
        "base64-json-of-another-shape": encode(b'{"id": 5}'),
        "cursor-from-users": foreign["users"],
        "cursor-from-title-ordering": foreign["title"],
    }[kind]
    # When it is used as `after`
    body = await gql(POSTS_AFTER, {"after": cursor}, expect_errors=True)
    # Then it is BAD_USER_INPUT, and the message tells nothing of the internals
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    message = body["errors"][0]["message"]
    assert not any(word.lower() in message.lower() for word in INTERNALS), message


@pytest.mark.parametrize(
    "payload",
    [
        ["0001-01-01T00:00:00+14:00", 5],
        ["9999-12-31T23:59:59-14:00", 5],
    ],
    ids=["year-1", "year-9999"],
)
async def test_forged_cursor_with_an_out_of_range_timestamp_is_bad_user_input(
    gql, world, settings, sql, payload
):
    # Given a cursor of the right shape, signed with the server's key, whose timestamp
    # is out of range once converted to UTC (a cursor of the same shape with a
    # timestamp in range is accepted: the signature is not what refuses it)
    in_range = ["2026-01-01T00:00:00+00:00", payload[1]]
    assert "errors" not in await gql(POSTS_AFTER, {"after": signed(in_range, settings)})
    cursor = signed(payload, settings)
    sql.reset()
    # When it is used as `after`
    body = await gql(POSTS_AFTER, {"after": cursor}, expect_errors=True)
    # Then the cursor is refused as bad input, not an internal error, before any SQL
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["posts"]
    assert body["errors"][0]["message"].startswith("Invalid cursor ")
    assert sql.statements == []


async def test_forged_title_cursor_with_a_nul_character_is_bad_user_input(
    gql, world, settings, sql
):
    # Given a TITLE cursor, signed with the server's key, whose value holds a NUL
    # character (PostgreSQL text cannot); the same cursor without it is accepted
    clean = signed(["ab", 5], settings, BY_TITLE_DESC)
    assert "errors" not in await gql(POSTS_BY_TITLE_AFTER, {"after": clean})
    cursor = signed(["a\u0000b", 5], settings, BY_TITLE_DESC)
    sql.reset()
    # When it is used with the TITLE ordering it claims
    body = await gql(POSTS_BY_TITLE_AFTER, {"after": cursor}, expect_errors=True)
    # Then the cursor is refused as bad input, before any SQL (PostgreSQL would refuse
    # the NUL too, but only once the statement is sent)
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["posts"]
    assert body["errors"][0]["message"].startswith("Invalid cursor ")
    assert sql.statements == []


SIGNED_BUT_INVALID = {
    # Values for Query.posts in its default ordering (CREATED_AT:DESC, created_at NOT
    # NULL), signed with the server's key and bound as Query.posts binds: each value is
    # refused by its own check in relay/cursors.py (a string id, a number for a
    # timestamp and a short list would be refused without theirs too: the TypeError or
    # ValueError they then cause is caught the same way)
    "id-not-an-integer": ["2026-01-01T00:00:00+00:00", "5"],
    "id-a-boolean": ["2026-01-01T00:00:00+00:00", True],
    "id-zero": ["2026-01-01T00:00:00+00:00", 0],
    "id-beyond-bigint": ["2026-01-01T00:00:00+00:00", 2**63],
    "naive-timestamp": ["2026-01-01T00:00:00", 5],
    "timestamp-not-a-string": [1767225600, 5],
    "null-for-a-non-null-column": [None, 5],
    "three-items": ["2026-01-01T00:00:00+00:00", 5, 6],
    "one-item": ["2026-01-01T00:00:00+00:00"],
    "an-object": {"value": "2026-01-01T00:00:00+00:00", "id": 5},
}


@pytest.mark.parametrize("kind", list(SIGNED_BUT_INVALID))
async def test_a_signed_cursor_with_an_invalid_value_is_refused_before_any_sql(
    gql, world, settings, sql, kind
):
    # Given a cursor the signature check lets through, holding a value the server never issues
    cursor = signed(SIGNED_BUT_INVALID[kind], settings)
    sql.reset()
    # When it is used as `after` on Query.posts
    body = await gql(POSTS_AFTER, {"after": cursor}, expect_errors=True)
    # Then it is refused as an invalid cursor, before any statement is sent
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"].startswith("Invalid cursor ")
    assert sql.statements == []


async def test_cursor_of_query_posts_is_refused_by_user_posts(gql, world):
    # Given a cursor taken from Query.posts (same ordering)
    cursor = (await gql(POSTS_PAGE, {"first": 1}))["data"]["posts"]["edges"][0]["cursor"]
    # When it is used on User.posts
    body = await gql(
        USER_POSTS_AFTER, {"username": "bob", "first": 2, "after": cursor}, expect_errors=True
    )
    # Then it is BAD_USER_INPUT (User.posts is non-null, so the user is null)
    assert body["data"] == {"user": None}
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["user", "posts"]


async def test_a_refused_request_leaves_no_database_work_behind(gql, world, sql, engine):
    # Given a request whose root field fails while a sibling field has a load queued
    tasks = TaskWatch()
    try:
        # When it is answered
        body = await gql(FAILING_FIELD_BESIDE_A_LOADED_FIELD, expect_errors=True)
        statements_at_response = sql.count
        working_at_response = tasks.working()
        await tasks.settle()  # every task the request started has finished
        # Then it is refused, and nothing runs on the database after the response:
        # no task of it left working, no statement, no connection checked out of the pool
        assert body["data"] is None
        assert error_codes(body) == ["UNAUTHENTICATED"]
        assert working_at_response == set()
        assert sql.statements[statements_at_response:] == []
        assert in_use(engine) == 0
    finally:
        await close_leaked_sessions()


# ---------------------------------------------------------------- nested pages per parent


async def test_nested_first_gives_each_user_their_own_first_posts(gql, world):
    # Given the first ten users (admin has no posts, the others four published + two drafts)
    # When each user's first two posts are asked for in one query, anonymously
    body = await gql(USERS_WITH_FIRST_POSTS)
    users = body["data"]["users"]["nodes"]
    # Then each user has their own two newest published posts
    assert [user["id"] for user in users] == [world.gid("User", pk) for pk in world.users[:10]]
    for user, pk in zip(users, world.users[:10], strict=True):
        newest = sorted(world.posts.get(pk, []), reverse=True)[:2]
        assert [node["id"] for node in user["posts"]["nodes"]] == gids(world, newest), user
        assert user["posts"]["pageInfo"]["hasNextPage"] is (pk != world.admin)
    assert users[0]["posts"] == {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


async def test_nested_first_applies_each_viewers_visibility_per_parent(gql, world):
    # Given alice, who also sees her own drafts
    # When the first users' first two posts are asked for by alice
    body = await gql(USERS_WITH_FIRST_POSTS, token=world.tokens["alice"])
    posts_of = {
        user["username"]: [node["id"] for node in user["posts"]["nodes"]]
        for user in body["data"]["users"]["nodes"]
    }
    # Then alice's page holds her two drafts (the newest), the others' their published posts
    assert posts_of["alice"] == gids(world, sorted(world.drafts[world.alice], reverse=True))
    assert posts_of["bob"] == gids(world, sorted(world.posts[world.bob], reverse=True)[:2])
    member = world.users[9]
    assert posts_of["member06"] == gids(world, sorted(world.posts[member], reverse=True)[:2])


@pytest.mark.parametrize("username", ["bob", "member05"])
async def test_nested_end_cursor_continues_that_users_posts(gql, world, username):
    # Given a user's endCursor from the batched users { posts(first: 2) } query
    users = (await gql(USERS_WITH_FIRST_POSTS))["data"]["users"]["nodes"]
    user = next(u for u in users if u["username"] == username)
    pk = world.users[[u["username"] for u in users].index(username)]
    cursor = user["posts"]["pageInfo"]["endCursor"]
    # When the next two of that user's posts are asked for
    body = await gql(USER_POSTS_AFTER, {"username": username, "first": 2, "after": cursor})
    # Then the third and fourth newest come, and that is the end
    posts = body["data"]["user"]["posts"]
    assert [node["id"] for node in posts["nodes"]] == gids(
        world, sorted(world.posts[pk], reverse=True)[2:4]
    )
    assert posts["pageInfo"]["hasNextPage"] is False
    assert posts["pageInfo"]["hasPreviousPage"] is True


async def test_nested_end_cursor_continues_into_published_posts_for_the_author(gql, world):
    # Given alice's endCursor after her two drafts
    first = await gql(
        USER_POSTS_AFTER, {"username": "alice", "first": 2}, token=world.tokens["alice"]
    )
    cursor = first["data"]["user"]["posts"]["pageInfo"]["endCursor"]
    # When she asks for the next two
    body = await gql(
        USER_POSTS_AFTER,
        {"username": "alice", "first": 2, "after": cursor},
        token=world.tokens["alice"],
    )
    # Then her two newest published posts follow, with more after them
    posts = body["data"]["user"]["posts"]
    assert [node["id"] for node in posts["nodes"]] == gids(
        world, sorted(world.posts[world.alice], reverse=True)[:2]
    )
    assert posts["pageInfo"]["hasNextPage"] is True


async def test_nested_last_gives_each_user_their_own_oldest_posts(gql, world):
    # When each of the first six users' last two posts are asked for, anonymously
    body = await gql(USERS_WITH_LAST_POSTS)
    users = body["data"]["users"]["nodes"]
    # Then each user has their own two oldest published posts, still newest first
    for user, pk in zip(users, world.users[:6], strict=True):
        oldest = sorted(world.posts.get(pk, []), reverse=True)[-2:]
        has_posts = pk != world.admin
        assert user["posts"] == {
            "nodes": [{"id": gid} for gid in gids(world, oldest)],
            "pageInfo": {"hasNextPage": False, "hasPreviousPage": has_posts},
        }, user


async def test_an_edited_cursor_is_refused_by_its_signature(gql, world):
    # Given a real cursor, whose payload is then changed to point at another row
    import base64

    body = await gql(POSTS_PAGE, {"first": 1})
    cursor = body["data"]["posts"]["pageInfo"]["endCursor"]
    payload, _, signature = cursor.partition(".")
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    edited_payload = decoded.rsplit(",", 1)[0] + ",1]"
    edited = base64.urlsafe_b64encode(edited_payload.encode()).decode().rstrip("=")
    # When it is sent back with the original signature
    refused = await gql(
        POSTS_PAGE, {"first": 1, "after": f"{edited}.{signature}"}, expect_errors=True
    )
    # Then it is refused, while the untouched cursor still works
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert "errors" not in await gql(POSTS_PAGE, {"first": 1, "after": cursor})


# ---------------------------------------------------------------- cursors bound to their connection

USER_POSTS_PAGE = """
query UserPostsPage($username: String!, $after: String, $filter: PostFilter, $orderBy: PostOrder) {
  user(username: $username) {
    posts(first: 2, after: $after, filter: $filter, orderBy: $orderBy) {
      edges { cursor node { id } }
    }
  }
}
"""

TAG_POSTS_PAGE = """
query TagPostsPage($name: String!, $after: String) {
  tag(name: $name) { posts(first: 2, after: $after) { edges { cursor node { id } } } }
}
"""

FILTERED_POSTS = """
query FilteredPosts($after: String, $filter: PostFilter, $orderBy: PostOrder) {
  posts(first: 2, after: $after, filter: $filter, orderBy: $orderBy) {
    edges { cursor node { id } }
  }
}
"""

PRODUCTS_FROM = """
query ProductsFrom($after: String, $filter: ProductFilter) {
  products(first: 2, after: $after, filter: $filter) { edges { cursor node { sku } } }
}
"""


def second_cursor(connection: dict) -> str:
    return connection["edges"][1]["cursor"]


def node_ids(connection: dict) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def test_a_cursor_of_another_users_posts_is_refused(gql, world, sql):
    # Given a cursor from bob's posts
    bobs = (await gql(USER_POSTS_PAGE, {"username": "bob"}))["data"]["user"]["posts"]
    # When it is used on member05's posts (same connection, filter and ordering)
    sql.reset()
    body = await gql(
        USER_POSTS_PAGE, {"username": "member05", "after": second_cursor(bobs)}, expect_errors=True
    )
    # Then it is BAD_USER_INPUT on that field (non-null, so the user is null), found out
    # before the posts are read: the only statement is the user's
    assert body["data"] == {"user": None}
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["user", "posts"]
    assert body["errors"][0]["message"].startswith("Invalid cursor ")
    assert sql.count == 1
    # while on bob's posts it continues his page
    again = await gql(USER_POSTS_PAGE, {"username": "bob", "after": second_cursor(bobs)})
    expected = gids(world, sorted(world.posts[world.bob], reverse=True)[2:4])
    assert node_ids(again["data"]["user"]["posts"]) == expected


async def test_a_cursor_of_another_tags_posts_is_refused(gql, world):
    alpha = (await gql(TAG_POSTS_PAGE, {"name": "alpha"}))["data"]["tag"]["posts"]
    body = await gql(
        TAG_POSTS_PAGE, {"name": "beta", "after": second_cursor(alpha)}, expect_errors=True
    )
    assert body["data"] == {"tag": None}
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["tag", "posts"]


@pytest.mark.parametrize(
    ("taken_with", "used_with"),
    [
        ({"search": "post 1"}, None),
        (None, {"search": "post 1"}),
        ({"search": "post 1"}, {"search": "post 2"}),
        ({"search": "post 1"}, {"search": "post 1", "published": True}),
        (
            {"publishedAfter": "2020-01-01T00:00:00+00:00"},
            {"publishedAfter": "2020-01-02T00:00:00Z"},
        ),
    ],
    ids=[
        "filtered-to-none",
        "none-to-filtered",
        "another-search",
        "one-more-field",
        "another-date",
    ],
)
async def test_a_cursor_of_another_filter_is_refused(gql, world, sql, taken_with, used_with):
    # Given a cursor from Query.posts with one filter (or none)
    page = (await gql(FILTERED_POSTS, {"filter": taken_with}))["data"]["posts"]
    # When it is used with another filter (or none)
    sql.reset()
    body = await gql(
        FILTERED_POSTS, {"filter": used_with, "after": second_cursor(page)}, expect_errors=True
    )
    # Then it is BAD_USER_INPUT, before any statement
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["posts"]
    assert sql.count == 0


async def test_a_cursor_of_another_filter_is_refused_on_a_nested_connection(gql, world):
    bobs = (await gql(USER_POSTS_PAGE, {"username": "bob"}))["data"]["user"]["posts"]
    body = await gql(
        USER_POSTS_PAGE,
        {"username": "bob", "after": second_cursor(bobs), "filter": {"tag": "alpha"}},
        expect_errors=True,
    )
    assert body["data"] == {"user": None}
    assert error_codes(body) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("taken_with", "used_with"),
    [
        (None, {}),
        ({"search": "post"}, {"search": "post", "published": None}),
        (
            {"publishedAfter": "2020-01-01T00:00:00Z"},
            {"publishedAfter": "2020-01-01T02:00:00+02:00"},
        ),
    ],
    ids=["no-filter-and-empty-filter", "an-explicit-null", "the-same-instant"],
)
async def test_a_cursor_is_accepted_by_an_equal_filter_spelled_otherwise(
    gql, world, taken_with, used_with
):
    # Given a cursor from Query.posts with a filter
    page = (await gql(FILTERED_POSTS, {"filter": taken_with}))["data"]["posts"]
    # When it is used with a filter that means the same
    body = await gql(FILTERED_POSTS, {"filter": used_with, "after": second_cursor(page)})
    # Then it is accepted and continues the same sequence
    expected = await gql(FILTERED_POSTS, {"filter": taken_with, "after": second_cursor(page)})
    assert body == expected
    assert len(body["data"]["posts"]["edges"]) == 2


async def test_a_decimal_filter_binds_by_value(gql, world):
    # Given a cursor from products from 7.50
    page = (await gql(PRODUCTS_FROM, {"filter": {"minPrice": "7.50"}}))["data"]["products"]
    after = second_cursor(page)
    # When it is used from 7.5 (the same number) and from 7.51 (another)
    same = await gql(PRODUCTS_FROM, {"filter": {"minPrice": "7.5"}, "after": after})
    other = await gql(
        PRODUCTS_FROM, {"filter": {"minPrice": "7.51"}, "after": after}, expect_errors=True
    )
    # Then the same number continues the page, another is refused
    assert [edge["node"]["sku"] for edge in same["data"]["products"]["edges"]] == [
        "SKU-004",
        "SKU-005",
    ]
    assert error_codes(other) == ["BAD_USER_INPUT"]


async def test_the_default_ordering_and_the_same_ordering_spelled_out_share_cursors(gql, world):
    page = (await gql(FILTERED_POSTS, {}))["data"]["posts"]
    spelled = {"field": "CREATED_AT", "direction": "DESC"}
    body = await gql(FILTERED_POSTS, {"after": second_cursor(page), "orderBy": spelled})
    assert node_ids(body["data"]["posts"]) == gids(world, published_newest_first(world)[2:4])


@pytest.mark.parametrize(
    "bound_as",
    ["another-connection", "another-parent", "another-filter", "another-ordering", "root"],
)
async def test_only_a_cursor_bound_as_query_posts_binds_passes_its_signature(
    gql, world, settings, sql, bound_as
):
    # Given the same sort values, signed with the server's key, bound as another
    # connection, parent, filter or ordering would bind them (or as Query.posts does)
    values = ["2026-01-01T00:00:00+00:00", 5]
    cursor = {
        "another-connection": lambda: signed(
            values, settings, scope=("User.posts", QUERY_POSTS[1])
        ),
        "another-parent": lambda: signed(values, settings, parent=world.bob),
        "another-filter": lambda: signed(
            values, settings, scope=("Query.posts", PostFilter(published=True).criteria())
        ),
        "another-ordering": lambda: signed(values, settings, BY_TITLE_DESC),
        "root": lambda: signed(values, settings),
    }[bound_as]()
    # When it is used on Query.posts with no filter, in its default ordering
    body = await gql(POSTS_AFTER, {"after": cursor}, expect_errors=True)
    # Then only the cursor bound as Query.posts binds its own is accepted
    if bound_as == "root":
        assert "errors" not in body
    else:
        assert body["data"] is None
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert sql.count == 0


async def test_binding_adds_nothing_to_a_cursors_length(gql, world):
    # A nested, filtered page's cursor carries its sort values and signature only
    bobs = await gql(USER_POSTS_PAGE, {"username": "bob", "filter": {"search": "bob post"}})
    cursor = second_cursor(bobs["data"]["user"]["posts"])
    payload, _, signature = cursor.partition(".")
    values = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert values == [values[0], world.posts[world.bob][-2]] and values[0].endswith("+00:00")
    assert len(signature) == 16
    assert len(cursor) <= 64
