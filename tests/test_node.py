"""Relay Object Identification: node, nodes, global IDs, and the lookups by natural key.

A global ID that does not decode is BAD_USER_INPUT; one that decodes but names
nothing (no such type, no possible primary key, no such row) or something the viewer
may not see is null, for node(id) and in its position in nodes(ids).

Read-only against the shared ``world``.
"""

from __future__ import annotations

import base64

import pytest

from tests.conftest import GraphQLClient, TaskWatch, close_leaked_sessions, in_use
from tests.factories import World

NODE = """
query NodeById($id: ID!) {
  node(id: $id) {
    __typename
    id
    ... on User { username }
    ... on Post { title }
    ... on Tag { name }
    ... on Comment { body }
    ... on Product { sku }
    ... on Order { status }
    ... on Account { currency balance }
    ... on Transfer { amount }
  }
}
"""

NODES = """
query NodesByIds($ids: [ID!]!) {
  nodes(ids: $ids) {
    __typename
    id
    ... on User { username }
    ... on Post { title }
    ... on Tag { name }
    ... on Product { sku }
    ... on Order { status }
  }
}
"""

FIRST_COMMENT = """
query FirstComment($post: ID!) { post(id: $post) { comments(first: 1) { nodes { id } } } }
"""

POST = """
query PostById($id: ID!) { post(id: $id) { id title } }
"""

USER = """
query UserBy($id: ID, $username: String) { user(id: $id, username: $username) { id username } }
"""

PRODUCT = """
query ProductBy($id: ID, $sku: String) {
  product(id: $id, sku: $sku) { id sku name price stock }
}
"""

TAG = """
query TagByName($name: String!) { tag(name: $name) { id name postCount } }
"""

NODES_BESIDE_A_LOADED_FIELD = """
query NodesBesideLoaded($ids: [ID!]!) {
  alice: user(username: "alice") { profile { displayName } }
  nodes(ids: $ids) { id }
}
"""


