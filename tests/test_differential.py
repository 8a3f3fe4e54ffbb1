"""The app answers its own queries exactly as Strawberry and graphql-core would.

Every case of a corpus of the app's queries goes to three servers on the shared
test database (the read-side ``world``):

- the app as users start it: the query lane, the planned executor (which
  replaces graphql-core's execution), the direct resolvers and driver reads;
- the same schema over the full path: no lane, an ORM session per operation
  (the ``full_path_app`` fixture), still the planned executor;
- a reference: the app's own types, extensions and configuration, built by
  ``strawberry.Schema`` with graphql-core's execution context and Strawberry's
  own field resolvers (no ``PlannedExecutor``, no ``engine.fields.install``);
  only ``relay.node.install``, which resolves the Node interface from rows.

The status and the whole body (data; every error's message, path, locations
and code) must be equal. A corpus of cursor pages takes its cursors from the
app's answer to an earlier case. Each case also names the error codes its
answer must hold, so that a corpus of answers refused alike proves nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import strawberry
from graphql import (
    FieldNode,
    GraphQLInputObjectType,
    GraphQLObjectType,
    ObjectValueNode,
    TypeInfo,
    TypeInfoVisitor,
    VariableNode,
    Visitor,
    get_named_type,
    parse,
    visit,
)

from gql_app.engine.planned_executor import PlannedExecutor
from gql_app.schema import build_schema
from gql_app.schema import schema as app_schema
from gql_app.settings import Settings
from gql_app.web.app import create_app
from tests.documents import W1_FEED, W2_PEOPLE, W3_NODE
from tests.factories import World

reference = build_schema(planned=False)

NODE_TYPES = ["User", "Post", "Tag", "Comment", "Product", "Order", "Account", "Transfer"]

# ---------------------------------------------------------------- documents: root connections

PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"

USERS = (
    """
query Users($first: Int, $after: String, $last: Int, $before: String,
            $filter: UserFilter, $orderBy: UserOrder) {
  users(first: $first, after: $after, last: $last, before: $before,
        filter: $filter, orderBy: $orderBy) {
    totalCount
    edges { cursor node { id username createdAt lastLoginAt isActive email } }
    """
    + PAGE_INFO
    + """
  }
}
"""
)

POSTS = (
    """
query Posts($first: Int, $after: String, $last: Int, $before: String,
            $filter: PostFilter, $orderBy: PostOrder) {
  posts(first: $first, after: $after, last: $last, before: $before,
        filter: $filter, orderBy: $orderBy) {
    totalCount
    edges { cursor node { id title publishedAt createdAt author { username } tags { name } } }
    """
    + PAGE_INFO
    + """
  }
}
"""
)

TAGS = (
    """
query Tags($first: Int, $after: String, $last: Int, $before: String) {
  tags(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { id name postCount } }
    """
    + PAGE_INFO
    + """
  }
}
"""
)

PRODUCTS = (
    """
query Products($first: Int, $after: String, $last: Int, $before: String,
               $filter: ProductFilter, $orderBy: ProductOrder) {
  products(first: $first, after: $after, last: $last, before: $before,
           filter: $filter, orderBy: $orderBy) {
    totalCount
    edges { cursor node { id sku name price stock createdAt unitsSold } }
    """
    + PAGE_INFO
    + """
  }
}
"""
)

ORDERS_PAGE = (
    """
query Orders($first: Int, $after: String, $last: Int, $before: String,
             $filter: OrderFilter, $orderBy: OrderOrder) {
  orders(first: $first, after: $after, last: $last, before: $before,
         filter: $filter, orderBy: $orderBy) {
    totalCount
    edges { cursor node {
      id status createdAt total itemCount customer { username }
      items { quantity unitPrice subtotal product { sku } }
    } }
    """
    + PAGE_INFO
    + """
  }
}
"""
)

# ---------------------------------------------------------------- documents: nested connections

USER_POSTS = (
    """
query UserPosts($username: String!, $first: Int, $after: String, $last: Int, $before: String,
                $filter: PostFilter, $orderBy: PostOrder) {
  user(username: $username) {
    username
    posts(first: $first, after: $after, last: $last, before: $before,
          filter: $filter, orderBy: $orderBy) {
      totalCount
      edges { cursor node { id title publishedAt createdAt } }
      """
    + PAGE_INFO
    + """
    }
  }
}
"""
)

USER_COMMENTS = (
    """
query UserComments($username: String!, $first: Int, $after: String, $last: Int, $before: String) {
  user(username: $username) {
    comments(first: $first, after: $after, last: $last, before: $before) {
      totalCount
      edges { cursor node { id body createdAt post { title } } }
      """
    + PAGE_INFO
    + """
    }
  }
}
"""
)

USER_ORDERS = (
    """
