"""Subscriptions over WebSocket, end to end in one process: the real app under
uvicorn on a free port, real WebSocket clients (graphql-transport-ws), writes over
real HTTP, events through PostgreSQL's NOTIFY.

"Nothing else arrived" is proved without sleeping: after the write under test the
test makes a sentinel write the subscriber does receive, and events reach each
subscription in commit order, so the next message being the sentinel's means
nothing came before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gql_app.commerce.models import Order, OrderStatus, Product
from gql_app.observability import current_observation, trace_engine
from gql_app.relay.ids import decode_id
from gql_app.settings import Settings
from gql_app.users.models import AuthToken
from gql_app.web.app import create_app
from tests.conftest import GraphQLClient, scratch_database
from tests.factories import World, build_world

WITHIN = 10.0  # seconds: an upper bound on every wait, never a proof by sleeping
PROTOCOL = "graphql-transport-ws"
_bodies = itertools.count(1)

COMMENT_ADDED = """
subscription($postId: ID!) {
  commentAdded(postId: $postId) { id body author { username } post { title } }
}
"""
ORDER_UPDATED = "subscription { orderUpdated { id status } }"
PRODUCT_CHANGED = "subscription($ids: [ID!]) { productChanged(ids: $ids) { id price stock } }"
TRANSFER_POSTED = """
subscription($accountId: ID!) { transferPosted(accountId: $accountId) { id amount } }
"""
ADD_COMMENT = """
mutation($postId: ID!, $body: String!) {
  addComment(input: {postId: $postId, body: $body}) { comment { id } userErrors { code } }
}
"""


# ---------------------------------------------------------------- the server and its clients


@dataclass
class Live:
    settings: Settings
    app: Any
    engine: AsyncEngine
    world: World
    gql: GraphQLClient
    ws_url: str

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    def post(self) -> str:
        """A published post of alice's."""
        return self.world.gid("Post", self.world.posts[self.world.alice][0])

    async def comment(self, post: str | None = None, user: str = "bob") -> str:
        body = await self.gql(
            ADD_COMMENT,
            {"postId": post or self.post(), "body": f"live {next(_bodies)}"},
            token=self.world.tokens[user],
        )
        assert body["data"]["addComment"]["userErrors"] == [], body
        return body["data"]["addComment"]["comment"]["id"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def live(server_url: str) -> AsyncIterator[Live]:
    async with scratch_database(server_url, "gql_live") as url:
        settings = Settings(
            DATABASE_URL=url, secret_key="test", ws_keepalive_s=0.2, ws_init_timeout_s=1.0
        )
        app = create_app(settings)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", ws_per_message_deflate=False
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            world = await build_world(app.state.engine)
            yield Live(
                settings,
                app,
                app.state.engine,
                world,
                GraphQLClient(http),
                f"ws://127.0.0.1:{port}/graphql",
            )
        server.should_exit = True
        await asyncio.wait_for(task, WITHIN)


class Client:
    """One WebSocket connection speaking graphql-transport-ws."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(
        cls, live: Live, token: str | None = None, init: bool = True, **options: Any
    ) -> AsyncIterator[Client]:
        async with connect(live.ws_url, subprotocols=[PROTOCOL], **options) as ws:  # type: ignore[list-item]
            client = cls(ws)
            if init:
                payload = {"Authorization": f"Bearer {token}"} if token else {}
                await client.send({"type": "connection_init", "payload": payload})
                assert await client.recv() == {"type": "connection_ack"}
            yield client

    async def send(self, message: Any) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self) -> Any:
        """The next message; the server's keep-alive pings are answered on the way,
        as graphql-ws clients do."""
        while True:
            message = orjson.loads(await asyncio.wait_for(self.ws.recv(), WITHIN))
            if message != {"type": "ping"}:
                return message
            with contextlib.suppress(ConnectionClosed):  # what came before the close is read
                await self.send({"type": "pong"})

    async def subscribe(self, id: str, query: str, **variables: Any) -> None:
        payload = {"query": query, "variables": variables}
        await self.send({"id": id, "type": "subscribe", "payload": payload})

    async def subscribed(self, live: Live, id: str, query: str, **variables: Any) -> None:
        """Subscribe and wait until the server holds the subscription."""
        before = live.hub.count
        await self.subscribe(id, query, **variables)
        await until(lambda: live.hub.count > before)

    async def next(self, id: str) -> Any:
        message = await self.recv()
        assert message["type"] == "next" and message["id"] == id, message
        return message["payload"]

    async def error(self, id: str) -> list[Any]:
        message = await self.recv()
        assert message["type"] == "error" and message["id"] == id, message
        return message["payload"]  # type: ignore[no-any-return]

    async def closed(self) -> tuple[int, str]:
        """The close code and reason, once the server closes the connection."""
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(self.ws.recv(), WITHIN)
        frame = closed.value.rcvd
        assert frame is not None, "closed without a close frame"
        return frame.code, frame.reason


async def until(condition: Any) -> None:
    async with asyncio.timeout(WITHIN):
        while not condition():  # noqa: ASYNC110 (polls the server's state)
            await asyncio.sleep(0.005)


def codes(errors: list[Any]) -> list[str]:
    return [e["extensions"]["code"] for e in errors]


def pk(global_id: str) -> int:
    return decode_id(global_id)[1]


# ---------------------------------------------------------------- the protocol


async def test_a_comment_reaches_a_subscriber_after_its_commit(live: Live) -> None:
    async with Client.opened(live) as client:
        await client.subscribed(live, "c", COMMENT_ADDED, postId=live.post())
        comment = await live.comment()
        payload = await client.next("c")
        assert payload == {
            "data": {
                "commentAdded": {
                    "id": comment,
                    "body": payload["data"]["commentAdded"]["body"],
                    "author": {"username": "bob"},
                    "post": {"title": payload["data"]["commentAdded"]["post"]["title"]},
                }
            }
        }
        assert payload["data"]["commentAdded"]["body"].startswith("live ")


async def test_complete_stops_delivery_and_frees_the_subscription(live: Live) -> None:
    async with Client.opened(live) as client:
        await client.subscribed(live, "a", COMMENT_ADDED, postId=live.post())
        await client.subscribed(live, "b", COMMENT_ADDED, postId=live.post())
        before = live.hub.count
        await client.send({"id": "a", "type": "complete"})
        await until(lambda: live.hub.count == before - 1)
        sentinel = await live.comment()
        assert (await client.next("b"))["data"]["commentAdded"]["id"] == sentinel


async def test_ping_is_answered_with_pong(live: Live) -> None:
    async with Client.opened(live) as client:
        await client.send({"type": "ping", "payload": {"at": 1}})
        assert await client.recv() == {"type": "pong"}


async def test_the_server_pings_to_keep_the_connection_alive(live: Live) -> None:
    async with Client.opened(live) as client:
        for _ in range(2):  # every ws_keepalive_s (0.2 s here)
            raw = await asyncio.wait_for(client.ws.recv(), WITHIN)
            assert orjson.loads(raw) == {"type": "ping"}
            await client.send({"type": "pong"})


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (["not json"], 4400),
        ([b"\x00binary"], 4400),
        (['{"type": "no such type"}'], 4400),
        (['["a list"]'], 4400),
        (['{"type": "subscribe", "id": "1"}'], 4400),  # no payload
        (['{"type": "subscribe", "id": "", "payload": {"query": "{ __typename }"}}'], 4400),
        (['{"type": "subscribe", "id": "1", "payload": {"query": 7}}'], 4400),
    ],
)
async def test_malformed_messages_close_with_4400(
    live: Live, messages: list[Any], code: int
) -> None:
    async with Client.opened(live) as client:
        for message in messages:
            await client.ws.send(message)
        assert (await client.closed())[0] == code


async def test_a_connection_init_payload_that_is_not_an_object_closes_with_4400(
    live: Live,
) -> None:
    async with Client.opened(live, init=False) as client:
        await client.send({"type": "connection_init", "payload": "a string"})
        assert (await client.closed())[0] == 4400


async def test_subscribe_before_the_acknowledgement_closes_with_4401(live: Live) -> None:
    async with Client.opened(live, init=False) as client:
        await client.subscribe("1", COMMENT_ADDED, postId=live.post())
        assert await client.closed() == (4401, "Unauthorized")


async def test_a_second_connection_init_closes_with_4429(live: Live) -> None:
    async with Client.opened(live) as client:
        await client.send({"type": "connection_init"})
        assert await client.closed() == (4429, "Too many initialisation requests")


async def test_a_duplicate_subscription_id_closes_with_4409(live: Live) -> None:
    async with Client.opened(live) as client:
        await client.subscribed(live, "same", COMMENT_ADDED, postId=live.post())
        await client.subscribe("same", COMMENT_ADDED, postId=live.post())
        assert await client.closed() == (4409, "Subscriber for same already exists")
    await until(lambda: not live.hub.peers)
    assert live.hub.count == 0


async def test_no_connection_init_in_time_closes_with_4408(live: Live) -> None:
    async with Client.opened(live, init=False) as client:
        assert await client.closed() == (4408, "Connection initialisation timeout")


async def test_an_initialised_connection_outlives_the_init_timeout(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.settings, "ws_init_timeout_s", 0.1)
    async with Client.opened(live) as client:
        await asyncio.sleep(0.3)  # three timeouts' worth: nothing may close it
        await client.send({"type": "ping"})
        assert await client.recv() == {"type": "pong"}


async def test_another_subprotocol_is_refused_with_4406(live: Live) -> None:
    async with connect(live.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WITHIN)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406


async def test_a_token_that_opens_no_session_closes_with_4403(live: Live) -> None:
    async with Client.opened(live, init=False) as client:
        await client.send({"type": "connection_init", "payload": {"Authorization": "Bearer nope"}})
        assert await client.closed() == (4403, "Forbidden: the token opens no session")


async def test_queries_and_mutations_run_over_the_socket_too(live: Live) -> None:
    async with Client.opened(live, token=live.world.tokens["bob"]) as client:
        await client.send(
            {"id": "q", "type": "subscribe", "payload": {"query": "{ viewer { username } }"}}
        )
        assert await client.next("q") == {"data": {"viewer": {"username": "bob"}}}
        assert await client.recv() == {"id": "q", "type": "complete"}
        await client.send({"id": "bad", "type": "subscribe", "payload": {"query": "{ nope }"}})
        assert codes(await client.error("bad")) == ["BAD_USER_INPUT"]


async def test_invalid_subscription_documents_get_an_error_message(live: Live) -> None:
    async with Client.opened(live) as client:
        await client.subscribe("syntax", "subscription {")
        assert codes(await client.error("syntax")) == ["BAD_USER_INPUT"]
        await client.subscribe("two", "subscription { orderUpdated { id } productChanged { id } }")
        assert codes(await client.error("two")) == ["BAD_USER_INPUT"]  # one root field only
        await client.subscribe("var", COMMENT_ADDED)  # $postId missing
        assert codes(await client.error("var")) == ["BAD_USER_INPUT"]
        await client.subscribe("id", COMMENT_ADDED, postId=live.world.gid("User", 1))
        assert codes(await client.error("id")) == ["BAD_USER_INPUT"]
    assert live.hub.count == 0


async def test_query_limits_apply_to_subscription_documents(live: Live) -> None:
    nested = "post { comments(first: 1) { nodes { " * 6 + "id" + " } } }" * 6
    deep = "subscription($p: ID!) { commentAdded(postId: $p) { " + nested + " } }"
    async with Client.opened(live) as client:
        await client.subscribe("deep", deep, p=live.post())
        errors = await client.error("deep")
        assert codes(errors) == ["QUERY_TOO_COMPLEX"]
        assert "depth" in errors[0]["message"]
    assert live.hub.count == 0


async def test_subscriptions_per_connection_are_capped(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.settings, "ws_max_subscriptions_per_connection", 2)
    async with Client.opened(live) as client:
        await client.subscribed(live, "1", COMMENT_ADDED, postId=live.post())
        await client.subscribed(live, "2", COMMENT_ADDED, postId=live.post())
        await client.subscribe("3", COMMENT_ADDED, postId=live.post())
        errors = await client.error("3")
        assert codes(errors) == ["TOO_MANY_SUBSCRIPTIONS"]
        await client.send({"id": "1", "type": "complete"})
        await until(lambda: live.hub.count == 1)
        await client.subscribed(live, "3", COMMENT_ADDED, postId=live.post())


async def test_subscriptions_per_process_are_capped(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.settings, "ws_max_subscriptions", 1)
    async with Client.opened(live) as first, Client.opened(live) as second:
        await first.subscribed(live, "1", COMMENT_ADDED, postId=live.post())
        await second.subscribe("1", COMMENT_ADDED, postId=live.post())
        assert codes(await second.error("1")) == ["SERVICE_UNAVAILABLE"]


async def test_server_shutdown_closes_the_sockets_cleanly(server_url: str) -> None:
    async with scratch_database(server_url, "gql_live_stop") as url:
        app = create_app(Settings(DATABASE_URL=url, secret_key="test", ws_keepalive_s=0))
        server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning"))
        task = asyncio.create_task(server.serve())
        await until(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send('{"type": "connection_init"}')
            assert orjson.loads(await ws.recv()) == {"type": "connection_ack"}
            server.should_exit = True
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WITHIN)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        await asyncio.wait_for(task, WITHIN)
        assert app.state.hub.listener.server_pid is None  # the LISTEN connection is closed


# ---------------------------------------------------------------- what is delivered, to whom

PLACE_ORDER = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id } userErrors { code } }
}
"""
TWO_ORDERS_ONE_SHORT = """
mutation($ok: PlaceOrderInput!, $short: PlaceOrderInput!) {
  ok: placeOrder(input: $ok) { order { id } userErrors { code } }
  short: placeOrder(input: $short) { order { id } userErrors { code } }
}
"""
ADJUST_PRICES = """
mutation($input: AdjustPricesInput!) {
  adjustPrices(input: $input) { affectedCount userErrors { code } }
}
"""
TRANSFER = """
mutation($input: TransferFundsInput!) {
  transferFunds(input: $input) { transfer { id } userErrors { code } }
}
"""
_skus = itertools.count(1)


async def products(live: Live, count: int, stock: int = 10) -> tuple[str, list[int]]:
    """``count`` new products under a fresh SKU prefix: (prefix, ids)."""
    prefix = f"LIVE{next(_skus):03d}-"
    rows = [
        {"sku": f"{prefix}{i:05d}", "name": f"Live {i}", "price": 10, "stock": stock}
        for i in range(count)
    ]
    async with live.engine.begin() as conn:
        ids = (await conn.execute(insert(Product).returning(Product.id), rows)).scalars().all()
    return prefix, list(ids)


async def place(live: Live, user: str, *lines: tuple[int, int]) -> dict[str, Any]:
    body = await live.gql(
        PLACE_ORDER,
        {
            "input": {
                "lines": [
                    {"productId": live.world.gid("Product", p), "quantity": q} for p, q in lines
                ]
            }
        },
        token=live.world.tokens[user],
    )
    return body["data"]["placeOrder"]  # type: ignore[no-any-return]


async def adjust(live: Live, prefix: str, percent: str = "10") -> int:
    body = await live.gql(
        ADJUST_PRICES,
        {"input": {"skuPrefix": prefix, "percent": percent}},
        token=live.world.tokens["admin"],
    )
    assert body["data"]["adjustPrices"]["userErrors"] == []
    return body["data"]["adjustPrices"]["affectedCount"]  # type: ignore[no-any-return]


async def test_comments_on_a_draft_reach_only_those_who_may_see_it(live: Live) -> None:
    world = live.world
    draft = world.gid("Post", world.drafts[world.alice][0])
    async with (
        Client.opened(live) as anonymous,
        Client.opened(live, token=world.tokens["bob"]) as bob,
        Client.opened(live, token=world.tokens["alice"]) as alice,
        Client.opened(live, token=world.tokens["admin"]) as admin,
    ):
        for stranger in (anonymous, bob):
            await stranger.subscribe("d", COMMENT_ADDED, postId=draft)
            errors = await stranger.error("d")
            assert codes(errors) == ["NOT_FOUND"]
            assert errors[0]["path"] == ["commentAdded"]
        await alice.subscribed(live, "d", COMMENT_ADDED, postId=draft)
        await admin.subscribed(live, "d", COMMENT_ADDED, postId=draft)
        comment = await live.comment(draft, user="alice")
        for client in (alice, admin):
            assert (await client.next("d"))["data"]["commentAdded"]["id"] == comment


async def test_orders_reach_their_customer_and_admins_only(live: Live) -> None:
    world = live.world
    _, (product,) = await products(live, 1, stock=100)
    async with (
        Client.opened(live) as anonymous,
        Client.opened(live, token=world.tokens["alice"]) as alice,
        Client.opened(live, token=world.tokens["bob"]) as bob,
        Client.opened(live, token=world.tokens["admin"]) as admin,
    ):
        await anonymous.subscribe("o", ORDER_UPDATED)
        assert codes(await anonymous.error("o")) == ["UNAUTHENTICATED"]
        for client in (alice, bob, admin):
            await client.subscribed(live, "o", ORDER_UPDATED)
        alices = (await place(live, "alice", (product, 1)))["order"]["id"]
        bobs = (await place(live, "bob", (product, 1)))["order"]["id"]
        assert (await alice.next("o"))["data"]["orderUpdated"] == {
            "id": alices,
            "status": "PENDING",
        }
        assert (await bob.next("o"))["data"]["orderUpdated"]["id"] == bobs  # not alice's first
        assert [(await admin.next("o"))["data"]["orderUpdated"]["id"] for _ in "ab"] == [
            alices,
            bobs,
        ]


async def test_transfers_reach_the_owners_of_either_account(live: Live) -> None:
    world = live.world
    alices, bobs = world.accounts[world.alice], world.accounts[world.bob]
    async with (
        Client.opened(live) as anonymous,
        Client.opened(live, token=world.tokens["alice"]) as alice,
        Client.opened(live, token=world.tokens["bob"]) as bob,
        Client.opened(live, token=world.tokens["admin"]) as admin,
    ):
        await anonymous.subscribe("t", TRANSFER_POSTED, accountId=world.gid("Account", alices))
        assert codes(await anonymous.error("t")) == ["UNAUTHENTICATED"]
        await bob.subscribe("t", TRANSFER_POSTED, accountId=world.gid("Account", alices))
        assert codes(await bob.error("t")) == ["FORBIDDEN"]
        await admin.subscribe("t", TRANSFER_POSTED, accountId=world.gid("Account", 10**6))
        assert codes(await admin.error("t")) == ["NOT_FOUND"]
        await alice.subscribed(live, "t", TRANSFER_POSTED, accountId=world.gid("Account", alices))
        await bob.subscribed(live, "t", TRANSFER_POSTED, accountId=world.gid("Account", bobs))
        body = await live.gql(
            TRANSFER,
            {
                "input": {
                    "fromAccountId": world.gid("Account", alices),
                    "toAccountId": world.gid("Account", bobs),
                    "amount": "1.25",
                }
            },
            token=world.tokens["alice"],
        )
        sent = body["data"]["transferFunds"]["transfer"]["id"]
        for client in (alice, bob):
            assert (await client.next("t"))["data"]["transferPosted"] == {
                "id": sent,
                "amount": "1.25",
            }


async def test_product_changes_reach_the_subscribers_of_those_ids(live: Live) -> None:
    _, (first, second) = await products(live, 2)
    async with Client.opened(live) as client:
        await client.subscribe("many", PRODUCT_CHANGED, ids=[live.world.gid("Product", 1)] * 101)
        assert codes(await client.error("many")) == ["BAD_USER_INPUT"]
        await client.subscribe("none", PRODUCT_CHANGED, ids=[])
        assert codes(await client.error("none")) == ["BAD_USER_INPUT"]
        await client.subscribed(live, "p", PRODUCT_CHANGED, ids=[live.world.gid("Product", second)])
        await place(live, "bob", (first, 1))  # changes the first one's stock only
        await place(live, "bob", (second, 2))
        assert (await client.next("p"))["data"]["productChanged"] == {
            "id": live.world.gid("Product", second),
            "price": "10.00",
            "stock": 8,
        }


async def test_a_failed_mutation_field_delivers_nothing(live: Live) -> None:
    _, (plenty, scarce) = await products(live, 2, stock=1)
    order = {"lines": [{"productId": live.world.gid("Product", plenty), "quantity": 1}]}
    short = {"lines": [{"productId": live.world.gid("Product", scarce), "quantity": 5}]}
    async with Client.opened(live, token=live.world.tokens["bob"]) as client:
        await client.subscribed(live, "o", ORDER_UPDATED)
        await client.subscribed(live, "p", PRODUCT_CHANGED, ids=[live.world.gid("Product", scarce)])
        body = await live.gql(
            TWO_ORDERS_ONE_SHORT, {"ok": order, "short": short}, token=live.world.tokens["bob"]
        )
        assert body["data"]["short"]["userErrors"] == [{"code": "OUT_OF_STOCK"}]
        ok = body["data"]["ok"]["order"]["id"]
        assert (await client.next("o"))["data"]["orderUpdated"]["id"] == ok
        sentinel = (await place(live, "bob", (scarce, 1)))["order"]["id"]
        # the scarce product's first event is the sentinel's: the failed field sent none
        assert (await client.next("p"))["data"]["productChanged"]["stock"] == 0
        assert (await client.next("o"))["data"]["orderUpdated"]["id"] == sentinel


# ---------------------------------------------------------------- bulk updates, batching


async def test_set_order_status_over_thousands_of_orders_delivers_one_event_per_order(
    live: Live,
) -> None:
    rows = [{"customer_id": live.world.bob, "status": OrderStatus.PENDING}] * 2_000
    async with live.engine.begin() as conn:
        ids = (await conn.execute(insert(Order).returning(Order.id), rows)).scalars().all()
    aliases = [
        f"o{n}: setOrderStatus(input: {{ids: {orjson.dumps([live.world.gid('Order', i) for i in chunk]).decode()}, status: PAID}}) {{ affectedCount }}"
        for n, chunk in enumerate(ids[k : k + 100] for k in range(0, len(ids), 100))
    ]
    async with (
        Client.opened(live, token=live.world.tokens["bob"]) as bob,
        Client.opened(live, token=live.world.tokens["admin"]) as admin,
    ):
        for client in (bob, admin):
            await client.subscribed(live, "o", ORDER_UPDATED)
        body = await live.gql(
            "mutation {" + " ".join(aliases) + "}", token=live.world.tokens["admin"]
        )
        assert sum(field["affectedCount"] for field in body["data"].values()) == 2_000
        for client in (bob, admin):
            received = [(await client.next("o"))["data"]["orderUpdated"] for _ in ids]
            assert [pk(order["id"]) for order in received] == list(ids)  # each once, in order
            assert {order["status"] for order in received} == {"PAID"}


async def test_adjust_prices_over_thousands_of_products_delivers_each_once(live: Live) -> None:
    prefix, ids = await products(live, 3_000)
    async with Client.opened(live) as client:
        await client.subscribed(live, "p", PRODUCT_CHANGED)
        assert await adjust(live, prefix, "-50") == 3_000
        received = [(await client.next("p"))["data"]["productChanged"] for _ in ids]
        assert sorted(pk(p["id"]) for p in received) == sorted(ids)
        assert {p["price"] for p in received} == {"5.00"}


def batch_statements(live: Live) -> tuple[float, float]:
    """(batches, statements) the fan-out has counted so far."""
    samples = {s.name: s.value for s in live.hub.metrics.batch_statements.collect()[0].samples}
    return samples["gql_live_batch_sql_statements_count"], samples[
        "gql_live_batch_sql_statements_sum"
    ]


async def statements_for_one_comment(live: Live, clients: list[tuple[Client, int]]) -> float:
    """The SQL statements of the batch one comment causes, every subscriber served."""
    batches, statements = batch_statements(live)
    comment = await live.comment()
    for client, subscriptions in clients:
        delivered = [await client.recv() for _ in range(subscriptions)]
        assert {m["payload"]["data"]["commentAdded"]["id"] for m in delivered} == {comment}
    after = batch_statements(live)
    assert after[0] == batches + 1
    return after[1] - statements


async def test_statements_per_event_batch_do_not_grow_with_subscribers_or_viewers(
    live: Live,
) -> None:
    """One subscriber, then 500 on five connections: anonymous, two users and an
    admin (four visibilities, four groups): the same statements per batch."""
    tokens = [
        None,
        None,
        live.world.tokens["alice"],
        live.world.tokens["bob"],
        live.world.tokens["admin"],
    ]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client.opened(live, token=t)) for t in tokens]
        await clients[0].subscribed(live, "0", COMMENT_ADDED, postId=live.post())
        one = await statements_for_one_comment(live, [(clients[0], 1)])
        for client in clients:
            for n in range(1 if client is clients[0] else 0, 100):
                await client.subscribe(str(n), COMMENT_ADDED, postId=live.post())
        await until(lambda: live.hub.count == 500)
        many = await statements_for_one_comment(live, [(c, 100) for c in clients])
    # the comment (routing), its post (visibility), its author: one statement each
    assert one == many == 3


