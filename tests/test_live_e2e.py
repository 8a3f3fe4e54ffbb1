"""Live subscriptions end to end: real ``gql-app serve`` processes, real clients.

- Two workers, many subscribers spread over both, writers over several HTTP
  connections landing on both: every subscriber hears every comment once, in
  commit order (the order a LISTEN of the test's own hears the commits in).
- A PostgreSQL restart (and a stop, then a start) under a running server: the
  subscription ends with SERVICE_UNAVAILABLE, and once the LISTEN connection is
  back a new one works; a subscribe whose setup straddles the loss is refused too.
- An acknowledged connection outlives the connection_init deadline.
- The ``graphql-ws`` npm client (Apollo Client's and urql's) against the server.
- ``logOut`` ends the revoked token's subscriptions on every worker.

Which worker serves a connection is read from the operating system: the server
end of an accepted TCP connection belongs to the worker that accepted it
(``AppServer.worker_of``). The servers run from the ``gql-app`` code of this
checkout, against scratch databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gql_app.data.db import async_url, asyncpg_dsn
from gql_app.data.events import CHANNEL, Topic, decode
from gql_app.relay.ids import encode_id
from tests.conftest import scratch_database
from tests.factories import PASSWORD, World, build_world
from tests.live_support import (
    WITHIN,
    AppServer,
    EmbeddedPostgres,
    LiveSocket,
    app_server,
    embedded_postgres,
    eventually,
)

LIVE_CLIENT = Path(__file__).resolve().parent / "live_client"

COMMENT_ADDED = """
subscription CommentAdded($postId: ID!) {
  commentAdded(postId: $postId) { id body author { username } }
}
"""
ORDER_UPDATED = "subscription OrderUpdated { orderUpdated { id status } }"
ADD_COMMENT = """
mutation AddComment($postId: ID!, $body: String!) {
  addComment(input: {postId: $postId, body: $body}) {
    comment { id body author { username } } userErrors { code }
  }
}
"""
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { token userErrors { code } }
}
"""
LOG_IN = """
mutation LogIn($email: String!, $password: String!) {
  logIn(input: {email: $email, password: $password}) { token userErrors { code } }
}
"""
LOG_OUT = "mutation LogOut { logOut { ok } }"
CREATE_POST = """
mutation CreatePost($title: String!) {
  createPost(input: {title: $title, content: "live", publish: true}) { post { id } userErrors { code } }
}
"""
VIEWER = "query Viewer { viewer { username } }"
POSTS = (
    "query Posts { posts(first: 10) { nodes { id title comments(first: 5) { nodes { body } } } } }"
)

_bodies = itertools.count(1)


# ---------------------------------------------------------------- servers and clients


@pytest.fixture(scope="module")
async def live_db(server_url: str) -> AsyncIterator[tuple[str, World]]:
    """A scratch database with the factory world in it."""
    async with scratch_database(server_url, "gql_live") as url:
        engine = create_async_engine(async_url(url))
        try:
            world = await build_world(engine)
        finally:
            await engine.dispose()
        yield url, world


@pytest.fixture(scope="module")
async def live(live_db: tuple[str, World], tmp_path_factory: Any) -> AsyncIterator[AppServer]:
    """``gql-app serve --workers 2`` on the scratch database."""
    async with app_server(live_db[0], tmp_path_factory.mktemp("live"), workers=2) as server:
        yield server


@pytest.fixture(scope="module")
def world(live_db: tuple[str, World]) -> World:
    return live_db[1]


