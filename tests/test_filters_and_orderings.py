"""Every filter and ordering of the contract, and the aggregates, against the factory world.

Expected values are computed from what tests/factories.py builds (read-only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.documents import ORDER_DETAILS, ORDER_STATS, ORDERS
from tests.factories import MANY_USERS, POSTS_PER_USER, TAG_NAMES, World, at

POSTS = """
query Posts($first: Int, $after: String, $filter: PostFilter, $orderBy: PostOrder) {
  posts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    nodes { id }
    pageInfo { hasNextPage endCursor }
  }
}
"""

POSTS_BACKWARD = """
query PostsBackward($last: Int, $before: String, $orderBy: PostOrder) {
  posts(last: $last, before: $before, orderBy: $orderBy) {
    nodes { id }
    pageInfo { hasPreviousPage startCursor }
  }
}
"""

USERS = """
query Users($first: Int, $after: String, $filter: UserFilter, $orderBy: UserOrder) {
  users(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    nodes { username }
    pageInfo { hasNextPage endCursor }
  }
}
"""

PRODUCTS = """
query Products($filter: ProductFilter, $orderBy: ProductOrder) {
  products(first: 100, filter: $filter, orderBy: $orderBy) { totalCount nodes { sku } }
}
"""

PRODUCT_FIELDS = """
query ProductFields { products(first: 100) { nodes { sku name price stock unitsSold } } }
"""

TAGS = """
query Tags { tags(first: 100) { totalCount nodes { name postCount } } }
"""

TAG_POSTS = """
query TagPosts($name: String!, $first: Int) {
  tag(name: $name) { name postCount posts(first: $first) { totalCount nodes { id } } }
}
"""

POST_TAGS = """
query PostTags($id: ID!) { post(id: $id) { title tags { name } } }
"""

POST_COUNTS = """
query PostCounts { users(first: 4) { nodes { username postCount } } }
"""

AUTHORS = ["alice", "bob", *(f"member{i:02d}" for i in range(MANY_USERS))]


# ---------------------------------------------------------------- the world's posts


@dataclass(frozen=True)
class PostRow:
    pk: int
    author: int
    username: str
    n: int
    title: str
    created: int  # minutes after the factory epoch
    published: int | None
    tags: tuple[str, ...]


def post_rows(world: World) -> list[PostRow]:
    """Every post as tests/factories.py makes it: author i's post n at minute 101 + 6i + n."""
    rows = []
    for index, username in enumerate(AUTHORS):
        author = world.users[index + 1]
        for n, pk in enumerate(world.posts[author] + world.drafts[author]):
            minute = 100 + POSTS_PER_USER * index + n + 1
            rows.append(
                PostRow(
                    pk=pk,
                    author=author,
                    username=username,
                    n=n,
                    title=f"{username} post {n}",
                    created=minute,
                    published=minute + 1 if n < 4 else None,
                    tags=tuple(TAG_NAMES[(n + k * 3) % len(TAG_NAMES)] for k in range(1 + n % 3)),
                )
            )
    return rows


def gids(world: World, rows: list[PostRow]) -> list[str]:
    return [world.gid("Post", row.pk) for row in rows]


def newest_first(rows: list[PostRow]) -> list[PostRow]:
    return sorted(rows, key=lambda r: (r.created, r.pk), reverse=True)


def published(rows: list[PostRow]) -> list[PostRow]:
    return [row for row in rows if row.published is not None]


def drafts(rows: list[PostRow]) -> list[PostRow]:
    return [row for row in rows if row.published is None]


def iso(minutes: float) -> str:
    return (at(0) + timedelta(minutes=minutes)).isoformat()


def ids(connection: dict) -> list[str]:
    return [node["id"] for node in connection["nodes"]]


async def all_pages(gql, query: str, field: str, size: int, token=None, **variables) -> list[dict]:
    """Every node of a connection, following endCursor with pages of ``size``."""
    nodes: list[dict] = []
    after = None
    while True:
        body = await gql(query, {**variables, "first": size, "after": after}, token=token)
        page = body["data"][field]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


# ---------------------------------------------------------------- PostFilter