async def raw_next(client: Client) -> str:
    """The next ``next`` message as the server wrote it."""
    while True:
        frame = str(await asyncio.wait_for(client.ws.recv(), WITHIN))
        if '"type":"next"' in frame:
            return frame


async def test_one_group_shares_one_encoded_payload(live: Live) -> None:
    async with Client.opened(live) as first, Client.opened(live) as second:
        await first.subscribed(live, "x", COMMENT_ADDED, postId=live.post())
        await second.subscribed(live, "a-much-longer-id", COMMENT_ADDED, postId=live.post())
        await live.comment()
        frames = [await raw_next(c) for c in (first, second)]
    payloads = [frame.partition('"payload":')[2] for frame in frames]
    assert payloads[0] == payloads[1] and payloads[0].startswith('{"data":{"commentAdded"')


# ---------------------------------------------------------------- sessions end, faults

LOG_IN = """
mutation($email: String!, $password: String!) {
  logIn(input: {email: $email, password: $password}) { token userErrors { code } }
}
"""
SIGN_UP = """
mutation($username: String!) {
  signUp(input: {username: $username, email: $username, password: "long enough 123"}) { token }
}
"""
_people = itertools.count(1)


async def new_user(live: Live) -> str:
    """A fresh user's token."""
    name = f"live{next(_people)}"
    body = await live.gql(
        SIGN_UP.replace("email: $username", f'email: "{name}@example.com"'), {"username": name}
    )
    return body["data"]["signUp"]["token"]  # type: ignore[no-any-return]


