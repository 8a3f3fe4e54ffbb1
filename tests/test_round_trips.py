"""Round trips of a query operation: one whose plan sends at most one statement sends
it alone (no BEGIN, no ROLLBACK), a to-one row the document reads beside its parent
comes in the parent's statement, and a query of several statements keeps one
REPEATABLE READ snapshot. Every command to the database is counted, BEGIN and
ROLLBACK included (they do not pass the engine's cursor events)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gql_app.data.driver_reads import BEGIN_READ_ONLY, ReadDB
from tests.documents import W3_NODE

BEGIN = BEGIN_READ_ONLY
ROLLBACK = "ROLLBACK"

POST_TAGS = "query($id: ID!) { node(id: $id) { ... on Post { title tags { name } } } }"
COMMENT = "query($id: ID!) { node(id: $id) { ... on Comment { body post { title } } } }"
TRANSFER = "query($id: ID!) { node(id: $id) { ... on Transfer { amount } } }"
POST_AUTHOR = "query($id: ID!) { post(id: $id) { title author { username isActive } } }"
COMMENT_CHAIN = (
    "query($id: ID!) { node(id: $id) { ... on Comment { author { username } "
    "post { title author { username } } } } }"
)


@dataclass
class RoundTrips:
    """Commands sent while recording: statements (the engine's cursor events) and
    what the driver ran besides (BEGIN, ROLLBACK), in order."""

    sent: list[str] = field(default_factory=list)

    @property
    def statements(self) -> list[str]:
        return [command for command in self.sent if command not in (BEGIN, ROLLBACK)]

    @property
    def kinds(self) -> list[str]:
        """BEGIN, ROLLBACK, and the first word of each statement."""
        return [
            command if command in (BEGIN, ROLLBACK) else command.split(None, 1)[0]
            for command in self.sent
        ]


def recording(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    trips = RoundTrips()

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        trips.sent.append(sql)

    original = asyncpg.Connection.execute

    async def execute(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if query in (BEGIN, ROLLBACK):
            trips.sent.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", execute)
    event.listen(engine.sync_engine, "before_cursor_execute", statement)
    yield trips
    event.remove(engine.sync_engine, "before_cursor_execute", statement)


@pytest.fixture
def trips(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    yield from recording(engine, monkeypatch)


@pytest.fixture
def stack_trips(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    yield from recording(stack.engine, monkeypatch)


# ---------------------------------------------------------------- one statement, no transaction


async def test_w3_is_one_statement_without_begin_or_rollback(gql, world, trips):
    post = world.posts[world.alice][0]
    body = await gql(W3_NODE, {"postId": world.gid("Post", post)})
    assert body["data"] == {"node": {"title": "alice post 0", "author": {"username": "alice"}}}
    assert trips.kinds == ["SELECT"]
    assert "LEFT OUTER JOIN users AS j0 ON j0.id = posts.author_id" in trips.sent[0]
    # one key: a scalar parameter, which PostgreSQL plans once (ANY($1) is planned per run)
    assert trips.sent[0].endswith("WHERE posts.id = $1::BIGINT")
    # Twice more: the same single statement (cached plan, primed loader per request)
    for _ in range(2):
        trips.sent.clear()
        assert (await gql(W3_NODE, {"postId": world.gid("Post", post)}))["data"] == body["data"]
        assert trips.kinds == ["SELECT"]


async def test_w3_of_a_draft_is_null_to_others_in_one_statement(gql, world, trips):
    draft = world.drafts[world.alice][0]
    body = await gql(W3_NODE, {"postId": world.gid("Post", draft)})
    assert body["data"] == {"node": None}
    assert trips.kinds == ["SELECT"]


@pytest.mark.parametrize("viewer", ["alice", "admin", "bob"])
async def test_w3_authenticated_keeps_its_transaction(gql, world, trips, viewer):
    """The token's lookup is a statement: with it the operation has two, in one snapshot."""
    draft = world.drafts[world.alice][0]
    body = await gql(W3_NODE, {"postId": world.gid("Post", draft)}, token=world.tokens[viewer])
    if viewer == "bob":
        assert body["data"] == {"node": None}
    else:
        assert body["data"]["node"]["author"] == {"username": "alice"}
    assert trips.kinds == [BEGIN, "SELECT", "SELECT", ROLLBACK]
    assert "auth_tokens" in trips.statements[0]


async def test_a_node_read_without_statements_sends_nothing(gql, world, trips):
    body = await gql('{ node(id: "VXNlcjow") { id } __typename }')  # User:0 names no row
    assert body["data"] == {"node": None, "__typename": "Query"}
    assert trips.sent == []


async def test_a_comment_node_reads_its_post_in_its_statement(gql, world, trips, sql):
    post = world.posts[world.alice][0]
    comment = await first_comment_of(gql, world, post)
    trips.sent.clear()
    body = await gql(COMMENT, {"id": comment})
    assert body["data"]["node"]["post"] == {"title": "alice post 0"}
    assert trips.kinds == ["SELECT"]
    # The comment's author and its post's author: both joined, still one statement
    trips.sent.clear()
    body = await gql(COMMENT_CHAIN, {"id": comment})
    assert body["data"]["node"]["post"]["author"] == {"username": "alice"}
    assert body["data"]["node"]["author"]["username"] != "alice"
    # A joined row's own to-one rows are not joined: a second statement, one snapshot
    assert trips.kinds == [BEGIN, "SELECT", "SELECT", ROLLBACK]


async def test_a_transfer_node_reads_both_accounts_in_its_statement(gql, world, trips):
    transfer = world.gid("Transfer", world.transfers[0])
    assert (await gql(TRANSFER, {"id": transfer}))["data"] == {"node": None}  # anonymous
    assert trips.kinds == ["SELECT"]
    trips.sent.clear()
    body = await gql(TRANSFER, {"id": transfer}, token=world.tokens["admin"])
    assert body["data"]["node"]["amount"] == "10.00"
    assert trips.kinds == [BEGIN, "SELECT", "SELECT", ROLLBACK], trips.sent


async def first_comment_of(gql: Any, world: Any, post: int) -> str:
    """A comment on ``post`` (by alice) written by someone else."""
    body = await gql(
        "query($id: ID!) { post(id: $id) "
        "{ comments(first: 10) { nodes { id author { username } } } } }",
        {"id": world.gid("Post", post)},
    )
    nodes = body["data"]["post"]["comments"]["nodes"]
    return str(next(c["id"] for c in nodes if c["author"]["username"] != "alice"))


# ---------------------------------------------------------------- the joined row's own rules


async def test_an_inactive_author_is_read_as_its_loader_reads_it(stack, stack_trips):
    """Post.author is every author, active or not (the by-id loader has no condition):
    the joined row is that row, and a missing one would be null as the loader's."""
    world = stack.world
    post = world.posts[world.bob][0]
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET is_active = false WHERE id = :id"), {"id": world.bob}
        )
    stack_trips.sent.clear()
    try:
        body = await stack.gql(POST_AUTHOR, {"id": world.gid("Post", post)})
        kinds = stack_trips.kinds
    finally:
        async with stack.engine.begin() as conn:
            await conn.execute(
                text("UPDATE users SET is_active = true WHERE id = :id"), {"id": world.bob}
            )
    assert body["data"]["post"]["author"] == {"username": "bob", "isActive": False}
    assert kinds == ["SELECT"]