query UserOrders($username: String!, $first: Int, $after: String, $last: Int, $before: String,
                 $filter: OrderFilter, $orderBy: OrderOrder) {
  user(username: $username) {
    username
    orders(first: $first, after: $after, last: $last, before: $before,
           filter: $filter, orderBy: $orderBy) {
      totalCount
      edges { cursor node { id status total createdAt } }
      """
    + PAGE_INFO
    + """
    }
    orderStats { orderCount totalSpent averageOrderValue lastOrderAt }
    accounts { id currency balance }
  }
}
"""
)

POST_COMMENTS = (
    """
query PostComments($id: ID!, $first: Int, $after: String, $last: Int, $before: String,
                   $orderBy: CommentOrder) {
  post(id: $id) {
    title
    comments(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
      totalCount
      edges { cursor node { id body createdAt author { username } } }
      """
    + PAGE_INFO
    + """
    }
  }
}
"""
)

TAG_POSTS = (
    """
query TagPosts($name: String!, $first: Int, $after: String, $last: Int, $before: String,
               $orderBy: PostOrder) {
  tag(name: $name) {
    name postCount
    posts(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
      totalCount
      edges { cursor node { id title publishedAt } }
      """
    + PAGE_INFO
    + """
    }
  }
}
"""
)

ACCOUNT_TRANSFERS = (
    """
query AccountTransfers($first: Int, $after: String, $last: Int, $before: String) {
  viewer {
    username
    accounts {
      id currency balance
      transfers(first: $first, after: $after, last: $last, before: $before) {
        totalCount
        edges { cursor node { id amount createdAt from { id } to { id } } }
        """
    + PAGE_INFO
    + """
      }
    }
  }
}
"""
)

# ---------------------------------------------------------------- documents: node, fragments

NODE = """
query NodeById($id: ID!) {
  node(id: $id) {
    __typename
    id
    ... on User { username profile { displayName } }
    ... on Post { title author { username } }
    ... on Tag { name postCount }
    ... on Comment { body post { title } }
    ... on Product { sku price }
    ... on Order { status total customer { username } }
    ... on Account { currency balance owner { username } }
    ... on Transfer { amount from { id } to { id } }
  }
}
"""

NODES = """
query NodesByIds($ids: [ID!]!) {
  nodes(ids: $ids) { __typename ...NodeBits }
}
fragment NodeBits on Node {
  id
  ... on User { username }
  ... on Post { ...PostBits }
  ... on Tag { name }
  ... on Comment { body author { username } }
  ... on Product { sku }
  ... on Order { status itemCount }
  ... on Account { currency }
  ... on Transfer { amount }
}
fragment PostBits on Post { title tags { name } }
"""

OTHER_SIDES_TRANSFERS = """
{ viewer { username accounts { currency transfers(first: 5) {
    nodes { amount to { currency transfers(first: 1) { totalCount } } } } } } }
"""

FRAGMENTS = """
query Fragments {
  posts(first: 3) { ...PostPage }
  tag(name: "alpha") { ...Named ... on Tag { posts(first: 2) { ...PostPage } } }
  users(first: 2) { nodes { ...Named ... on Node { __typename } ...UserBits } }
}
fragment PostPage on PostConnection {
  totalCount
  nodes { ...Named ... on Post { title author { ...UserBits } } }
}
fragment Named on Node { id }
fragment UserBits on User { username profile { ... on Profile { displayName } } }
"""

DIRECTIVES = """
query Directives($withPosts: Boolean!, $skipCount: Boolean!) {
  users(first: 3) {
    totalCount @skip(if: $skipCount)
    nodes {
      username
      posts(first: 2) @include(if: $withPosts) {
        totalCount @skip(if: $skipCount)
        nodes { title ... on Post @include(if: $withPosts) { publishedAt } }
      }
      ...Count @skip(if: $skipCount)
    }
  }
}
fragment Count on User { postCount }
"""

MERGED = """
query Merged($first: Int = 2) {
  posts(first: $first) { nodes { id } }
  ...More
  ... on Query { posts(first: $first) { totalCount nodes { author { username } } } }
}
fragment More on Query { posts(first: $first) { nodes { title author { id } } } }
"""

TWO_OPERATIONS = """
query Tags { tags(first: 2) { nodes { name } } }
query Viewer { viewer { username } }
"""

INTROSPECTION = '{ __type(name: "Node") { name kind possibleTypes { name } } }'

ALIASES = """
{
  newest: posts(first: 1) { nodes { title } }
  oldest: posts(last: 1) { nodes { title } }
  alice: user(username: "alice") {
    name: username
    byTitle: posts(first: 2, orderBy: {field: TITLE, direction: ASC}) { nodes { t: title } }
    byDate: posts(first: 2) { total: totalCount nodes { t: title } }
  }
  bob: user(username: "bob") { name: username }
  again: user(username: "alice") { id }
}
"""

# ---------------------------------------------------------------- documents: errors, lookups

FORBIDDEN_IN_A_LIST = """
{ users(first: 5) { nodes { username orders(first: 1) { totalCount } orderStats { orderCount } } } }
"""

BALANCES_OF_TRANSFER_SIDES = """
{ viewer { username accounts { currency transfers(first: 5) {
    nodes { amount from { balance } to { balance } } } } } }