async def assert_session_ends(live: Live, client: Client) -> None:
    errors = await client.error("o")
    assert codes(errors) == ["UNAUTHENTICATED"]
    assert await client.closed() == (4403, "Forbidden: the session ended")
    await until(lambda: live.hub.count == 0)


async def test_logging_out_ends_the_sessions_subscriptions(live: Live) -> None:
    token = await new_user(live)
    async with Client.opened(live, token=token) as client, Client.opened(live) as bystander:
        await client.subscribed(live, "o", ORDER_UPDATED)
        await bystander.subscribed(live, "c", COMMENT_ADDED, postId=live.post())
        body = await live.gql("mutation { logOut { ok } }", token=token)
        assert body["data"]["logOut"] == {"ok": True}
        errors = await client.error("o")
        assert codes(errors) == ["UNAUTHENTICATED"]
        assert await client.closed() == (4403, "Forbidden: the session ended")
        sentinel = await live.comment()  # the bystander's connection lives on
        assert (await bystander.next("c"))["data"]["commentAdded"]["id"] == sentinel


async def test_an_expiring_token_ends_the_sessions_subscriptions(live: Live) -> None:
    token = await new_user(live)
    async with live.engine.begin() as conn:
        await conn.execute(
            update(AuthToken)
            .where(
                AuthToken.id
                == select(AuthToken.id).order_by(AuthToken.id.desc()).limit(1).scalar_subquery()
            )
            .values(expires_at=text("now() + interval '1 second'"))
        )
    async with Client.opened(live, token=token) as client:
        await client.subscribed(live, "o", ORDER_UPDATED)
        await assert_session_ends(live, client)