async def test_filter_by_author_shows_their_published_posts_newest_first(gql, world):
    # When anonymous filters on bob's id
    body = await gql(POSTS, {"first": 100, "filter": {"authorId": world.gid("User", world.bob)}})
    # Then bob's four published posts come, newest first
    bobs = [row for row in post_rows(world) if row.author == world.bob]
    assert ids(body["data"]["posts"]) == gids(world, newest_first(published(bobs)))
    assert body["data"]["posts"]["totalCount"] == 4


async def test_filter_by_author_as_admin_includes_drafts(gql, world):
    # When the admin filters on bob's id
    body = await gql(
        POSTS,
        {"first": 100, "filter": {"authorId": world.gid("User", world.bob)}},
        token=world.tokens["admin"],
    )
    # Then all six of bob's posts come, the drafts (the newest) first
    bobs = [row for row in post_rows(world) if row.author == world.bob]
    assert ids(body["data"]["posts"]) == gids(world, newest_first(bobs))


@pytest.mark.parametrize(
    ("tag", "viewer", "expected_total"),
    [
        ("beta", None, 32),
        ("alpha", None, 64),
        ("theta", None, 0),
        ("theta", "admin", 32),
        ("eta", "admin", 0),
        ("et", "admin", 0),
    ],
)
async def test_filter_by_tag_is_an_exact_name(gql, world, tag, viewer, expected_total):
    # When posts are filtered on a tag name
    token = world.tokens[viewer] if viewer else None
    body = await gql(POSTS, {"first": 100, "filter": {"tag": tag}}, token=token)
    # Then exactly the visible posts carrying that tag come, newest first
    rows = post_rows(world) if viewer == "admin" else published(post_rows(world))
    expected = newest_first([row for row in rows if tag in row.tags])
    assert body["data"]["posts"]["totalCount"] == expected_total
    assert ids(body["data"]["posts"]) == gids(world, expected)


@pytest.mark.parametrize(
    ("viewer", "flag", "expected"),
    [
        (None, True, "published"),
        (None, False, "none"),
        (None, None, "published"),
        ("alice", True, "published"),
        ("alice", False, "alice-drafts"),
        ("alice", None, "published+alice-drafts"),
        ("admin", False, "all-drafts"),
    ],
)
async def test_filter_published(gql, world, viewer, flag, expected):
    # Given a viewer and the published flag
    token = world.tokens[viewer] if viewer else None
    rows = post_rows(world)
    alice_drafts = [row for row in drafts(rows) if row.author == world.alice]
    want = {
        "published": published(rows),
        "none": [],
        "alice-drafts": alice_drafts,
        "published+alice-drafts": published(rows) + alice_drafts,
        "all-drafts": drafts(rows),
    }[expected]
    # When posts are filtered on it
    nodes = await all_pages(gql, POSTS, "posts", 100, token=token, filter={"published": flag})
    # Then exactly those posts come, newest first
    assert [node["id"] for node in nodes] == gids(world, newest_first(want))


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("ALICE POST", "alice"),
        ("By Bob.", "bob"),
        ("100% real_content", "all"),
        ("100%", "all"),
        ("l_c", "all"),
        ("t%c", "none"),
        ("100_", "none"),
        ("0%_r", "none"),
        ("%", "all"),
        ("_", "all"),
    ],
)
async def test_filter_search_is_a_case_insensitive_literal_substring(gql, world, search, expected):
    # Given contents like "Content 2 by bob. 100% real_content" (LIKE wildcards inside)
    rows = published(post_rows(world))
    want = {
        "alice": [row for row in rows if row.author == world.alice],
        "bob": [row for row in rows if row.author == world.bob],
        "all": rows,
        "none": [],
    }[expected]
    # When searching, anonymously
    nodes = await all_pages(gql, POSTS, "posts", 100, filter={"search": search})
    # Then % and _ match only themselves, and case does not matter
    assert [node["id"] for node in nodes] == gids(world, newest_first(want))


async def test_filter_search_with_a_nul_character_is_not_an_internal_error(gql, world):
    # When a search string holds a NUL character (no post contains one)
    body = await gql(
        POSTS, {"first": 5, "filter": {"search": "real\u0000content"}}, expect_errors=True
    )
    # Then the client gets either no match or BAD_USER_INPUT, never INTERNAL_SERVER_ERROR
    if "errors" in body:
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    else:
        assert body["data"]["posts"]["totalCount"] == 0