"""

BAD_ROOT_CURSOR = (
    'query { posts(first: 2, after: "garbage") { totalCount } tags(first: 1) { totalCount } }'
)
BAD_NESTED_CURSOR = """
{ user(username: "alice") { username posts(first: 2, before: "nope") { totalCount } } }
"""
BAD_NULLABLE_CURSOR = """
{ user(username: "alice") { username orders(after: "nope") { totalCount } } }
"""
FIRST_AND_LAST = "{ posts(first: 2, last: 2) { totalCount } }"
NESTED_FIRST_AND_LAST = '{ tag(name: "beta") { name posts(first: 1, last: 1) { totalCount } } }'
PAGE_SIZES = """
query PageSizes($first: Int) { users(first: $first) { nodes { username } } }
"""
POST_BY_ID = "query PostById($id: ID!) { post(id: $id) { id title } }"
USER_BY = "query UserBy($id: ID, $username: String) { user(id: $id, username: $username) { id username } }"
PRODUCT_BY = (
    "query ProductBy($id: ID, $sku: String) { product(id: $id, sku: $sku) { id sku unitsSold } }"
)
TAG_BY_NAME = "query TagByName($name: String!) { tag(name: $name) { id name postCount } }"
VIEWER_IN_FULL = """
{ viewer { username email isAdmin age lastLoginAt profile { displayName bio } postCount
  orderStats { orderCount totalSpent } accounts { currency balance } } }
"""
SALES = """
query Sales($from: DateTime!, $to: DateTime!) {
  salesReport(from: $from, to: $to) {
    orderCount revenue unitsSold days { day orderCount revenue }
    topProducts(limit: 3) { unitsSold revenue product { sku } }
  }
}
"""
ALL_TIME = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
UNKNOWN_FIELD = "{ posts(first: 1) { nodes { nope } } }"
WRONG_VARIABLE = "query($first: Int) { posts(first: $first) { totalCount } }"
TYPENAMES = (
    "{ __typename posts(first: 1) { __typename nodes { __typename } pageInfo { __typename } } }"
)


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Earlier:
    """A value of the app's answer to an earlier case: ``data`` at ``path``."""

    case: str
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    viewer: str | None = None  # a world token's owner, or "stranger" (a token nobody has)
    operation: str | None = None
    errors: tuple[str, ...] = ()  # the codes the answer holds (as a sorted multiset)


def end_of(case: str, *path: str | int) -> Earlier:
    return Earlier(case, (*path, "pageInfo", "endCursor"))


def start_of(case: str, *path: str | int) -> Earlier:
    return Earlier(case, (*path, "pageInfo", "startCursor"))


def pages(
    label: str,
    query: str,
    path: tuple[str | int, ...],
    viewer: str | None = None,
    size: int = 3,
    **fixed: Any,
) -> Iterator[Case]:
    """Forward and backward pages of ``size``, the cursors from the pages before; first: 0."""
    back = max(1, size - 1)
    yield Case(f"{label}: first", query, {**fixed, "first": size}, viewer)
    yield Case(
        f"{label}: first, after",
        query,
        {**fixed, "first": size, "after": end_of(f"{label}: first", *path)},
        viewer,
    )
    yield Case(
        f"{label}: last, before",
        query,
        {**fixed, "last": back, "before": start_of(f"{label}: first, after", *path)},
        viewer,
    )
    yield Case(f"{label}: last", query, {**fixed, "last": back}, viewer)
    yield Case(
        f"{label}: last, before the last",
        query,
        {**fixed, "last": back, "before": start_of(f"{label}: last", *path)},
        viewer,
    )
    yield Case(
        f"{label}: first, after, before",
        query,
        {
            **fixed,
            "first": size,
            "after": end_of(f"{label}: first", *path),
            "before": end_of(f"{label}: first, after", *path),
        },
        viewer,
    )
    yield Case(f"{label}: first 0", query, {**fixed, "first": 0}, viewer)
    yield Case(f"{label}: default page", query, fixed, viewer)