async def test_a_deactivated_user_loses_their_subscriptions(live: Live) -> None:
    token = await new_user(live)
    try:
        async with Client.opened(live, token=token) as client:
            await client.subscribed(live, "o", ORDER_UPDATED)
            body = await live.gql(
                'mutation { deactivateInactiveUsers(input: {lastLoginBefore: "2100-01-01T00:00:00Z"}) { affectedCount } }',
                token=live.world.tokens["admin"],
            )
            assert body["data"]["deactivateInactiveUsers"]["affectedCount"] >= 1
            await assert_session_ends(live, client)
    finally:
        async with live.engine.begin() as conn:  # everyone it deactivated signs in again
            await conn.execute(text("UPDATE users SET is_active = true"))


async def listener_pid(live: Live) -> int:
    await asyncio.wait_for(live.hub.listener.wait_connected(), WITHIN)
    pid = live.hub.listener.server_pid
    assert pid is not None
    return pid


async def test_a_lost_listen_connection_ends_subscriptions_then_they_work_again(
    live: Live,
) -> None:
    before = await listener_pid(live)
    async with Client.opened(live) as client:
        await client.subscribed(live, "c", COMMENT_ADDED, postId=live.post())
        async with live.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        errors = await client.error("c")
        assert codes(errors) == ["SERVICE_UNAVAILABLE"]
        assert live.hub.count == 0
        assert await listener_pid(live) != before  # reconnected
        await client.subscribed(live, "c", COMMENT_ADDED, postId=live.post())
        comment = await live.comment()
        assert (await client.next("c"))["data"]["commentAdded"]["id"] == comment