async def test_filter_published_after_and_before(gql, world):
    # Given alice's posts published at minutes 102, 103, 104, 105
    # When the window is between minute 102.5 and 104.5, as the admin (drafts have no date)
    body = await gql(
        POSTS,
        {"first": 100, "filter": {"publishedAfter": iso(102.5), "publishedBefore": iso(104.5)}},
        token=world.tokens["admin"],
    )
    # Then the posts published at 103 and 104 come, newest first
    assert ids(body["data"]["posts"]) == [
        world.gid("Post", world.posts[world.alice][2]),
        world.gid("Post", world.posts[world.alice][1]),
    ]


async def test_filter_published_after_never_matches_drafts(gql, world):
    # When the admin asks for posts published after minute 280.5
    body = await gql(
        POSTS, {"first": 100, "filter": {"publishedAfter": iso(280.5)}}, token=world.tokens["admin"]
    )
    # Then only published posts from then on come
    expected = [row for row in published(post_rows(world)) if row.published > 280.5]
    assert ids(body["data"]["posts"]) == gids(world, newest_first(expected))
    assert body["data"]["posts"]["totalCount"] == len(expected) == 8


# ---------------------------------------------------------------- PostOrder


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
@pytest.mark.parametrize("field", ["CREATED_AT", "TITLE"])
async def test_post_orderings(gql, world, field, direction):
    # When the published posts are ordered by a field, anonymously
    nodes = await all_pages(
        gql, POSTS, "posts", 50, orderBy={"field": field, "direction": direction}
    )
    # Then they come in that order, with the id as tiebreaker in the same direction
    key = {"CREATED_AT": lambda r: (r.created, r.pk), "TITLE": lambda r: (r.title, r.pk)}[field]
    expected = sorted(published(post_rows(world)), key=key, reverse=direction == "DESC")
    assert [node["id"] for node in nodes] == gids(world, expected)


def published_at_order(world: World, direction: str) -> list[PostRow]:
    """PUBLISHED_AT with drafts last either way, each part tiebroken by id in the direction."""
    rows = post_rows(world)
    desc = direction == "DESC"
    dated = sorted(published(rows), key=lambda r: (r.published, r.pk), reverse=desc)
    undated = sorted(drafts(rows), key=lambda r: r.pk, reverse=desc)
    return dated + undated


@pytest.mark.parametrize("size", [50, 64])
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_order_by_published_at_puts_drafts_last_across_pages(gql, world, direction, size):
    # Given the admin, who sees 128 published posts and 64 drafts
    # When paging through PUBLISHED_AT in pages that cross the published/draft boundary
    # (pages of 50 cross inside a page; pages of 64 start a page exactly at the first draft)
    nodes = await all_pages(
        gql,
        POSTS,
        "posts",
        size,
        token=world.tokens["admin"],
        orderBy={"field": "PUBLISHED_AT", "direction": direction},
    )
    # Then the published posts come in that direction, and the drafts after them
    assert [node["id"] for node in nodes] == gids(world, published_at_order(world, direction))


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_order_by_published_at_backward_reproduces_the_order(gql, world, direction):
    # Given the admin and the PUBLISHED_AT ordering
    order = {"field": "PUBLISHED_AT", "direction": direction}
    seen: list[str] = []
    before = None
    # When paging backward with last: 50 from the end
    while True:
        body = await gql(
            POSTS_BACKWARD,
            {"last": 50, "before": before, "orderBy": order},
            token=world.tokens["admin"],
        )
        page = body["data"]["posts"]
        seen = [node["id"] for node in page["nodes"]] + seen
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    # Then the pages put together are the forward order
    assert seen == gids(world, published_at_order(world, direction))


# ---------------------------------------------------------------- users


@pytest.mark.parametrize(
    ("viewer", "search", "expected"),
    [
        (None, "ALI", ["alice"]),
        (None, "member0", [f"member0{i}" for i in range(10)]),
        (None, "e disp", ["alice"]),  # only alice's display name, "Alice Display"
        (None, "example.com", []),  # emails are private: not matched for anonymous
        ("alice", "example.com", []),
        ("alice", "bob@", []),
        ("admin", "bob@", ["bob"]),
        ("admin", "EXAMPLE.COM", ["admin", "alice", "bob", *AUTHORS[2:]]),
    ],
)
async def test_user_search(gql, world, viewer, search, expected):
    # When users are searched
    token = world.tokens[viewer] if viewer else None
    body = await gql(USERS, {"first": 100, "filter": {"search": search}}, token=token)
    # Then username and display name match for everyone, email for admins only
    assert [node["username"] for node in body["data"]["users"]["nodes"]] == expected
    assert body["data"]["users"]["totalCount"] == len(expected)


