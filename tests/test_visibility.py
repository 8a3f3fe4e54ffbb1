"""Who sees what: drafts, private user fields, orders, money, the sales report, and isolation
between concurrent requests. Read-only against the shared ``world``; the one case the world
lacks (a comment on a draft) gets a scratch database of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from gql_app.models import AuthToken, Comment, Post
from gql_app.relay.ids import encode_id
from gql_app.settings import Settings
from gql_app.users.passwords import token_digest
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, scratch_database
from tests.factories import World, at, make_user

POSTS_OF_ALICE = """
query PostsOfAlice($author: ID!) {
  posts(first: 100, filter: {authorId: $author}) { totalCount nodes { id } }
}
"""

USER_POSTS = """
query UserPosts($username: String!) {
  user(username: $username) { posts(first: 100) { totalCount nodes { id } } }
}
"""

POST_BY_ID = """
query PostById($id: ID!) { post(id: $id) { id title publishedAt } }
"""

NODE = """
query NodeById($id: ID!) {
  node(id: $id) {
    __typename
    id
    ... on Post { title }
    ... on Order { status }
    ... on Account { currency }
    ... on Transfer { amount }
    ... on Comment { body }
  }
}
"""

EMAIL = """
query Email($username: String!) { user(username: $username) { username email } }
"""

PRIVATE_FIELDS = """
query PrivateFields($username: String!) {
  user(username: $username) {
    username
    orders(first: 10) { totalCount }
    orderStats { orderCount totalSpent }
    accounts { currency balance }
  }
}
"""

ROOT_ORDERS = """
query RootOrders { orders(first: 10) { totalCount nodes { id customer { username } } } }
"""

SALES_REPORT = """
query SalesReport($from: DateTime!, $to: DateTime!) {
  salesReport(from: $from, to: $to) {
    orderCount
    revenue
    unitsSold
    days { day orderCount revenue }
    topProducts(limit: 2) { product { sku } unitsSold revenue }
  }
}
"""

TRANSFER_SIDES = """
query TransferSides($id: ID!) {
  node(id: $id) {
    ... on Transfer {
      amount
      from { currency balance owner { username } }
      to { currency owner { username } }
    }
  }
}
"""

COUNTERPARTY_BALANCE = """
query CounterpartyBalance($id: ID!) {
  node(id: $id) { ... on Transfer { amount to { balance } } }
}
"""

VIEWER_AND_ALICE = """
query ViewerAndAlice {
  viewer { username email orders(first: 5) { totalCount } }
  user(username: "alice") { email }
}
"""

USER_COMMENTS = """
query UserComments($username: String!) {
  user(username: $username) { comments(first: 10) { totalCount nodes { id } } }
}
"""


def token_of(world: World, viewer: str | None) -> str | None:
    return world.tokens[viewer] if viewer else None


def codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def node_ids(connection: dict) -> list[str]:
    return [node["id"] for node in connection["nodes"]]


# ---------------------------------------------------------------- drafts


@pytest.mark.parametrize(
    ("viewer", "sees_drafts"),
    [(None, False), ("bob", False), ("alice", True), ("admin", True)],
)
async def test_alices_drafts_in_posts_and_user_posts(gql, world, viewer, sees_drafts):
    # Given alice's 4 published posts and 2 drafts
    visible = world.posts[world.alice] + (world.drafts[world.alice] if sees_drafts else [])
    expected = [world.gid("Post", pk) for pk in sorted(visible, reverse=True)]
    token = token_of(world, viewer)
    # When her posts are listed through Query.posts and User.posts
    root = await gql(POSTS_OF_ALICE, {"author": world.gid("User", world.alice)}, token=token)
    nested = await gql(USER_POSTS, {"username": "alice"}, token=token)
    # Then drafts are there only for alice herself and the admin
    assert node_ids(root["data"]["posts"]) == expected
    assert root["data"]["posts"]["totalCount"] == len(expected)
    assert node_ids(nested["data"]["user"]["posts"]) == expected
    assert nested["data"]["user"]["posts"]["totalCount"] == len(expected)


@pytest.mark.parametrize(
    ("viewer", "visible"),
    [(None, False), ("bob", False), ("alice", True), ("admin", True)],
)
async def test_a_draft_by_id_and_by_node(gql, world, viewer, visible):
    # Given alice's newest draft
    draft = world.gid("Post", world.drafts[world.alice][1])
    token = token_of(world, viewer)
    # When it is fetched by post(id) and node(id)
    by_post = await gql(POST_BY_ID, {"id": draft}, token=token)
    by_node = await gql(NODE, {"id": draft}, token=token)
    # Then it is there for alice and the admin, and simply null (no error) for others
    if visible:
        assert by_post["data"]["post"] == {
            "id": draft,
            "title": "alice post 5",
            "publishedAt": None,
        }
        assert by_node["data"]["node"] == {
            "__typename": "Post",
            "id": draft,
            "title": "alice post 5",
        }
    else:
        assert by_post["data"] == {"post": None}
        assert by_node["data"] == {"node": None}


# ---------------------------------------------------------------- private user fields


@pytest.mark.parametrize(
    ("viewer", "email"),
    [(None, None), ("bob", None), ("alice", "alice@example.com"), ("admin", "alice@example.com")],
)
async def test_email_is_for_self_and_admin_and_null_without_error_for_others(
    gql, world, viewer, email
):
    body = await gql(EMAIL, {"username": "alice"}, token=token_of(world, viewer))
    assert body == {"data": {"user": {"username": "alice", "email": email}}}


@pytest.mark.parametrize("viewer", [None, "bob"])
async def test_orders_stats_and_accounts_of_another_user_are_forbidden(gql, world, viewer):
    # When someone else reads alice's private fields
    body = await gql(
        PRIVATE_FIELDS, {"username": "alice"}, token=token_of(world, viewer), expect_errors=True
    )
    # Then each is null with a FORBIDDEN error, and the public part is still there
    assert body["data"] == {
        "user": {"username": "alice", "orders": None, "orderStats": None, "accounts": None}
    }
    assert sorted((tuple(e["path"]), e["extensions"]["code"]) for e in body["errors"]) == [
        (("user", "accounts"), "FORBIDDEN"),
        (("user", "orderStats"), "FORBIDDEN"),
        (("user", "orders"), "FORBIDDEN"),
    ]


@pytest.mark.parametrize("viewer", ["alice", "admin"])
async def test_orders_stats_and_accounts_for_self_and_admin(gql, world, viewer):
    body = await gql(PRIVATE_FIELDS, {"username": "alice"}, token=token_of(world, viewer))
    assert body["data"] == {
        "user": {
            "username": "alice",
            "orders": {"totalCount": 3},
            "orderStats": {"orderCount": 2, "totalSpent": "40.00"},
            "accounts": [{"currency": "USD", "balance": "100.00"}],
        }
    }


# ---------------------------------------------------------------- Query.orders


async def test_root_orders_need_a_signed_in_viewer(gql, world):
    body = await gql(ROOT_ORDERS, expect_errors=True)
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("viewer", "expected"),
    [
        ("alice", [("alice", 2), ("alice", 1), ("alice", 0)]),
        ("bob", [("bob", 0)]),
        ("admin", [("bob", 0), ("alice", 2), ("alice", 1), ("alice", 0)]),
    ],
)
async def test_root_orders_are_the_viewers_own_or_all_for_admin(gql, world, viewer, expected):
    # When a viewer lists orders
    body = await gql(ROOT_ORDERS, token=world.tokens[viewer])
    # Then alice sees her three, bob his one, the admin all four, newest first
    owners = {"alice": world.alice, "bob": world.bob}
    assert body["data"]["orders"] == {
        "totalCount": len(expected),
        "nodes": [
            {
                "id": world.gid("Order", world.orders[owners[name]][i]),
                "customer": {"username": name},
            }
            for name, i in expected
        ],
    }


# ---------------------------------------------------------------- sales report

WHOLE_YEAR = {"from": "2026-01-01T00:00:00+00:00", "to": "2027-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(("viewer", "code"), [(None, "UNAUTHENTICATED"), ("alice", "FORBIDDEN")])
async def test_sales_report_is_for_admins_only(gql, world, viewer, code):
    body = await gql(SALES_REPORT, WHOLE_YEAR, token=token_of(world, viewer), expect_errors=True)
    assert body["data"] is None
    assert codes(body) == [code]


async def test_sales_report_over_everything_leaves_out_the_cancelled_order(gql, world):
    # Given PAID 17.50 (Jan 14), SHIPPED 22.50 (Jan 14), CANCELLED 27.50 (Jan 15),
    # PENDING 36.00 (Jan 15)
    # When the admin reads the report for the whole year
    body = await gql(SALES_REPORT, WHOLE_YEAR, token=world.tokens["admin"])
    # Then the cancelled order counts nowhere (with it, SKU-000 would top the list with 7 units)
    assert body["data"]["salesReport"] == {
        "orderCount": 3,
        "revenue": "76.00",
        "unitsSold": 10,
        "days": [
            {"day": "2026-01-14", "orderCount": 2, "revenue": "40.00"},
            {"day": "2026-01-15", "orderCount": 1, "revenue": "36.00"},
        ],
        "topProducts": [
            {"product": {"sku": "SKU-002"}, "unitsSold": 3, "revenue": "22.50"},
            {"product": {"sku": "SKU-004"}, "unitsSold": 2, "revenue": "19.00"},
        ],
    }


async def test_sales_report_range_includes_from_and_excludes_to(gql, world):
    # When the range starts exactly at the SHIPPED order and ends exactly at the PENDING one
    body = await gql(
        SALES_REPORT,
        {"from": at(20_100).isoformat(), "to": at(20_300).isoformat()},
        token=world.tokens["admin"],
    )
    # Then only the SHIPPED order is in (the CANCELLED one between them never is)
    assert body["data"]["salesReport"] == {
        "orderCount": 1,
        "revenue": "22.50",
        "unitsSold": 3,
        "days": [{"day": "2026-01-14", "orderCount": 1, "revenue": "22.50"}],
        "topProducts": [{"product": {"sku": "SKU-002"}, "unitsSold": 3, "revenue": "22.50"}],
    }


# ---------------------------------------------------------------- money


async def test_transfer_shows_own_balance_and_counterparty_owner(gql, world):
    # Given alice's transfer of 10.00 to bob
    transfer = world.gid("Transfer", world.transfers[0])
    # When alice reads it without the counterparty's balance
    body = await gql(TRANSFER_SIDES, {"id": transfer}, token=world.tokens["alice"])
    # Then both sides are there
    assert body["data"]["node"] == {
        "amount": "10.00",
        "from": {"currency": "USD", "balance": "100.00", "owner": {"username": "alice"}},
        "to": {"currency": "USD", "owner": {"username": "bob"}},
    }


async def test_counterparty_balance_is_forbidden(gql, world):
    # Given alice's transfer to bob
    transfer = world.gid("Transfer", world.transfers[0])
    # When alice asks for bob's balance through it
    body = await gql(
        COUNTERPARTY_BALANCE, {"id": transfer}, token=world.tokens["alice"], expect_errors=True
    )
    # Then it is FORBIDDEN (balance and `to` are non-null, so the node is null)
    assert body["data"] == {"node": None}
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["node", "to", "balance"], "FORBIDDEN")
    ]


@pytest.mark.parametrize(
    ("viewer", "kind", "visible"),
    [
        ("bob", "alices-order", False),
        ("bob", "alices-account", False),
        ("bob", "members-transfer", False),
        ("bob", "transfer-to-bob", True),
        ("alice", "alices-order", True),
        ("alice", "alices-account", True),
        ("alice", "members-transfer", False),
        (None, "alices-order", False),
        (None, "alices-account", False),
        (None, "transfer-to-bob", False),
        ("admin", "alices-order", True),
        ("admin", "alices-account", True),
        ("admin", "members-transfer", True),
    ],
)
async def test_node_of_private_objects(gql, world, viewer, kind, visible):
    # Given orders, accounts and transfers of other people
    gid, expected = {
        "alices-order": (
            world.gid("Order", world.orders[world.alice][0]),
            {"__typename": "Order", "status": "PAID"},
        ),
        "alices-account": (
            world.gid("Account", world.accounts[world.alice]),
            {"__typename": "Account", "currency": "USD"},
        ),
        "members-transfer": (
            world.gid("Transfer", world.transfers[2]),
            {"__typename": "Transfer", "amount": "1.00"},
        ),
        "transfer-to-bob": (
            world.gid("Transfer", world.transfers[0]),
            {"__typename": "Transfer", "amount": "10.00"},
        ),
    }[kind]
    # When they are fetched by node(id)
    body = await gql(NODE, {"id": gid}, token=token_of(world, viewer))
    # Then owners (either side of a transfer) and admins get them, others null without error
    assert body == {"data": {"node": {**expected, "id": gid} if visible else None}}


# ---------------------------------------------------------------- concurrency


async def test_concurrent_requests_each_see_only_their_own_viewer(gql, world):
    # Given thirty requests at once from alice, bob and anonymous clients
    viewers = ["alice", "bob", None] * 10
    # When they all run concurrently
    bodies = await asyncio.gather(
        *(gql(VIEWER_AND_ALICE, token=token_of(world, viewer)) for viewer in viewers)
    )
    # Then each response holds exactly what its own viewer may see
    expected = {
        "alice": {
            "viewer": {
                "username": "alice",
                "email": "alice@example.com",
                "orders": {"totalCount": 3},
            },
            "user": {"email": "alice@example.com"},
        },
        "bob": {
            "viewer": {"username": "bob", "email": "bob@example.com", "orders": {"totalCount": 1}},
            "user": {"email": None},
        },
        None: {"viewer": None, "user": {"email": None}},
    }
    assert [body["data"] for body in bodies] == [expected[viewer] for viewer in viewers]


# ---------------------------------------------------------------- comments on a draft


@dataclass
class DraftWorld:
    gql: GraphQLClient
    tokens: dict[str, str]
    comment: str


@pytest.fixture(scope="module")
async def draft_world(server_url: str) -> AsyncIterator[DraftWorld]:
    """A scratch database: a draft by `writer` with a comment by `reader` (the shared world
    has comments on published posts only, and must not be written to)."""
    async with scratch_database(server_url, "gql_drafts") as url:
        settings = Settings(DATABASE_URL=url, secret_key="test-secret", pool_size=2)
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            tokens: dict[str, Any] = {}
            async with AsyncSession(application.state.engine, expire_on_commit=False) as session:
                admin = make_user(session, "boss", 0, password_hash="x", is_admin=True)
                writer = make_user(session, "writer", 1, password_hash="x")
                reader = make_user(session, "reader", 2, password_hash="x")
                await session.flush()
                draft = Post(
                    author_id=writer.id,
                    title="a draft",
                    content="not yet",
                    created_at=at(10),
                    published_at=None,
                )
                session.add(draft)
                await session.flush()
                comment = Comment(
                    post_id=draft.id, author_id=reader.id, body="early", created_at=at(11)
                )
                session.add(comment)
                for user in (admin, writer, reader):
                    token = f"scratch-{user.username}"
                    tokens[user.username] = token
                    session.add(
                        AuthToken(
                            user_id=user.id,
                            token_hash=token_digest(token),
                            expires_at=datetime.now(UTC) + timedelta(days=1),
                        )
                    )
                await session.commit()
                comment_gid = encode_id("Comment", comment.id)
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield DraftWorld(GraphQLClient(http), tokens, comment_gid)


@pytest.mark.parametrize(
    ("viewer", "visible"),
    [(None, False), ("reader", False), ("writer", True), ("boss", True)],
)
async def test_a_comment_on_a_draft_is_visible_only_with_its_post(draft_world, viewer, visible):
    # Given reader's comment on writer's draft
    token = draft_world.tokens[viewer] if viewer else None
    # When it is fetched by node(id), and listed among reader's comments
    by_node = await draft_world.gql(NODE, {"id": draft_world.comment}, token=token)
    listed = await draft_world.gql(USER_COMMENTS, {"username": "reader"}, token=token)
    # Then only those who may see the draft see the comment (even its own author may not)
    expected_node = (
        {"__typename": "Comment", "id": draft_world.comment, "body": "early"} if visible else None
    )
    assert by_node == {"data": {"node": expected_node}}
    assert listed["data"]["user"]["comments"] == {
        "totalCount": 1 if visible else 0,
        "nodes": [{"id": draft_world.comment}] if visible else [],
    }