async def test_a_client_that_stops_reading_is_disconnected(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.settings, "ws_send_buffer_bytes", 200_000)
    prefix, ids = await products(live, 500)
    drops = live.hub.metrics.drops.labels("slow_consumer")
    dropped = drops._value.get()
    wide = (
        "subscription { productChanged { id " + " ".join(f"n{i}: name" for i in range(25)) + " } }"
    )
    # close_timeout: the stuck client's own close cannot be answered any more
    stuck_client = Client.opened(live, close_timeout=0.1)
    async with stuck_client as stuck, Client.opened(live) as reader:
        for n in range(20):  # one group: one execution per event, 20 results of ~700 bytes
            await stuck.subscribed(live, str(n), wide)
        await reader.subscribed(live, "p", PRODUCT_CHANGED)
        stuck.ws.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )
        stuck.ws.transport.pause_reading()  # from now on it reads nothing
        for percent in ("1", "2"):  # 14 MB of results for the stuck client
            await adjust(live, prefix, percent)
        received = [(await reader.next("p"))["data"]["productChanged"]["id"] for _ in range(1_000)]
        assert sorted(set(received)) == sorted(live.world.gid("Product", i) for i in ids)
        await until(lambda: live.hub.count == 1)  # the stuck client's 20 are gone
        assert drops._value.get() == dropped + 20
        await until(lambda: len(live.hub.peers) == 1)  # and its connection