@pytest.mark.parametrize(("flag", "expected_total"), [(True, 33), (False, 0)])
async def test_user_filter_is_active(gql, world, flag, expected_total):
    # When users are filtered on isActive (every world user is active)
    body = await gql(USERS, {"first": 100, "filter": {"isActive": flag}})
    # Then all or none come
    assert body["data"]["users"]["totalCount"] == expected_total
    assert len(body["data"]["users"]["nodes"]) == expected_total


async def test_user_filter_created_after_and_before(gql, world):
    # Given bob made at minute 2 and member00..02 at minutes 10..12
    # When filtering between minute 1.5 and 12.5
    body = await gql(
        USERS, {"first": 100, "filter": {"createdAfter": iso(1.5), "createdBefore": iso(12.5)}}
    )
    # Then exactly those four come, oldest first
    assert [node["username"] for node in body["data"]["users"]["nodes"]] == [
        "bob",
        "member00",
        "member01",
        "member02",
    ]


CREATED_ORDER = ["admin", "alice", "bob", *AUTHORS[2:]]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (None, CREATED_ORDER),
        ({"field": "CREATED_AT"}, CREATED_ORDER),
        ({"field": "CREATED_AT", "direction": "DESC"}, CREATED_ORDER[::-1]),
        ({"field": "USERNAME"}, sorted(CREATED_ORDER)),
        ({"field": "USERNAME", "direction": "DESC"}, sorted(CREATED_ORDER, reverse=True)),
        # only bob has logged in; the others (null) come last, by id in the same direction
        ({"field": "LAST_LOGIN_AT"}, ["bob", "admin", "alice", *AUTHORS[2:]]),
        (
            {"field": "LAST_LOGIN_AT", "direction": "DESC"},
            ["bob", *AUTHORS[2:][::-1], "alice", "admin"],
        ),
    ],
)
async def test_user_orderings_across_pages(gql, world, order, expected):
    # When every user is read, two per page, in an ordering
    variables = {"orderBy": order} if order else {}
    nodes = await all_pages(gql, USERS, "users", 2, **variables)
    # Then they come in that order
    assert [node["username"] for node in nodes] == expected


# ---------------------------------------------------------------- products

SKUS = [f"SKU-{i:03d}" for i in range(12)]


@pytest.mark.parametrize(
    ("product_filter", "expected"),
    [
        ({"search": "product c"}, ["SKU-002"]),
        ({"search": "sku-01"}, ["SKU-010", "SKU-011"]),
        ({"skuPrefix": "SKU-00"}, SKUS[:10]),
        ({"skuPrefix": "SKU_"}, []),
        ({"minPrice": "7.00", "maxPrice": "10.00"}, ["SKU-002", "SKU-003", "SKU-004"]),
        ({"minPrice": "7.50", "maxPrice": "8.50"}, ["SKU-002", "SKU-003"]),
        ({"minPrice": "16.00"}, ["SKU-011"]),
        ({"inStock": True}, [sku for sku in SKUS if sku != "SKU-003"]),
        ({"inStock": False}, ["SKU-003"]),
        ({"inStock": True, "maxPrice": "9.50"}, ["SKU-000", "SKU-001", "SKU-002", "SKU-004"]),
    ],
)
async def test_product_filters(gql, world, product_filter, expected):
    # Given products "Product A".."Product L", SKU-000..011, priced 5.50..16.50, D out of stock
    # When filtering
    body = await gql(PRODUCTS, {"filter": product_filter})
    # Then the matching products come by name
    assert [node["sku"] for node in body["data"]["products"]["nodes"]] == expected
    assert body["data"]["products"]["totalCount"] == len(expected)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (None, SKUS),
        ({"field": "NAME"}, SKUS),
        ({"field": "NAME", "direction": "DESC"}, SKUS[::-1]),
        ({"field": "PRICE"}, SKUS),
        ({"field": "PRICE", "direction": "DESC"}, SKUS[::-1]),
        ({"field": "CREATED_AT"}, SKUS),
        ({"field": "CREATED_AT", "direction": "DESC"}, SKUS[::-1]),
    ],
)
async def test_product_orderings(gql, world, order, expected):
    body = await gql(PRODUCTS, {"orderBy": order} if order else {})
    assert [node["sku"] for node in body["data"]["products"]["nodes"]] == expected