def raw_id(text: str) -> str:
    """A global ID of any content, encoded the way the server encodes its own."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


# ---------------------------------------------------------------- node, per type


async def comment_gid(gql, world: World) -> str:
    post = world.gid("Post", world.posts[world.alice][0])
    body = await gql(FIRST_COMMENT, {"post": post})
    return body["data"]["post"]["comments"]["nodes"][0]["id"]


@pytest.mark.parametrize(
    "kind", ["User", "Post", "Tag", "Comment", "Product", "Order", "Account", "Transfer"]
)
async def test_node_resolves_every_node_type(gql, world, kind):
    # Given one object of each Node type that alice may see
    gid = {
        "User": world.gid("User", world.bob),
        "Post": world.gid("Post", world.posts[world.alice][0]),
        "Tag": world.gid("Tag", world.tags["gamma"]),
        "Product": world.gid("Product", world.products[4]),
        "Order": world.gid("Order", world.orders[world.alice][1]),
        "Account": world.gid("Account", world.accounts[world.alice]),
        "Transfer": world.gid("Transfer", world.transfers[1]),
    }.get(kind) or await comment_gid(gql, world)
    # When alice fetches it by node(id)
    body = await gql(NODE, {"id": gid}, token=world.tokens["alice"])
    # Then it comes back as that type, with its own fields
    fields = {
        "User": {"username": "bob"},
        "Post": {"title": "alice post 0"},
        "Tag": {"name": "gamma"},
        "Comment": {"body": "comment 0 on alice post 0"},
        "Product": {"sku": "SKU-004"},
        "Order": {"status": "SHIPPED"},
        "Account": {"currency": "USD", "balance": "100.00"},
        "Transfer": {"amount": "2.50"},
    }[kind]
    assert body == {"data": {"node": {"__typename": kind, "id": gid, **fields}}}


async def test_node_of_a_missing_object_is_null(gql, world):
    body = await gql(NODE, {"id": world.gid("Post", 9_999_999)})
    assert body == {"data": {"node": None}}


# ---------------------------------------------------------------- nodes


async def test_nodes_keeps_the_order_of_ids_and_nulls_missing_or_invisible(gql, world):
    # Given a mix of visible, invisible (bob's draft, bob's order) and missing ids
    ids = [
        world.gid("Tag", world.tags["beta"]),
        world.gid("User", world.bob),
        world.gid("Post", world.drafts[world.bob][0]),
        world.gid("Post", 9_999_999),
        world.gid("Order", world.orders[world.bob][0]),
        world.gid("Product", world.products[5]),
        world.gid("Post", world.posts[world.alice][3]),
        world.gid("Tag", world.tags["beta"]),
        world.gid("Order", world.orders[world.alice][0]),
    ]
    # When alice fetches them all at once
    body = await gql(NODES, {"ids": ids}, token=world.tokens["alice"])
    # Then there is one entry per id, in order, null where missing or not hers to see
    assert body["data"]["nodes"] == [
        {"__typename": "Tag", "id": ids[0], "name": "beta"},
        {"__typename": "User", "id": ids[1], "username": "bob"},
        None,
        None,
        None,
        {"__typename": "Product", "id": ids[5], "sku": "SKU-005"},
        {"__typename": "Post", "id": ids[6], "title": "alice post 3"},
        {"__typename": "Tag", "id": ids[7], "name": "beta"},
        {"__typename": "Order", "id": ids[8], "status": "PAID"},
    ]


async def test_nodes_takes_one_hundred_ids(gql, world, checkouts):
    # Given exactly 100 ids
    ids = [world.gid("Post", pk) for pk in sorted(world.posts[u][0] for u in world.posts)]
    ids = (ids * 4)[:100]
    # When they are fetched
    body = await gql(NODES, {"ids": ids})
    # Then all 100 come back, in order, read on one connection
    assert [node["id"] for node in body["data"]["nodes"]] == ids
    assert checkouts.count == 1


NODES_LITERAL = "{ nodes(ids: [%s]) { id } }"


@pytest.mark.parametrize("path", ["lane", "full path"])
@pytest.mark.parametrize("given", ["variable", "literal"])
async def test_more_than_one_hundred_ids_are_refused_before_any_round_trip(
    gql, full_path_client, world, sql, checkouts, path, given
):
    # Given 101 ids, in a variable or written in the document
    ids = [world.gid("Product", world.products[i % 12]) for i in range(101)]
    client = gql if path == "lane" else GraphQLClient(full_path_client)
    # When they are sent to nodes(ids:)
    if given == "variable":
        body = await client(NODES, {"ids": ids}, expect_errors=True)
    else:
        listed = ", ".join(f'"{gid}"' for gid in ids)
        body = await client(NODES_LITERAL % listed, expect_errors=True)
    # Then the request is refused with the other limits, before execution: no data,
    # no statement, and no connection taken from the pool (so not even BEGIN)
    assert body == {
        "errors": [
            {
                "message": "`ids` takes at most 100 IDs; got 101.",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }
    assert sql.count == 0
    assert checkouts.count == 0


# ---------------------------------------------------------------- IDs that name nothing

UNDECODABLE = {
    # IDs that are not the server's encoding of "<Type>:<digits>": BAD_USER_INPUT
    "not-base64": "!!not base64!!",
    "empty": "",
    "no-type": raw_id(":1"),
    "no-pk": raw_id("User"),
    "non-numeric-pk": raw_id("User:abc"),
    "negative-pk": raw_id("User:-1"),
    "float-pk": raw_id("Post:1.5"),
    "leading-zero": raw_id("User:01"),
    "padded": raw_id("User:1") + "==",
    "too-long": raw_id("User:" + "9" * 60),
}

NAMES_NOTHING = {
    # Well-formed IDs no object has: null, and no SQL to find that out
    "unknown-type": raw_id("Foo:1"),
    "zero-pk": raw_id("User:0"),
    "pk-beyond-bigint": raw_id("User:9223372036854775808"),
    "huge-pk": raw_id("User:99999999999999999999"),
}


@pytest.mark.parametrize("kind", list(UNDECODABLE))
async def test_node_with_an_undecodable_id_is_bad_user_input(gql, world, kind):
    # When node(id) gets an ID that does not decode
    body = await gql(NODE, {"id": UNDECODABLE[kind]}, expect_errors=True)
    # Then it is BAD_USER_INPUT (node is nullable, so data.node is null)
    assert body["data"] == {"node": None}
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"].startswith("Invalid ID: ")


@pytest.mark.parametrize("kind", list(NAMES_NOTHING))
async def test_node_of_a_well_formed_id_that_names_nothing_is_null(gql, world, sql, kind):
    # When node(id) gets a well-formed ID of a type the server does not have, or whose
    # number no primary key can be
    body = await gql(NODE, {"id": NAMES_NOTHING[kind]})
    # Then it is null, as for a missing row, found out without a statement
    assert body == {"data": {"node": None}}
    assert sql.count == 0


async def test_nodes_gives_null_for_each_id_that_names_nothing(gql, world, sql):
    # Given found ids around well-formed ones that name nothing (no such type, no such
    # primary key, no such row) and one the viewer may not see (bob's draft)
    bob, post = world.gid("User", world.bob), world.gid("Post", world.posts[world.alice][0])
    ids = [bob, *NAMES_NOTHING.values(), world.gid("Post", 9_999_999)]
    ids += [world.gid("Post", world.drafts[world.bob][0]), post]
    # When they are fetched anonymously
    body = await gql(NODES, {"ids": ids})
    # Then each of those is null in its position, and the rest are found; the users
    # and the posts are read by one statement each
    assert body == {
        "data": {
            "nodes": [
                {"__typename": "User", "id": bob, "username": "bob"},
                *[None] * (len(NAMES_NOTHING) + 2),
                {"__typename": "Post", "id": post, "title": "alice post 0"},
            ]
        }
    }
    assert sql.count == 2


@pytest.mark.parametrize("kind", ["not-base64", "non-numeric-pk", "negative-pk", "leading-zero"])
async def test_nodes_with_an_undecodable_id_is_bad_user_input(gql, world, sql, kind):
    # Given a found id next to one that does not decode
    ids = [world.gid("User", world.bob), UNDECODABLE[kind]]
    # When they are fetched
    body = await gql(NODES, {"ids": ids}, expect_errors=True)
    # Then the whole list is refused (nodes is non-null), before any object is read
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] == f"Invalid ID: {UNDECODABLE[kind]!r}."
    assert body["errors"][0]["path"] == ["nodes"]
    assert sql.count == 0


async def test_nodes_with_an_undecodable_id_among_valid_ids_leaves_no_work_behind(
    gql, world, sql, engine
):
    # Given valid ids followed by an undecodable one, next to a field with loads queued
    ids = [world.gid("User", world.bob), world.gid("Post", world.posts[world.bob][0])]
    ids.append(raw_id("User:abc"))
    tasks = TaskWatch()
    try:
        # When the request is answered
        body = await gql(NODES_BESIDE_A_LOADED_FIELD, {"ids": ids}, expect_errors=True)
        statements_at_response = sql.count
        working_at_response = tasks.working()
        await tasks.settle()  # every task the request started has finished
        # Then it is refused, and nothing runs on the database after the response:
        # no task of it left working, no statement, no connection checked out of the pool
        assert body["data"] is None
        assert codes(body) == ["BAD_USER_INPUT"]
        assert working_at_response == set()
        assert sql.statements[statements_at_response:] == []
        assert in_use(engine) == 0
    finally:
        await close_leaked_sessions()


# ---------------------------------------------------------------- typed lookups


async def test_post_with_the_id_of_a_user_is_bad_user_input(gql, world):
    body = await gql(POST, {"id": world.gid("User", world.alice)}, expect_errors=True)
    assert body["data"] == {"post": None}
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_post_by_id(gql, world):
    gid = world.gid("Post", world.posts[world.bob][2])
    body = await gql(POST, {"id": gid})
    assert body == {"data": {"post": {"id": gid, "title": "bob post 2"}}}


async def test_user_by_id_or_username(gql, world):
    bob = {"id": world.gid("User", world.bob), "username": "bob"}
    by_username = await gql(USER, {"username": "bob"})
    by_id = await gql(USER, {"id": world.gid("User", world.bob)})
    unknown = await gql(USER, {"username": "nobody"})
    assert by_username == {"data": {"user": bob}}
    assert by_id == {"data": {"user": bob}}
    assert unknown == {"data": {"user": None}}


@pytest.mark.parametrize("both", [False, True], ids=["neither", "both"])
async def test_user_needs_exactly_one_of_id_and_username(gql, world, both):
    variables = {"id": world.gid("User", world.bob), "username": "bob"} if both else {}
    body = await gql(USER, variables, expect_errors=True)
    assert body["data"] == {"user": None}
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_product_by_sku_and_by_id(gql, world):
    gid = world.gid("Product", world.products[4])
    expected = {"id": gid, "sku": "SKU-004", "name": "Product E", "price": "9.50", "stock": 45}
    by_sku = await gql(PRODUCT, {"sku": "SKU-004"})
    by_id = await gql(PRODUCT, {"id": gid})
    unknown = await gql(PRODUCT, {"sku": "SKU-999"})
    assert by_sku == {"data": {"product": expected}}
    assert by_id == {"data": {"product": expected}}
    assert unknown == {"data": {"product": None}}


async def test_tag_by_name(gql, world):
    gamma = await gql(TAG, {"name": "gamma"})
    unknown = await gql(TAG, {"name": "no-such-tag"})
    assert gamma == {
        "data": {
            "tag": {"id": world.gid("Tag", world.tags["gamma"]), "name": "gamma", "postCount": 32}
        }
    }
    assert unknown == {"data": {"tag": None}}