async def test_graphiql_sends_subscriptions_over_this_websocket(live: Live) -> None:
    """The IDE's fetcher sends subscriptions to ws://<the page's URL> with graphql-ws,
    the client ``tests/test_live_e2e.py`` drives against this endpoint."""
    page = await live.gql.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "const subscriptionUrl = httpUrlToWebSockeUrl(fetchURL);" in page.text
    assert "subscriptionUrl," in page.text.partition("GraphiQL.createFetcher(")[2][:200]


# ---------------------------------------------------------------- traces


async def test_an_event_batch_is_one_span_with_its_statements(live: Live) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    counted: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if current_observation.get() is not None and current_observation.get().request_id == "live":  # type: ignore[union-attr]
            counted.append(statement)

    async with Client.opened(live) as client:
        await client.subscribed(live, "c", COMMENT_ADDED, postId=live.post())
        live.hub.tracer = provider.get_tracer("test")
        untrace = trace_engine(live.engine, live.hub.tracer)
        event.listen(live.engine.sync_engine, "before_cursor_execute", count)
        try:
            await live.comment()
            await client.next("c")
        finally:
            live.hub.tracer = None
            untrace()
            event.remove(live.engine.sync_engine, "before_cursor_execute", count)

    (batch,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert batch.name == "live batch"
    assert batch.context is not None
    sql = [s for s in exporter.get_finished_spans() if s.parent is not None]
    assert all(s.parent is not None and s.parent.span_id == batch.context.span_id for s in sql)
    assert len(sql) == len(counted) > 0
    names = {s.name for s in sql}
    assert "SQL event objects" in names
    assert names <= {"SQL event objects", "SQL Comment.author", "SQL Comment.post"}
    provider.shutdown()