@pytest.fixture
async def metrics(live: AppServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for /metrics; the test starts with no subscription left."""
    async with httpx.AsyncClient(timeout=5) as http:
        await live.wait_subscriptions(http, 0)
        yield http


@dataclass(eq=False)
class Writer:
    """GraphQL over one HTTP client (one keep-alive connection), recording which
    worker served each request."""

    server: AppServer
    http: httpx.AsyncClient
    token: str | None = None
    served_by: list[int] = field(default_factory=list)

    async def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self.http.post(
            f"{self.server.http_url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        )
        stream = response.extensions["network_stream"]
        self.served_by.append(self.server.worker_of(stream.get_extra_info("client_addr")[1]))
        body: dict[str, Any] = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    async def add_comment(self, post_id: str, body: str | None = None) -> dict[str, Any]:
        data = await self(ADD_COMMENT, {"postId": post_id, "body": body or f"c{next(_bodies)}"})
        assert data["addComment"]["userErrors"] == []
        return data["addComment"]["comment"]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def writer(server: AppServer, token: str | None = None) -> AsyncIterator[Writer]:
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(timeout=WITHIN, limits=limits) as http:
        yield Writer(server, http, token)


@contextlib.asynccontextmanager
async def writers_on_every_worker(
    server: AppServer, tokens: list[str], at_most: int = 40
) -> AsyncIterator[list[Writer]]:
    """One writer per token, each on its own connection, and the connections on
    every worker between them: connections are opened (each accepted by whichever
    worker gets it first) until the first of each worker and the others make up
    one per token. Their ``served_by`` starts empty."""
    async with contextlib.AsyncExitStack() as stack:
        opened: list[Writer] = []
        while len(opened) < len(tokens) or len(firsts(opened)) < server.workers:
            assert len(opened) < at_most, f"{at_most} connections, all to {firsts(opened)}"
            each = await stack.enter_async_context(writer(server))
            await each(VIEWER)
            opened.append(each)
        chosen = list(firsts(opened).values())
        chosen += [each for each in opened if each not in chosen][: len(tokens) - len(chosen)]
        for each, token in zip(chosen, tokens, strict=True):
            each.token = token
            each.served_by.clear()
        yield chosen


def firsts(writers: list[Writer]) -> dict[int, Writer]:
    """The first writer served by each worker."""
    found: dict[int, Writer] = {}
    for each in writers:
        found.setdefault(each.served_by[-1], each)
    return found


async def open_sockets(
    server: AppServer, tokens: list[str | None], at_least: int, per_worker: int = 2
) -> dict[int, list[LiveSocket]]:
    """At least ``at_least`` connections (tokens in turn), opened a dozen at a time
    until every worker holds ``per_worker`` of them (or 48 are open): by worker."""
    sockets: list[LiveSocket] = []
    turn = itertools.cycle(tokens)
    while True:
        sockets += await asyncio.gather(
            *(LiveSocket.open(server.ws_url, next(turn)) for _ in range(12))
        )
        by_worker: dict[int, list[LiveSocket]] = {pid: [] for pid in server.worker_pids()}
        for socket in sockets:
            by_worker[server.worker_of(socket.port)].append(socket)
        spread = all(len(found) >= per_worker for found in by_worker.values())
        if (len(sockets) >= at_least and spread) or len(sockets) >= 48:
            return by_worker


@dataclass
class CommitOrder:
    """The comment events in commit order, as PostgreSQL delivers them to a LISTEN
    connection of the test's own: the order every subscriber must see."""

    connection: Any
    ids: list[str] = field(default_factory=list)

    def heard(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        topic, pks = decode(payload)
        if topic is Topic.COMMENT:
            self.ids.extend(encode_id("Comment", pk) for pk in pks)


@contextlib.asynccontextmanager
async def commit_order(database_url: str) -> AsyncIterator[CommitOrder]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    order = CommitOrder(connection)
    await connection.add_listener(CHANNEL, order.heard)
    try:
        yield order
    finally:
        await connection.close()


def comment_of(message: dict[str, Any], id: str) -> dict[str, Any]:
    """The comment a ``next`` message for subscription ``id`` carries."""
    assert message["type"] == "next" and message["id"] == id, message
    assert set(message["payload"]) == {"data"}, message
    return message["payload"]["data"]["commentAdded"]  # type: ignore[no-any-return]


async def sign_up(server: AppServer, name: str) -> str:
    async with writer(server) as anonymous:
        data = await anonymous(
            SIGN_UP,
            {"input": {"username": name, "email": f"{name}@example.com", "password": PASSWORD}},
        )
    assert data["signUp"]["userErrors"] == []
    return data["signUp"]["token"]  # type: ignore[no-any-return]


async def log_in(server: AppServer, name: str) -> str:
    async with writer(server) as anonymous:
        data = await anonymous(LOG_IN, {"email": f"{name}@example.com", "password": PASSWORD})
    assert data["logIn"]["userErrors"] == []
    return data["logIn"]["token"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- fan-out over two workers


async def test_every_subscriber_on_either_worker_hears_every_comment_once_in_commit_order(
    live: AppServer, world: World, metrics: httpx.AsyncClient
):
    # Given both worker processes LISTEN on the database
    assert await live.listeners() == 2
    # and subscribers to one post's comments, anonymous and signed in, on both workers
    post = encode_id("Post", world.posts[world.alice][0])
    tokens = [None, world.tokens["alice"], world.tokens["bob"]]
    by_worker = await open_sockets(live, tokens, at_least=12)
    sockets = [socket for found in by_worker.values() for socket in found]
    assert all(by_worker.values()), {pid: len(found) for pid, found in by_worker.items()}
    for socket in sockets:
        await socket.subscribe("c", COMMENT_ADDED, {"postId": post})
    await live.wait_subscriptions(metrics, len(sockets))
    names = ["alice", "bob", "admin"]
    async with (
        commit_order(live.database_url) as order,
        writers_on_every_worker(live, [world.tokens[name] for name in names]) as writers,
    ):
        # When three writers, on connections to both workers, add ten comments each at once
        async def ten(each: Writer) -> list[dict[str, Any]]:
            return [await each.add_comment(post) for _ in range(10)]

        written = await asyncio.gather(*(ten(each) for each in writers))
        # and then one more, the last
        last = await writers[0].add_comment(post, "the last")

        # Then every subscriber receives the thirty, then the last: nothing twice, nothing more
        received = [
            [comment_of(await socket.receive(), "c") for _ in range(31)] for socket in sockets
        ]
        # in commit order, the order PostgreSQL delivered the commits to a LISTEN of our own
        await eventually(lambda: _at_least(order.ids, 31), "the test's LISTEN heard every commit")
        commits = order.ids
        assert len(commits) == len(set(commits)) == 31 and commits[-1] == last["id"]
        by_id = {comment["id"]: comment for comment in [*itertools.chain(*written), last]}
        assert set(by_id) == set(commits)
        for comments in received:
            assert comments == [by_id[id] for id in commits]
        # each writer's comments in the order it wrote them (it waited for each commit)
        for mine in written:
            ids = [comment["id"] for comment in mine]
            assert [id for id in commits if id in ids] == ids
        # and the writes were served by both workers, as were the subscribers: each
        # worker's subscribers heard the commits the other worker made
        served = Counter(pid for each in writers for pid in each.served_by)
        assert set(served) == set(by_worker), served
    for socket in sockets:
        await socket.close()
    await live.wait_subscriptions(metrics, 0)


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


# ---------------------------------------------------------------- a PostgreSQL restart


@dataclass
class Restartable:
    """A one-worker server whose database is a PostgreSQL of its own (and which
    waits one second for ``connection_init``), a signed-in writer and a published
    post of theirs."""

    postgres: EmbeddedPostgres
    server: AppServer
    writer: Writer
    post: str

    async def subscriber(self, id: str) -> LiveSocket:
        """A connection (the writer's token) subscribed to the post's comments as
        ``id``, hearing them (a comment written now reaches it)."""
        socket = await LiveSocket.open(self.server.ws_url, self.writer.token)
        await socket.subscribe(id, COMMENT_ADDED, {"postId": self.post})
        await self.server.wait_subscriptions(self.writer.http, 1)
        comment = await self.writer.add_comment(self.post)
        assert comment_of(await socket.receive(), id) == comment
        return socket

    async def fill_pool(self, n: int = 8) -> int:
        """Run ``n`` queries at once, so the pool holds several connections: how
        many it holds then."""
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(base_url=self.server.http_url, limits=limits) as http:
            responses = await asyncio.gather(
                *(http.post("/graphql", json={"query": POSTS}) for _ in range(n))
            )
        assert all(r.status_code == 200 and "errors" not in r.json() for r in responses)
        return await self.server.backends("gql_app")

    async def resubscribe(self, socket: LiveSocket, id: str) -> int:
        """Subscribe as ``id`` until the server accepts the subscription (counts it);
        each refusal must be SERVICE_UNAVAILABLE. How many there were."""
        deadline = time.monotonic() + WITHIN
        refusals = 0
        while True:
            assert time.monotonic() < deadline, f"still refused after {WITHIN}s"
            await socket.subscribe(id, COMMENT_ADDED, {"postId": self.post})
            while await self.server.subscriptions(self.writer.http) == 0:
                with contextlib.suppress(TimeoutError):
                    assert_unavailable(await socket.receive(within=0.05), id)
                    refusals += 1
                    break
                assert time.monotonic() < deadline, "neither accepted nor refused"
            else:
                return refusals


def assert_unavailable(message: dict[str, Any], id: str) -> None:
    assert message["id"] == id and message["type"] == "error", message
    codes = [error["extensions"]["code"] for error in message["payload"]]
    assert codes == ["SERVICE_UNAVAILABLE"], message


@pytest.fixture(scope="module")
async def restartable(tmp_path_factory: Any) -> AsyncIterator[Restartable]:
    with embedded_postgres() as postgres:
        async with (
            scratch_database(postgres.url, "gql_restart") as url,
            app_server(
                url, tmp_path_factory.mktemp("restart"), workers=1, GQL_WS_INIT_TIMEOUT_S="1"
            ) as server,
            writer(server) as http,
        ):
            http.token = await sign_up(server, "restarter")
            post = (await http(CREATE_POST, {"title": "restart"}))["createPost"]["post"]["id"]
            yield Restartable(postgres, server, http, post)


async def test_a_database_restart_ends_subscriptions_with_service_unavailable_then_they_work_again(
    restartable: Restartable,
):
    # Given a subscriber hearing a post's comments
    stack = restartable
    socket = await stack.subscriber("before")
    # and a pool holding several connections, all of which the restart will end
    assert await stack.fill_pool() >= 2

    # When PostgreSQL restarts (every backend terminated, the LISTEN one too)
    await asyncio.to_thread(stack.postgres.restart)

    # Then the subscription ends with SERVICE_UNAVAILABLE; the connection stays open
    assert_unavailable(await socket.receive(), "before")
    # and once the LISTEN connection is back, a new subscription on it is accepted:
    # refused with SERVICE_UNAVAILABLE until then, active (counted) from then on
    refusals = await stack.resubscribe(socket, "after")
    assert await stack.server.listeners() == 1
    # and hears a new comment (written, then read for the subscribers, on a pool
    # whose connections all died)
    second = await stack.writer.add_comment(stack.post)
    assert comment_of(await socket.receive(), "after") == second
    # as does a new connection, whose token is checked on the restarted database
    fresh = await LiveSocket.open(stack.server.ws_url, stack.writer.token)
    await fresh.subscribe("fresh", COMMENT_ADDED, {"postId": stack.post})
    await stack.server.wait_subscriptions(stack.writer.http, 2)
    third = await stack.writer.add_comment(stack.post)
    assert comment_of(await socket.receive(), "after") == third
    assert comment_of(await fresh.receive(), "fresh") == third
    # and the ended subscription got nothing more, the new one nothing else
    assert [(m.get("id"), m["type"]) for m in socket.messages] == [
        (None, "connection_ack"),
        ("before", "next"),
        ("before", "error"),
        *[("after", "error")] * refusals,
        ("after", "next"),
        ("after", "next"),
    ]
    for each in (socket, fresh):
        await each.close()
    await stack.server.wait_subscriptions(stack.writer.http, 0)


async def test_while_the_database_is_down_subscribing_is_refused_then_works_once_it_is_back(
    restartable: Restartable,
):
    # Given a subscriber hearing a post's comments
    stack = restartable
    socket = await stack.subscriber("before")

    # When PostgreSQL stops
    await asyncio.to_thread(stack.postgres.stop)
    try:
        # Then the subscription ends with SERVICE_UNAVAILABLE
        assert_unavailable(await socket.receive(), "before")
        # and while it is down a new subscription is refused the same way
        await socket.subscribe("down", COMMENT_ADDED, {"postId": stack.post})
        assert_unavailable(await socket.receive(), "down")
        # and a new connection whose token cannot be checked is closed with 1013
        late = await LiveSocket.connect(stack.server.ws_url)
        await late.init(stack.writer.token)
        assert await late.until_closed() == ([], 1013)
    finally:
        # When it is back
        await asyncio.to_thread(stack.postgres.start)

    # Then a new subscription is accepted once the LISTEN connection is back
    await stack.resubscribe(socket, "after")
    # and hears a new comment
    comment = await stack.writer.add_comment(stack.post)
    assert comment_of(await socket.receive(), "after") == comment
    await socket.close()
    await stack.server.wait_subscriptions(stack.writer.http, 0)


async def test_a_subscribe_set_up_while_the_listener_is_lost_is_refused_not_left_deaf(
    restartable: Restartable,
):
    stack = restartable
    server_db = make_url(stack.server.database_url).database
    admin = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    locker = await asyncpg.connect(asyncpg_dsn(stack.server.database_url))
    try:
        # Given a subscriber (the witness that the server noticed the loss below)
        witness = await stack.subscriber("witness")
        # and a subscribe whose setup is waiting (an anonymous one: a group of its own,
        # whose subscription resolver reads the post) for the posts table, locked
        socket = await LiveSocket.open(stack.server.ws_url)
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        await socket.subscribe("s", COMMENT_ADDED, {"postId": stack.post})

        async def waiting() -> bool:
            return bool(
                await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = $1 AND wait_event_type = 'Lock'",
                    server_db,
                )
            )

        await eventually(waiting, "the subscribe waits for the lock")
        # When the LISTEN connection is lost, and cannot come back for now
        await admin.execute(f'ALTER DATABASE "{server_db}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'gql_app_listener' AND datname = $1",
            server_db,
        )
        assert_unavailable(await witness.receive(), "witness")
        # and then the subscribe's setup goes on
        await lock.rollback()
        # Then that subscription is refused too: it would miss what commits meanwhile
        assert_unavailable(await socket.receive(), "s")
    finally:
        await admin.execute(f'ALTER DATABASE "{server_db}" ALLOW_CONNECTIONS true')
        await locker.close()
        await admin.close()
    # and once the listener is back, subscribing works
    await stack.resubscribe(socket, "after")
    comment = await stack.writer.add_comment(stack.post)
    assert comment_of(await socket.receive(), "after") == comment
    for each in (socket, witness):
        await each.close()
    await stack.server.wait_subscriptions(stack.writer.http, 0)


# ---------------------------------------------------------------- connection_init's deadline


async def test_a_connection_lives_past_the_init_timeout_once_initialised_a_silent_one_does_not(
    restartable: Restartable,
):
    # Given a server that waits one second for connection_init, and a connection
    # that sent it (and subscribed)
    stack = restartable
    socket = await stack.subscriber("s")
    # When another connection, opened after it, sends nothing
    silent = await LiveSocket.connect(stack.server.ws_url)
    # Then that one is closed with 4408 once its second is up
    assert await silent.until_closed() == ([], 4408)
    # and the first, older than a second by then, still hears comments
    comment = await stack.writer.add_comment(stack.post)
    assert comment_of(await socket.receive(), "s") == comment
    await socket.close()
    await stack.server.wait_subscriptions(stack.writer.http, 0)


# ---------------------------------------------------------------- the graphql-ws npm client


def node_client() -> Path:
    """The client's directory with its dependencies installed: ``npm ci`` when
    node_modules is missing or was installed from another package-lock.json."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(
            "node and npm are needed for the graphql-ws client (apt-get install nodejs npm)"
        )
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    if int(version.stdout.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"graphql-ws 6 needs node 20 or later, not {version.stdout.strip()}")
    lock = hashlib.sha256((LIVE_CLIENT / "package-lock.json").read_bytes()).hexdigest()
    stamp = LIVE_CLIENT / "node_modules" / ".installed-from-lock"
    if not stamp.is_file() or stamp.read_text() != lock:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=LIVE_CLIENT,
            check=True,
            timeout=300,
        )
        stamp.write_text(lock)
    return LIVE_CLIENT


@dataclass
class NodeClient:
    process: asyncio.subprocess.Process

    async def event(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.process.stdout.readline(), WITHIN)  # type: ignore[union-attr]
        assert line, f"the client exited ({await self.stderr()})"
        return json.loads(line)  # type: ignore[no-any-return]

    async def stderr(self) -> str:
        return (await self.process.stderr.read()).decode(errors="replace")  # type: ignore[union-attr]

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.process.wait(), WITHIN)


@contextlib.asynccontextmanager
async def graphql_ws_client(
    server: AppServer, query: str, variables: dict[str, Any], count: int, token: str | None
) -> AsyncIterator[NodeClient]:
    directory = node_client()
    options = {"url": server.ws_url, "token": token, "query": query}
    options |= {"variables": variables, "count": count}
    process = await asyncio.create_subprocess_exec(
        "node",
        str(directory / "subscribe.mjs"),
        json.dumps(options),
        cwd=directory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeClient(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_graphql_ws_client_receives_comments_then_completes(
    live: AppServer, world: World, metrics: httpx.AsyncClient
):
    # Given the graphql-ws client, signed in through connectionParams, subscribed to
    # the comments of a draft (which only its author may see)
    draft = encode_id("Post", world.drafts[world.alice][0])
    async with (
        graphql_ws_client(
            live, COMMENT_ADDED, {"postId": draft}, count=3, token=world.tokens["alice"]
        ) as client,
        writer(live, world.tokens["alice"]) as alice,
    ):
        assert await client.event() == {"event": "connected"}
        await live.wait_subscriptions(metrics, 1)
        # When three comments are added
        written = [await alice.add_comment(draft) for _ in range(3)]
        # Then it receives each, in order, as an ExecutionResult
        for comment in written:
            assert await client.event() == {
                "event": "next",
                "payload": {"data": {"commentAdded": comment}},
            }
        # and, done after three, completes and closes the socket normally
        assert await client.event() == {"event": "complete"}
        assert await client.event() == {"event": "closed", "code": 1000}
        assert await client.exit_code() == 0
        # and the server let go of the subscription
        await live.wait_subscriptions(metrics, 0)


async def test_the_graphql_ws_client_hears_unauthenticated_for_orders_without_a_token(
    live: AppServer, metrics: httpx.AsyncClient
):
    # Given the graphql-ws client without a token
    async with graphql_ws_client(live, ORDER_UPDATED, {}, count=1, token=None) as client:
        # When it subscribes to orderUpdated, Then its error sink gets UNAUTHENTICATED
        assert await client.event() == {"event": "connected"}
        refused = await client.event()
        assert refused["event"] == "error", refused
        assert [error["extensions"]["code"] for error in refused["errors"]] == ["UNAUTHENTICATED"]
        assert "message" in refused["errors"][0]
        # and nothing else: it disposes, the socket closes normally
        assert await client.event() == {"event": "closed", "code": 1000}
        assert await client.exit_code() == 0
    assert await live.subscriptions(metrics) == 0


# ---------------------------------------------------------------- logOut across workers


async def test_log_out_ends_the_tokens_subscriptions_on_every_worker_and_only_them(
    live: AppServer, world: World, metrics: httpx.AsyncClient
):
    # Given a user signed in twice: the token to revoke and another one
    revoked = await sign_up(live, "leaver")
    kept = await log_in(live, "leaver")
    post = encode_id("Post", world.posts[world.alice][0])
    # and connections with the revoked token on both workers, two subscriptions each
    by_worker = await open_sockets(live, [revoked], at_least=4, per_worker=1)
    leaving = [socket for found in by_worker.values() for socket in found]
    assert all(by_worker.values()), {pid: len(found) for pid, found in by_worker.items()}
    # and, on both workers too, connections of the other token and anonymous ones
    staying_by_worker = await open_sockets(live, [kept, None], at_least=4, per_worker=1)
    staying = [socket for found in staying_by_worker.values() for socket in found]
    for socket in leaving:
        await socket.subscribe("comments", COMMENT_ADDED, {"postId": post})
        await socket.subscribe("orders", ORDER_UPDATED)
    for socket in staying:
        await socket.subscribe("comments", COMMENT_ADDED, {"postId": post})
    await live.wait_subscriptions(metrics, 2 * len(leaving) + len(staying))

    # When the token is revoked with logOut, over HTTP, on one of the workers
    async with writer(live, revoked) as leaver:
        assert await leaver(LOG_OUT) == {"logOut": {"ok": True}}
        logged_out_on = leaver.served_by[-1]

    # Then every connection of that token, on this worker and the other, gets an
    # UNAUTHENTICATED error for each subscription, then is closed with 4403
    for socket in leaving:
        messages, code = await socket.until_closed()
        assert sorted((m["id"], m["type"]) for m in messages) == [
            ("comments", "error"),
            ("orders", "error"),
        ], messages
        for message in messages:
            codes = [error["extensions"]["code"] for error in message["payload"]]
            assert codes == ["UNAUTHENTICATED"], message
        assert code == 4403
    assert [pid for pid in by_worker if pid != logged_out_on], "no connection on another worker"
    # and the other connections still hear comments
    await live.wait_subscriptions(metrics, len(staying))
    async with writer(live, world.tokens["bob"]) as bob:
        comment = await bob.add_comment(post)
    for socket in staying:
        assert comment_of(await socket.receive(), "comments") == comment
    # and the revoked token opens nothing any more, the other one still does
    async with writer(live, revoked) as leaver:
        assert await leaver(VIEWER) == {"viewer": None}
    async with writer(live, kept) as stayer:
        assert await stayer(VIEWER) == {"viewer": {"username": "leaver"}}
    late = await LiveSocket.connect(live.ws_url)
    await late.init(revoked)
    assert await late.until_closed() == ([], 4403)
    for socket in staying:
        await socket.close()