# ---------------------------------------------------------------- several statements, one snapshot


async def test_two_statements_share_one_snapshot_while_a_writer_commits(
    stack, stack_trips, monkeypatch
):
    """A tag renamed and committed between the operation's two statements is not seen:
    both read the snapshot of the first."""
    world = stack.world
    post = world.posts[world.alice][1]
    before = await stack.gql(POST_TAGS, {"id": world.gid("Post", post)})
    names = [tag["name"] for tag in before["data"]["node"]["tags"]]
    assert names
    original = ReadDB._fetch
    written: list[str] = []

    async def write_after_the_first(self: ReadDB, statement: Any, params: Any) -> Any:
        rows = await original(self, statement, params)
        if not written:
            written.append("renamed")
            async with stack.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE tags SET name = name || '-renamed' WHERE name = :name"),
                    {"name": names[0]},
                )
        return rows

    stack_trips.sent.clear()
    monkeypatch.setattr(ReadDB, "_fetch", write_after_the_first)
    try:
        during = await stack.gql(POST_TAGS, {"id": world.gid("Post", post)})
        kinds = stack_trips.kinds
        monkeypatch.setattr(ReadDB, "_fetch", original)
        after = await stack.gql(POST_TAGS, {"id": world.gid("Post", post)})
    finally:
        async with stack.engine.begin() as conn:
            await conn.execute(
                text("UPDATE tags SET name = :name WHERE name = :name || '-renamed'"),
                {"name": names[0]},
            )
    assert written == ["renamed"]
    assert during["data"] == before["data"]  # the rename is not in the snapshot
    assert after["data"]["node"]["tags"] != before["data"]["node"]["tags"]
    # The write committed between the two statements of the one transaction
    assert kinds == [BEGIN, "SELECT", "UPDATE", "SELECT", ROLLBACK]


# ---------------------------------------------------------------- a broken connection


async def test_a_connection_broken_at_its_only_statement_is_replaced(
    gql, world, trips, monkeypatch
):
    """The single statement is the connection's first command: found broken there, the
    connection is discarded and the statement sent on another (as BEGIN would be)."""
    original = ReadDB._fetch
    broken: list[asyncpg.Connection] = []

    async def first_one_broken(self: ReadDB, statement: Any, params: Any) -> Any:
        if not broken:
            broken.append(self.driver)
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return await original(self, statement, params)

    monkeypatch.setattr(ReadDB, "_fetch", first_one_broken)
    post = world.posts[world.alice][0]
    body = await gql(W3_NODE, {"postId": world.gid("Post", post)})
    assert body["data"]["node"]["author"] == {"username": "alice"}
    assert len(broken) == 1 and broken[0].is_closed()
    assert trips.kinds == ["SELECT"]