def ordered(
    label: str,
    query: str,
    path: tuple[str | int, ...],
    fields: list[str],
    viewer: str | None = None,
    size: int = 4,
    **fixed: Any,
) -> Iterator[Case]:
    """Every orderBy field both ways, with pages after and before a cursor in that ordering."""
    for name in fields:
        for direction in ("ASC", "DESC"):
            order = {"field": name, "direction": direction}
            first = f"{label}: by {name} {direction}"
            yield Case(first, query, {**fixed, "orderBy": order, "first": size}, viewer)
            yield Case(
                f"{first}, after",
                query,
                {**fixed, "orderBy": order, "first": size, "after": end_of(first, *path)},
                viewer,
            )
            yield Case(
                f"{first}, last before",
                query,
                {**fixed, "orderBy": order, "last": 2, "before": end_of(first, *path)},
                viewer,
            )
        yield Case(
            f"{label}: by {name}, default direction",
            query,
            {**fixed, "orderBy": {"field": name}, "first": 3},
            viewer,
        )


def corpus(world: World) -> list[Case]:
    gid = world.gid
    alice_post = gid("Post", world.posts[world.alice][0])
    alice_draft = gid("Post", world.drafts[world.alice][0])
    alice_order = gid("Order", world.orders[world.alice][0])
    alice_account = gid("Account", world.accounts[world.alice])
    every_type = {
        "User": gid("User", world.bob),
        "Post": alice_post,
        "Tag": gid("Tag", world.tags["gamma"]),
        "Comment": Earlier("post comments: first", ("post", "comments", "edges", 0, "node", "id")),
        "Product": gid("Product", world.products[2]),
        "Order": alice_order,
        "Account": alice_account,
        "Transfer": gid("Transfer", world.transfers[0]),
    }
    cases = [
        # ---- the workloads
        Case("W1 feed", W1_FEED),
        Case("W2 people", W2_PEOPLE),
        Case("W3 node", W3_NODE, {"postId": alice_post}),
        Case("W3 node, a draft, anonymous", W3_NODE, {"postId": alice_draft}),
        Case("W3 node, a draft, its author", W3_NODE, {"postId": alice_draft}, "alice"),
        Case("W3 node, a draft, another user", W3_NODE, {"postId": alice_draft}, "bob"),
        # ---- Query.users
        *pages("users", USERS, ("users",)),
        *ordered("users", USERS, ("users",), ["CREATED_AT", "USERNAME", "LAST_LOGIN_AT"]),
        Case("users: search", USERS, {"filter": {"search": "member1"}, "first": 20}),
        Case("users: search by email, anonymous", USERS, {"filter": {"search": "@example"}}),
        Case("users: search by email, admin", USERS, {"filter": {"search": "@example"}}, "admin"),
        Case("users: active", USERS, {"filter": {"isActive": True}, "last": 4}),
        Case("users: inactive", USERS, {"filter": {"isActive": False}}),
        Case(
            "users: created between",
            USERS,
            {
                "filter": {
                    "createdAfter": "2026-01-01T00:01:00Z",
                    "createdBefore": "2026-01-01T00:15:00Z",
                },
                "orderBy": {"field": "USERNAME", "direction": "DESC"},
            },
        ),
        # ---- Query.posts
        *pages("posts", POSTS, ("posts",)),
        *ordered("posts", POSTS, ("posts",), ["CREATED_AT", "PUBLISHED_AT", "TITLE"]),
        *ordered(
            "posts, admin", POSTS, ("posts",), ["PUBLISHED_AT"], "admin", filter={"published": None}
        ),
        Case("posts: by author", POSTS, {"filter": {"authorId": gid("User", world.bob)}}),
        Case(
            "posts: by author, their drafts",
            POSTS,
            {"filter": {"authorId": gid("User", world.alice), "published": False}},
            "alice",
        ),
        Case("posts: drafts, anonymous", POSTS, {"filter": {"published": False}}),
        Case("posts: drafts, admin", POSTS, {"filter": {"published": False}, "first": 5}, "admin"),
        Case("posts: by tag", POSTS, {"filter": {"tag": "delta"}, "first": 5}),
        Case("posts: search", POSTS, {"filter": {"search": "BOB POST"}}),
        Case(
            "posts: published between",
            POSTS,
            {
                "filter": {
                    "publishedAfter": "2026-01-01T01:50:00Z",
                    "publishedBefore": "2026-01-01T02:10:00Z",
                },
                "orderBy": {"field": "PUBLISHED_AT", "direction": "ASC"},
            },
        ),
        # ---- Query.tags
        *pages("tags", TAGS, ("tags",)),
        # ---- Query.products
        *pages("products", PRODUCTS, ("products",)),
        *ordered("products", PRODUCTS, ("products",), ["NAME", "PRICE", "CREATED_AT"]),
        Case("products: search", PRODUCTS, {"filter": {"search": "product b"}}),
        Case("products: sku prefix", PRODUCTS, {"filter": {"skuPrefix": "SKU-01"}}),
        Case(
            "products: price range",
            PRODUCTS,
            {"filter": {"minPrice": "7.50", "maxPrice": "12"}, "orderBy": {"field": "PRICE"}},
        ),
        Case("products: in stock", PRODUCTS, {"filter": {"inStock": True}, "first": 4}),
        Case("products: out of stock", PRODUCTS, {"filter": {"inStock": False}}),
        # ---- Query.orders
        Case("orders: anonymous", ORDERS_PAGE, {"first": 2}, errors=("UNAUTHENTICATED",)),
        Case("orders: alice", ORDERS_PAGE, {}, "alice"),
        *pages("orders, admin", ORDERS_PAGE, ("orders",), "admin"),
        *ordered("orders, admin", ORDERS_PAGE, ("orders",), ["CREATED_AT"], "admin", 2),
        Case(
            "orders: by status",
            ORDERS_PAGE,
            {"filter": {"status": ["PAID", "PENDING"]}},
            "admin",
        ),
        Case(
            "orders: placed between",
            ORDERS_PAGE,
            {
                "filter": {
                    "placedAfter": "2026-01-14T00:00:00Z",
                    "placedBefore": "2026-01-15T06:00:00Z",
                }
            },
            "admin",
        ),
        # ---- User.posts
        *pages("user posts", USER_POSTS, ("user", "posts"), username="alice"),
        *pages("user posts, own", USER_POSTS, ("user", "posts"), "alice", username="alice"),
        *ordered(
            "user posts",
            USER_POSTS,
            ("user", "posts"),
            ["CREATED_AT", "PUBLISHED_AT", "TITLE"],
            "alice",
            username="alice",
        ),
        Case(
            "user posts, own: by PUBLISHED_AT ASC, after a draft",
            USER_POSTS,
            {
                "username": "alice",
                "orderBy": {"field": "PUBLISHED_AT", "direction": "ASC"},
                "first": 2,
                "after": Earlier(
                    "user posts: by PUBLISHED_AT ASC, after",
                    ("user", "posts", "edges", 0, "cursor"),
                ),
            },
            "alice",
        ),
        Case(
            "user posts, own: by PUBLISHED_AT DESC, before a draft",
            USER_POSTS,
            {
                "username": "alice",
                "orderBy": {"field": "PUBLISHED_AT", "direction": "DESC"},
                "last": 3,
                "before": Earlier(
                    "user posts: by PUBLISHED_AT DESC, after",
                    ("user", "posts", "edges", 1, "cursor"),
                ),
            },
            "alice",
        ),
        Case(
            "user posts: by tag and search",
            USER_POSTS,
            {"username": "bob", "filter": {"tag": "alpha", "search": "post"}},
        ),
        Case(
            "user posts: published between",
            USER_POSTS,
            {
                "username": "alice",
                "filter": {
                    "publishedAfter": "2026-01-01T01:43:00Z",
                    "publishedBefore": "2026-01-01T01:45:00Z",
                },
            },
        ),
        Case(
            "user posts: by their author",
            USER_POSTS,
            {"username": "alice", "filter": {"authorId": gid("User", world.alice)}},
        ),
        Case(
            "user posts: by another author",
            USER_POSTS,
            {"username": "alice", "filter": {"authorId": gid("User", world.bob)}},
        ),
        Case(
            "user posts: drafts, admin",
            USER_POSTS,
            {"username": "bob", "filter": {"published": False}},
            "admin",
        ),
        # ---- User.comments
        *pages("user comments", USER_COMMENTS, ("user", "comments"), username="member03"),
        # ---- User.orders (private: the user themself and admins)
        *pages("user orders", USER_ORDERS, ("user", "orders"), "alice", 2, username="alice"),
        *ordered(
            "user orders",
            USER_ORDERS,
            ("user", "orders"),
            ["CREATED_AT"],
            "admin",
            2,
            username="alice",
        ),
        Case(
            "user orders: filtered",
            USER_ORDERS,
            {"username": "alice", "filter": {"status": ["SHIPPED", "CANCELLED"]}},
            "alice",
        ),
        Case(
            "user orders: placed between",
            USER_ORDERS,
            {
                "username": "alice",
                "filter": {
                    "placedAfter": "2026-01-14T22:00:00Z",
                    "placedBefore": "2026-01-15T00:00:00Z",
                },
            },
            "alice",
        ),
        Case(
            "user orders: another user's",
            USER_ORDERS,
            {"username": "alice", "first": 2},
            "bob",
            errors=("FORBIDDEN", "FORBIDDEN", "FORBIDDEN"),
        ),
        Case(
            "user orders: anonymous",
            USER_ORDERS,
            {"username": "bob"},
            errors=("FORBIDDEN", "FORBIDDEN", "FORBIDDEN"),
        ),
        # ---- Post.comments
        *pages("post comments", POST_COMMENTS, ("post", "comments"), id=alice_post),
        *ordered(
            "post comments",
            POST_COMMENTS,
            ("post", "comments"),
            ["CREATED_AT"],
            size=2,
            id=alice_post,
        ),
        Case("post comments: a draft's, its author", POST_COMMENTS, {"id": alice_draft}, "alice"),
        # ---- Tag.posts
        *pages("tag posts", TAG_POSTS, ("tag", "posts"), name="alpha"),
        *ordered(
            "tag posts",
            TAG_POSTS,
            ("tag", "posts"),
            ["CREATED_AT", "PUBLISHED_AT", "TITLE"],
            name="gamma",
        ),
        Case("tag posts: admin sees no drafts", TAG_POSTS, {"name": "zeta"}, "admin"),
        # ---- Account.transfers (private: the owner and admins)
        *pages(
            "account transfers",
            ACCOUNT_TRANSFERS,
            ("viewer", "accounts", 0, "transfers"),
            "alice",
            1,
        ),
        Case("account transfers: bob", ACCOUNT_TRANSFERS, {"first": 5}, "bob"),
        Case("account transfers: anonymous", ACCOUNT_TRANSFERS, {}),
        Case(
            "account transfers: the other side's",
            OTHER_SIDES_TRANSFERS,
            viewer="alice",
            errors=("FORBIDDEN",),
        ),
        Case("account transfers: the other side's, admin", OTHER_SIDES_TRANSFERS, viewer="admin"),
        # ---- node and nodes, every Node type
        *(
            Case(f"node: {type_name}", NODE, {"id": gid_}, "admin")
            for type_name, gid_ in every_type.items()
        ),
        Case("node: an order, its customer", NODE, {"id": alice_order}, "alice"),
        Case("node: an order, someone else", NODE, {"id": alice_order}, "bob"),
        Case("node: an account, someone else", NODE, {"id": alice_account}, "bob"),
        Case("node: a draft, anonymous", NODE, {"id": alice_draft}),
        Case("node: unknown id", NODE, {"id": gid("Post", 999_999)}),
        Case("node: malformed id", NODE, {"id": "garbage"}, errors=("BAD_USER_INPUT",)),
        Case("node: unknown type", NODE, {"id": "Rm9vOjE"}),
        Case("nodes: every type", NODES, {"ids": list(every_type.values())}, "admin"),
        Case(
            "nodes: every type, anonymous",
            NODES,
            {"ids": [*every_type.values(), alice_draft, gid("User", 999_999)]},
        ),
        Case(
            "nodes: one malformed",
            NODES,
            {"ids": [alice_post, "garbage"]},
            errors=("BAD_USER_INPUT",),
        ),
        # ---- fragments, directives, aliases, __typename
        Case("fragments: named, inline, on an interface", FRAGMENTS),
        *(
            Case(
                f"directives: withPosts={with_posts}, skipCount={skip_count}",
                DIRECTIVES,
                {"withPosts": with_posts, "skipCount": skip_count},
            )
            for with_posts in (True, False)
            for skip_count in (True, False)
        ),
        Case("aliases", ALIASES),
        Case("fields merged from fragments, a variable's default", MERGED),
        Case("a variable's default overridden", MERGED, {"first": 3}),
        Case("two operations, one chosen", TWO_OPERATIONS, operation="Viewer", viewer="bob"),
        Case("introspection", INTROSPECTION),
        Case("__typename everywhere", TYPENAMES),
        # ---- errors and null propagation
        Case(
            "errors: private fields in a list",
            FORBIDDEN_IN_A_LIST,
            viewer="alice",
            errors=("FORBIDDEN",) * 8,
        ),
        Case(
            "errors: another's balance, up to a nullable list",
            BALANCES_OF_TRANSFER_SIDES,
            viewer="alice",
            errors=("FORBIDDEN",),  # both sides' errors null the same list; one is reported
        ),
        Case("errors: bad root cursor", BAD_ROOT_CURSOR, errors=("BAD_USER_INPUT",)),
        Case("errors: bad nested cursor", BAD_NESTED_CURSOR, errors=("BAD_USER_INPUT",)),
        Case(
            "errors: bad cursor, nullable field",
            BAD_NULLABLE_CURSOR,
            viewer="alice",
            errors=("BAD_USER_INPUT",),
        ),
        Case(
            "errors: a cursor of another connection",
            POSTS,
            {"first": 2, "after": end_of("users: first", "users")},
            errors=("BAD_USER_INPUT",),
        ),
        Case(
            "errors: a cursor of another user's posts",
            USER_POSTS,
            {"username": "bob", "first": 2, "after": end_of("user posts: first", "user", "posts")},
            errors=("BAD_USER_INPUT",),
        ),
        Case(
            "errors: a cursor of another tag's posts",
            TAG_POSTS,
            {"name": "beta", "first": 2, "after": end_of("tag posts: first", "tag", "posts")},
            errors=("BAD_USER_INPUT",),
        ),
        Case(
            "errors: a cursor of another filter",
            POSTS,
            {"first": 2, "filter": {"search": "post"}, "after": end_of("posts: first", "posts")},
            errors=("BAD_USER_INPUT",),
        ),
        Case(
            "errors: a cursor of another ordering",
            POSTS,
            {
                "first": 2,
                "after": end_of("posts: by TITLE ASC", "posts"),
                "orderBy": {"field": "TITLE", "direction": "DESC"},
            },
            errors=("BAD_USER_INPUT",),
        ),
        Case("errors: first and last", FIRST_AND_LAST, errors=("BAD_USER_INPUT",)),
        Case("errors: first and last, nested", NESTED_FIRST_AND_LAST, errors=("BAD_USER_INPUT",)),
        Case(
            "errors: page size over the cap", PAGE_SIZES, {"first": 101}, errors=("BAD_USER_INPUT",)
        ),
        Case("errors: negative page size", PAGE_SIZES, {"first": -1}, errors=("BAD_USER_INPUT",)),
        Case(
            "errors: post by a user's id",
            POST_BY_ID,
            {"id": gid("User", world.alice)},
            errors=("BAD_USER_INPUT",),
        ),
        Case("errors: user by nothing", USER_BY, errors=("BAD_USER_INPUT",)),
        Case(
            "errors: user by id and username",
            USER_BY,
            {"id": gid("User", world.bob), "username": "bob"},
            errors=("BAD_USER_INPUT",),
        ),
        Case(
            "errors: sales report, anonymous",
            SALES,
            ALL_TIME,
            errors=("UNAUTHENTICATED",),
        ),
        Case(
            "errors: sales report, not an admin",
            SALES,
            ALL_TIME,
            "alice",
            errors=("FORBIDDEN",),
        ),
        Case("errors: unknown field", UNKNOWN_FIELD, errors=("BAD_USER_INPUT",)),
        Case(
            "errors: variable of the wrong type",
            WRONG_VARIABLE,
            {"first": "ten"},
            errors=("BAD_USER_INPUT",),
        ),
        # ---- lookups and the viewer
        Case("post by id", POST_BY_ID, {"id": alice_post}),
        Case("user by id", USER_BY, {"id": gid("User", world.alice)}),
        Case("user by username, unknown", USER_BY, {"username": "nobody"}),
        Case("product by sku", PRODUCT_BY, {"sku": "SKU-001"}),
        Case("product by id", PRODUCT_BY, {"id": gid("Product", world.products[0])}),
        Case("tag by name", TAG_BY_NAME, {"name": "epsilon"}),
        Case("viewer: anonymous", VIEWER_IN_FULL),
        Case("viewer: alice", VIEWER_IN_FULL, viewer="alice"),
        Case("viewer: admin", VIEWER_IN_FULL, viewer="admin"),
        Case("viewer: an unknown token", VIEWER_IN_FULL, viewer="stranger"),
        Case("sales report: admin", SALES, ALL_TIME, "admin"),
    ]
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