async def test_product_fields_and_units_sold_exclude_cancelled_orders(gql, world):
    # Given alice's PAID (2 x A, 1 x B), SHIPPED (3 x C), CANCELLED (5 x A) orders
    # and bob's PENDING one (1 x B, 2 x E, 1 x F)
    # When products are read
    body = await gql(PRODUCT_FIELDS)
    # Then prices are exact decimal strings and unitsSold ignores the cancelled order
    units = {"SKU-000": 2, "SKU-001": 2, "SKU-002": 3, "SKU-004": 2, "SKU-005": 1}
    assert body["data"]["products"]["nodes"] == [
        {
            "sku": f"SKU-{i:03d}",
            "name": f"Product {chr(ord('A') + i)}",
            "price": f"{5 + i}.50",
            "stock": 0 if i == 3 else 10 * i + 5,
            "unitsSold": units.get(f"SKU-{i:03d}", 0),
        }
        for i in range(12)
    ]


# ---------------------------------------------------------------- orders


def order_gids(world: World) -> dict[str, str]:
    paid, shipped, cancelled = world.orders[world.alice]
    (pending,) = world.orders[world.bob]
    return {
        "paid": world.gid("Order", paid),
        "shipped": world.gid("Order", shipped),
        "cancelled": world.gid("Order", cancelled),
        "pending": world.gid("Order", pending),
    }


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ["pending", "cancelled", "shipped", "paid"]),
        ({"orderBy": {"field": "CREATED_AT"}}, ["pending", "cancelled", "shipped", "paid"]),
        (
            {"orderBy": {"field": "CREATED_AT", "direction": "ASC"}},
            ["paid", "shipped", "cancelled", "pending"],
        ),
        ({"filter": {"status": ["PAID", "SHIPPED"]}}, ["shipped", "paid"]),
        ({"filter": {"status": ["CANCELLED"]}}, ["cancelled"]),
        ({"filter": {"status": ["PENDING", "CANCELLED"]}}, ["pending", "cancelled"]),
        (
            {"filter": {"placedAfter": iso(20_050), "placedBefore": iso(20_250)}},
            ["cancelled", "shipped"],
        ),
        (
            {"filter": {"status": ["PAID", "SHIPPED", "PENDING"], "placedAfter": iso(20_050)}},
            ["pending", "shipped"],
        ),
    ],
)
async def test_order_filters_and_ordering(gql, world, variables, expected):
    # Given the admin, who sees all four orders (placed at minutes 20000..20300)
    body = await gql(ORDERS, variables, token=world.tokens["admin"])
    # Then the matching orders come, newest first unless asked otherwise
    by_name = order_gids(world)
    assert ids(body["data"]["orders"]) == [by_name[name] for name in expected]
    assert body["data"]["orders"]["totalCount"] == len(expected)


async def test_order_totals_items_and_counts(gql, world):
    # When the admin reads every order with its items
    body = await gql(ORDER_DETAILS, token=world.tokens["admin"])
    by_id = {node["id"]: node for node in body["data"]["orders"]["nodes"]}
    name_of = {gid: name for name, gid in order_gids(world).items()}
    got = {
        name_of[gid]: (
            node["status"],
            node["total"],
            node["itemCount"],
            sorted(
                (i["product"]["sku"], i["quantity"], i["unitPrice"], i["subtotal"])
                for i in node["items"]
            ),
        )
        for gid, node in by_id.items()
    }
    # Then total = sum(quantity * unitPrice) and every decimal is an exact string
    assert got == {
        "paid": (
            "PAID",
            "17.50",
            2,
            [("SKU-000", 2, "5.50", "11.00"), ("SKU-001", 1, "6.50", "6.50")],
        ),
        "shipped": ("SHIPPED", "22.50", 1, [("SKU-002", 3, "7.50", "22.50")]),
        "cancelled": ("CANCELLED", "27.50", 1, [("SKU-000", 5, "5.50", "27.50")]),
        "pending": (
            "PENDING",
            "36.00",
            3,
            [
                ("SKU-001", 1, "6.50", "6.50"),
                ("SKU-004", 2, "9.50", "19.00"),
                ("SKU-005", 1, "10.50", "10.50"),
            ],
        ),
    }


