"""Every loader-backed field path costs one statement, whatever the page size.

Each query shape runs at two page sizes; the statement count is exact and equal
for both (anonymous requests: no statement for authentication).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.documents import DEEP, W1_FEED_N, W2_PEOPLE_N
from tests.factories import MANY_USERS, TAG_NAMES

TAGS = """
query Tags($n: Int) {
  tags(first: $n) { nodes { name postCount posts(first: $n) { totalCount nodes { title } } } }
}
"""

PRODUCTS = """
query Products($n: Int) { products(first: $n) { totalCount nodes { sku unitsSold } } }
"""

USER_COMMENTS = """
query UserComments($n: Int) {
  users(first: $n) { nodes { comments(first: $n) { totalCount nodes { body post { title } } } } }
}
"""

BACKWARD = """
query Backward($n: Int) {
  users(last: $n) { nodes { posts(last: $n, orderBy: {field: TITLE}) { nodes { title } } } }
}
"""

ADMIN_COMMERCE = """
query AdminCommerce($n: Int) {
  users(first: $n) { nodes {
    orders(first: 5) { totalCount nodes { status total itemCount items { quantity subtotal product { sku } } } }
    orderStats { orderCount totalSpent averageOrderValue }
    accounts { currency transfers(first: 3) { totalCount nodes { amount } } }
  } }
}
"""

FRAGMENTS = """
fragment PostBits on Post { title author { username } }
query Fragments($n: Int) {
  posts(first: $n) { ...on PostConnection { totalCount } nodes { ...PostBits tags { name } } }
}
"""

CASES = [
    # (query, expected statements, admin?) — one per root field and distinct nested path
    pytest.param(W1_FEED_N, 6, False, id="W1-feed"),
    pytest.param(W2_PEOPLE_N, 3, False, id="W2-people"),
    pytest.param(DEEP, 5, False, id="users-posts-comments-author-profile"),
    pytest.param(TAGS, 2, False, id="tags-postCount-posts"),
    pytest.param(PRODUCTS, 2, False, id="products-unitsSold"),
    pytest.param(USER_COMMENTS, 3, False, id="user-comments-post"),
    pytest.param(BACKWARD, 2, False, id="backward-pages"),
    pytest.param(ADMIN_COMMERCE, 1 + 9, True, id="orders-stats-accounts-transfers"),
    pytest.param(FRAGMENTS, 3, False, id="fragments"),
]


@pytest.mark.parametrize(("query", "expected", "as_admin"), CASES)
async def test_statement_count_does_not_grow_with_page_size(
    gql, world, sql, query, expected, as_admin
):
    token = world.tokens["admin"] if as_admin else None
    counts = []
    for size in (2, 10):
        sql.reset()
        body = await gql(query, {"n": size}, token=token)
        assert body["data"]
        counts.append(sql.count)
    assert counts == [expected, expected], sql.statements


async def test_many_parents_are_one_statement_per_path(gql, world, sql):
    # Given all 33 users, each with their own posts
    # When every user's first post page is read with comment counts
    body = await gql(W2_PEOPLE_N, {"n": 33})
    # Then 3 statements served 33 users' pages (the counts are columns of the rows)
    assert sql.count == 3
    assert len(body["data"]["users"]["nodes"]) == 33


async def test_fifty_thousand_keys_fit_in_one_statement(app, world):
    # Keys travel as one array parameter: far beyond asyncpg's 32 767 bind limit.
    from gql_app.commerce.loaders import ItemCountByOrderIdLoader
    from gql_app.data.context import Context

    ctx = Context(
        request=None,
        settings=app.state.settings,
        sessionmaker=app.state.sessionmaker,
    )
    async with app.state.sessionmaker() as session:
        ctx.open_db(session)
        loader = ctx.loaders.get(ItemCountByOrderIdLoader)
        keys = list(range(1, 50_001))
        counts = await loader.load_many(keys)
    some_order = world.orders[world.alice][0]  # 2 x 5.50 + 6.50: two items
    assert len(counts) == 50_000
    assert counts[some_order - 1] == 2
    assert counts[-1] == 0


async def test_many_loaders_in_one_tick_share_the_session_safely(app, world):
    from gql_app.commerce.loaders import (
        ItemCountByOrderIdLoader,
        OrderTotalByOrderIdLoader,
        ProductByIdLoader,
    )
    from gql_app.content.loaders import PostByIdLoader, TagsByPostIdLoader
    from gql_app.data.context import Context
    from gql_app.users.loaders import ProfileByUserIdLoader, UserByIdLoader

    # Given one request context, and for seven loaders the keys of their rows in the world
    alice_posts = world.posts[world.alice] + world.drafts[world.alice]  # alice post 0..5
    orders = world.orders[world.alice] + world.orders[world.bob]
    keys = {
        UserByIdLoader: world.users,
        ProfileByUserIdLoader: world.users,
        PostByIdLoader: alice_posts,
        TagsByPostIdLoader: alice_posts,
        ItemCountByOrderIdLoader: orders,
        ProductByIdLoader: world.products,
        OrderTotalByOrderIdLoader: orders,
    }
    ctx = Context(
        request=None,
        settings=app.state.settings,
        sessionmaker=app.state.sessionmaker,
    )
    # When every load of every loader fires at once, in one tick, on the one session
    async with app.state.sessionmaker() as session:
        ctx.open_db(session)
        results = iter(
            await asyncio.gather(
                *(ctx.loaders.get(cls).load(key) for cls, ks in keys.items() for key in ks)
            )
        )
    got = {cls: [next(results) for _ in ks] for cls, ks in keys.items()}
    # Then none failed ("another operation is in progress"), and each load got its own rows
    names = ["admin", "alice", "bob", *(f"member{i:02d}" for i in range(MANY_USERS))]
    assert [user.username for user in got[UserByIdLoader]] == names
    assert [profile.display_name for profile in got[ProfileByUserIdLoader]] == [
        f"{name.title()} Display" for name in names
    ]
    assert [post.title for post in got[PostByIdLoader]] == [f"alice post {n}" for n in range(6)]
    assert [[tag.name for tag in tags] for tags in got[TagsByPostIdLoader]] == [
        sorted(TAG_NAMES[(n + k * 3) % len(TAG_NAMES)] for k in range(1 + n % 3)) for n in range(6)
    ]
    assert got[ItemCountByOrderIdLoader] == [2, 1, 1, 3]
    assert [product.sku for product in got[ProductByIdLoader]] == [
        f"SKU-{i:03d}" for i in range(12)
    ]
    assert got[OrderTotalByOrderIdLoader] == [
        Decimal("17.50"),  # 2 x 5.50 + 6.50
        Decimal("22.50"),  # 3 x 7.50
        Decimal("27.50"),  # 5 x 5.50
        Decimal("36.00"),  # 6.50 + 2 x 9.50 + 10.50
    ]


async def test_aliased_root_fields_run_concurrently_without_session_errors(gql, world, sql):
    fields = "\n".join(
        f"a{i}: posts(first: {i + 1}) {{ nodes {{ title author {{ username }} commentCount }} }}"
        for i in range(12)
    )
    body = await gql("{ " + fields + " }")
    assert len(body["data"]["a11"]["nodes"]) == 12


async def test_many_aliased_db_fields_take_one_connection(gql, world, checkouts):
    # Given a query with 25 aliased root fields that each hit the database
    fields = " ".join(f"a{i}: posts(first: 2) {{ nodes {{ title }} }}" for i in range(25))
    # When it runs
    body = await gql("{ " + fields + " }")
    # Then the request used exactly one connection
    assert len(body["data"]) == 25
    assert checkouts.count == 1