# ---------------------------------------------------------------- servers and answers


@pytest.fixture(scope="module")
async def reference_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(
        settings.model_copy(update={"query_lane": False, "driver_reads": False}),
        schema=reference,
    )
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def resolved(value: Any, answers: dict[str, Any]) -> Any:
    if isinstance(value, Earlier):
        found = answers[value.case]["data"]
        for step in value.path:
            found = found[step]
        assert found is not None, f"{value.case} has no value at {value.path}"
        return found
    if isinstance(value, dict):
        return {key: resolved(item, answers) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved(item, answers) for item in value]
    return value


def codes(body: dict[str, Any]) -> list[str]:
    return sorted(error.get("extensions", {}).get("code", "") for error in body.get("errors", []))


async def ask(http: httpx.AsyncClient, request: dict[str, Any], token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post("/graphql", json=request, headers=headers)
    return response.status_code, response.json()


def resolver_modules(schema: strawberry.Schema) -> set[str]:
    return {
        getattr(graphql_field.resolve, "__module__", "")
        for graphql_type in schema._schema.type_map.values()
        if isinstance(graphql_type, GraphQLObjectType)
        for graphql_field in graphql_type.fields.values()
    }


def test_the_reference_serves_the_apps_schema_on_strawberry_and_graphql_core_alone():
    assert reference.as_str() == app_schema.as_str()
    assert app_schema.execution_context_class is PlannedExecutor
    assert reference.execution_context_class is not PlannedExecutor
    assert "gql_app.engine.fields" in resolver_modules(app_schema)
    assert "gql_app.engine.fields" not in resolver_modules(reference)


async def test_the_app_answers_as_strawberry_and_graphql_core_do(
    client, full_path_client, reference_client, world
):
    tokens = {**world.tokens, "stranger": "not-a-token"}
    answers: dict[str, Any] = {}
    differences: dict[str, Any] = {}
    unexpected: dict[str, Any] = {}
    for case in corpus(world):
        # Given a case of the corpus (its cursors taken from the app's earlier answers)
        request = {
            "query": case.query,
            "variables": resolved(case.variables, answers),
            "operationName": case.operation,
        }
        token = tokens[case.viewer] if case.viewer else None
        # When the app, the full path and the reference answer it
        app = await ask(client, request, token)
        full = await ask(full_path_client, request, token)
        ref = await ask(reference_client, request, token)
        answers[case.name] = app[1]
        # Then the three answers are the same, and hold the errors the case expects
        if not app == full == ref:
            differences[case.name] = {"app": app, "full path": full, "reference": ref}
        if codes(app[1]) != sorted(case.errors) or ("data" not in app[1] and not case.errors):
            unexpected[case.name] = app
    assert differences == {}, json.dumps(differences, indent=1)
    assert unexpected == {}, json.dumps(unexpected, indent=1)
    # and every Node type was found by node(id) and by nodes(ids)
    assert [answers[f"node: {name}"]["data"]["node"]["__typename"] for name in NODE_TYPES] == (
        NODE_TYPES
    )
    assert [n["__typename"] for n in answers["nodes: every type"]["data"]["nodes"]] == NODE_TYPES


# ---------------------------------------------------------------- the corpus covers the schema


def connection_fields() -> dict[str, dict[str, Any]]:
    """``Parent.field`` -> its arguments, for every connection field of the schema."""
    found = {}
    for graphql_type in app_schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for name, graphql_field in graphql_type.fields.items():
            if get_named_type(graphql_field.type).name.endswith("Connection"):
                found[f"{graphql_type.name}.{name}"] = graphql_field.args
    return found


class Uses(Visitor):
    """What a case exercises: ``(Parent.field, argument or orderBy field or totalCount)``."""

    def __init__(self, type_info: TypeInfo, variables: dict[str, Any]) -> None:
        super().__init__()
        self.type_info = type_info
        self.variables = variables
        self.found: set[tuple[str, str]] = set()
        self.connections: list[str | None] = []

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        definition = self.type_info.get_field_def()
        key = f"{parent.name}.{node.name.value}" if parent else None
        if node.name.value == "totalCount" and self.connections and self.connections[-1]:
            self.found.add((self.connections[-1], "totalCount"))
        is_connection = definition is not None and get_named_type(definition.type).name.endswith(
            "Connection"
        )
        self.connections.append(key if is_connection else None)
        if key is None or not is_connection:
            return
        for argument in node.arguments or ():
            value: Any = argument.value
            if isinstance(value, VariableNode):
                value = self.variables.get(value.name.value)
                if value is None:
                    continue
            self.found.add((key, argument.name.value))
            if isinstance(value, ObjectValueNode):
                value = {f.name.value: getattr(f.value, "value", f.value) for f in value.fields}
            if argument.name.value == "orderBy":
                self.found.add((key, f"orderBy {value['field']}"))
            if argument.name.value == "filter":
                self.found |= {(key, f"filter {name}") for name in value}

    def leave_field(self, *_: Any) -> None:
        self.connections.pop()


async def test_the_corpus_covers_every_connection_field_argument_filter_and_ordering(world):
    # Given what the corpus exercises: connection fields, their arguments, filters, orderings
    # and totalCount
    used: set[tuple[str, str]] = set()
    for case in corpus(world):
        type_info = TypeInfo(app_schema._schema)
        uses = Uses(type_info, case.variables)
        visit(parse(case.query), TypeInfoVisitor(type_info, uses))
        used |= uses.found
    # Then every connection field of the schema is there with every argument it takes,
    # every field of its filter, every value of its orderBy field, and its totalCount
    required = set()
    for key, arguments in connection_fields().items():
        required |= {(key, name) for name in arguments}
        required.add((key, "totalCount"))
        order = arguments.get("orderBy")
        if order is not None:
            order_type = get_named_type(order.type)
            assert isinstance(order_type, GraphQLInputObjectType)
            values = get_named_type(order_type.fields["field"].type).values  # type: ignore[attr-defined]
            required |= {(key, f"orderBy {value}") for value in values}
        given = arguments.get("filter")
        if given is not None:
            filter_type = get_named_type(given.type)
            assert isinstance(filter_type, GraphQLInputObjectType)
            required |= {(key, f"filter {name}") for name in filter_type.fields}
    assert sorted(required - used) == []
    assert sorted(connection_fields()) == [
        "Account.transfers",
        "Post.comments",
        "Query.orders",
        "Query.posts",
        "Query.products",
        "Query.tags",
        "Query.users",
        "Tag.posts",
        "User.comments",
        "User.orders",
        "User.posts",
    ]