async def test_order_stats_are_over_non_cancelled_orders(gql, world):
    # When the admin reads the stats of admin, alice and bob
    body = await gql(ORDER_STATS, token=world.tokens["admin"])
    # Then alice's cancelled order (27.50) is left out, and admin has none at all
    assert body["data"]["users"]["nodes"] == [
        {
            "username": "admin",
            "orderStats": {
                "orderCount": 0,
                "totalSpent": "0.00",
                "averageOrderValue": None,
                "lastOrderAt": None,
            },
        },
        {
            "username": "alice",
            "orderStats": {
                "orderCount": 2,
                "totalSpent": "40.00",
                "averageOrderValue": "20.00",
                "lastOrderAt": at(20_100).isoformat(),
            },
        },
        {
            "username": "bob",
            "orderStats": {
                "orderCount": 1,
                "totalSpent": "36.00",
                "averageOrderValue": "36.00",
                "lastOrderAt": at(20_300).isoformat(),
            },
        },
    ]


# ---------------------------------------------------------------- tags and counts


async def test_tags_are_ordered_by_name_with_published_post_counts(gql, world):
    # When all tags are read
    body = await gql(TAGS)
    # Then they come by name; postCount counts published posts only (eta: none, theta: drafts)
    assert body["data"]["tags"] == {
        "totalCount": 8,
        "nodes": [
            {"name": "alpha", "postCount": 64},
            {"name": "beta", "postCount": 32},
            {"name": "delta", "postCount": 32},
            {"name": "epsilon", "postCount": 32},
            {"name": "eta", "postCount": 0},
            {"name": "gamma", "postCount": 32},
            {"name": "theta", "postCount": 0},
            {"name": "zeta", "postCount": 32},
        ],
    }


@pytest.mark.parametrize("viewer", [None, "admin"])
async def test_tag_posts_are_only_published_even_for_admin(gql, world, viewer):
    token = world.tokens[viewer] if viewer else None
    # When alpha's (2 published + 1 draft per author) and theta's (drafts only) posts are read
    alpha = (await gql(TAG_POSTS, {"name": "alpha", "first": 3}, token=token))["data"]["tag"]
    theta = (await gql(TAG_POSTS, {"name": "theta", "first": 3}, token=token))["data"]["tag"]
    # Then only published posts are counted and listed, newest first
    expected = newest_first([r for r in published(post_rows(world)) if "alpha" in r.tags])[:3]
    assert alpha == {
        "name": "alpha",
        "postCount": 64,
        "posts": {"totalCount": 64, "nodes": [{"id": gid} for gid in gids(world, expected)]},
    }
    assert theta == {"name": "theta", "postCount": 0, "posts": {"totalCount": 0, "nodes": []}}


@pytest.mark.parametrize(
    ("n", "viewer", "expected"),
    [
        (0, None, ["alpha"]),
        (1, None, ["beta", "epsilon"]),
        (2, None, ["alpha", "gamma", "zeta"]),
        (5, "alice", ["alpha", "delta", "zeta"]),
    ],
)
async def test_post_tags_are_sorted_by_name(gql, world, n, viewer, expected):
    # Given alice's post n (n = 5 is a draft, read by alice)
    pk = (world.posts[world.alice] + world.drafts[world.alice])[n]
    token = world.tokens[viewer] if viewer else None
    body = await gql(POST_TAGS, {"id": world.gid("Post", pk)}, token=token)
    assert body["data"]["post"] == {
        "title": f"alice post {n}",
        "tags": [{"name": name} for name in expected],
    }


@pytest.mark.parametrize("viewer", [None, "alice", "admin"])
async def test_user_post_count_counts_published_only(gql, world, viewer):
    # When postCount is read, even by the author or the admin
    token = world.tokens[viewer] if viewer else None
    body = await gql(POST_COUNTS, token=token)
    # Then drafts are never counted
    assert body["data"]["users"]["nodes"] == [
        {"username": "admin", "postCount": 0},
        {"username": "alice", "postCount": 4},
        {"username": "bob", "postCount": 4},
        {"username": "member00", "postCount": 4},
    ]
