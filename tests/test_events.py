"""Events from the writes, through PostgreSQL: what each mutation NOTIFYs at commit,
what it never sends (failed fields, failed commits, queries), chunked payloads, and
the per-process listener (batches, commit order, a lost connection).

Every test commits on the module's own ``stack`` and hears it through a real
``EventListener`` on that database. "Nothing else was sent" is proved without
sleeping: after the mutation the test commits a sentinel notification, and
PostgreSQL delivers notifications in commit order, so everything the mutation sent
has arrived once the sentinel has.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gql_app.data.events import (
    CHANNEL,
    MAX_PAYLOAD_BYTES,
    Events,
    MalformedPayload,
    Topic,
    decode,
    encode,
)
from gql_app.data.listener import Consumer, Event, EventListener, Interrupted
from gql_app.data.transaction import atomic
from gql_app.errors import UserError, UserErrorCode, UserFailure
from gql_app.relay.ids import decode_id, encode_id
from tests.conftest import Stack
from tests.test_commerce_mutations import (
    ADJUST_PRICES,
    CANCEL_ORDER,
    SET_ORDER_STATUS,
    line,
    make_products,
    place_ok,
)
from tests.test_money_mutations import DEPOSIT, TRANSFER, new_account

WITHIN = 10.0  # seconds: an upper bound on every wait, never a proof by sleeping
SENTINEL = (Topic.COMMENT, [0])  # no row has id 0: identities start at 1

ADD_COMMENT = """
mutation($postId: ID!, $body: String!) {
  addComment(input: {postId: $postId, body: $body}) { comment { id } userErrors { code } }
}
"""
PLACE_ORDER = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id } userErrors { field code } }
}
"""
TWO_ORDERS_ONE_SHORT = """
mutation($ok: PlaceOrderInput!, $short: PlaceOrderInput!) {
  ok: placeOrder(input: $ok) { order { id } userErrors { code } }
  short: placeOrder(input: $short) { order { id } userErrors { code } }
}
"""
TWO_TRANSFERS_ONE_POOR = """
mutation($ok: TransferFundsInput!, $poor: TransferFundsInput!) {
  ok: transferFunds(input: $ok) { transfer { id } userErrors { code } }
  poor: transferFunds(input: $poor) { transfer { id } userErrors { code } }
}
"""
POSTS = "query { posts(first: 5) { nodes { id title comments(first: 2) { nodes { body } } } } }"

_bodies = itertools.count(1)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
async def listener(stack: Stack) -> AsyncIterator[EventListener]:
    events = EventListener(stack.url, min_backoff=0.05, max_backoff=0.5)
    await events.start()
    await asyncio.wait_for(events.wait_connected(), WITHIN)
    yield events
    await events.close()


@pytest.fixture
def consumer(listener: EventListener) -> Any:
    feed = listener.consume()
    yield feed
    feed.close()


async def notify_sentinel(stack: Stack) -> None:
    async with stack.engine.begin() as conn:
        await conn.execute(text(f"SELECT pg_notify('{CHANNEL}', 'comment:0')"))


async def received(stack: Stack, consumer: Consumer) -> list[Event]:
    """Every event delivered to ``consumer`` until the sentinel committed now."""
    await notify_sentinel(stack)
    events: list[Event] = []
    while True:
        batch = await asyncio.wait_for(consumer.get(), WITHIN)
        assert batch is not None
        for event in batch:
            if event == SENTINEL:
                return events
            events.append(event)


def pk(global_id: str) -> int:
    return decode_id(global_id)[1]


def post_id(stack: Stack) -> str:
    return encode_id("Post", stack.world.posts[stack.world.alice][0])


async def add_comment(stack: Stack, user: str = "bob") -> int:
    body = await stack.gql(
        ADD_COMMENT,
        {"postId": post_id(stack), "body": f"event {next(_bodies)}"},
        token=stack.world.tokens[user],
    )
    return pk(body["data"]["addComment"]["comment"]["id"])


async def set_status(stack: Stack, status: str, *orders: int) -> int:
    body = await stack.gql(
        SET_ORDER_STATUS,
        {"input": {"ids": [encode_id("Order", o) for o in orders], "status": status}},
        token=stack.world.tokens["admin"],
    )
    assert body["data"]["setOrderStatus"]["userErrors"] == []
    return body["data"]["setOrderStatus"]["affectedCount"]  # type: ignore[no-any-return]


def transfer(source: int, target: int, amount: str, key: str | None = None) -> dict[str, Any]:
    return {
        "fromAccountId": encode_id("Account", source),
        "toAccountId": encode_id("Account", target),
        "amount": amount,
        "idempotencyKey": key,
    }


# ---------------------------------------------------------------- payloads


def test_payloads_are_ids_per_topic_in_order_without_duplicates() -> None:
    events = Events()
    events.add(Topic.ORDER, [7, 3])
    events.add(Topic.PRODUCT, [5])
    events.add(Topic.ORDER, [3, 9])
    assert events.payloads() == ["order:7,3,9", "product:5"]
    assert [decode(p) for p in events.payloads()] == [
        (Topic.ORDER, [7, 3, 9]),
        (Topic.PRODUCT, [5]),
    ]


def test_discard_forgets_what_was_added_since_the_mark() -> None:
    events = Events()
    events.add(Topic.COMMENT, [1])
    mark = events.mark()
    events.add(Topic.COMMENT, [2])
    events.discard(mark)
    assert events.payloads() == ["comment:1"]
    events.discard()
    assert not events and events.payloads() == []


def test_long_id_lists_are_chunked_under_the_limit_in_order() -> None:
    ids = list(range(10**17, 10**17 + 3_000))  # 18-digit ids: about 57 000 bytes
    payloads = encode(Topic.PRODUCT, ids)
    assert len(payloads) > 7
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES < 8_000 for p in payloads)
    assert [i for p in payloads for i in decode(p)[1]] == ids


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "order",
        "order:",
        "order:1,",
        "order:,1",
        "nope:1",
        "order:1;2",
        "order:-1",
        "order: 1",
        "order:1_000",
        "order:²",
        "ORDER:1",
        "order:" + "1" * 8_000,
    ],
)
def test_decode_refuses_what_encode_never_writes(payload: str) -> None:
    with pytest.raises(MalformedPayload):
        decode(payload)


# ---------------------------------------------------------------- atomic() keeps a field's events


class Savepoint:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> bool:
        return False


class Deadlock(Exception):
    sqlstate = "40P01"


def fake_context() -> Any:
    return SimpleNamespace(
        events=Events(),
        loaders=SimpleNamespace(clear_all=lambda: None),
        db=SimpleNamespace(session=SimpleNamespace(begin_nested=Savepoint)),
    )


async def test_a_retried_attempt_keeps_only_the_last_attempts_events():
    ctx = fake_context()
    ctx.events.add(Topic.COMMENT, [1])  # an earlier field's
    attempts = 0

    async def body() -> str:
        nonlocal attempts
        attempts += 1
        ctx.events.add(Topic.ORDER, [attempts])
        if attempts < 3:
            raise DBAPIError("UPDATE", {}, Deadlock())
        return "done"

    assert await atomic(ctx, body, lambda errors: "failed") == "done"
    assert ctx.events.payloads() == ["comment:1", "order:3"]


@pytest.mark.parametrize(
    "error",
    [UserFailure(UserError(field=None, message="no", code=UserErrorCode.INVALID)), KeyError()],
)
async def test_a_failed_field_drops_its_own_events_only(error):
    ctx = fake_context()
    ctx.events.add(Topic.COMMENT, [1])

    async def body() -> str:
        ctx.events.add(Topic.ORDER, [2])
        raise error

    if isinstance(error, UserFailure):  # a userError: the payload reports it
        assert await atomic(ctx, body, lambda errors: "failed") == "failed"
    else:  # anything else propagates
        with pytest.raises(KeyError):
            await atomic(ctx, body, lambda errors: "failed")
    assert ctx.events.payloads() == ["comment:1"]


# ---------------------------------------------------------------- what each mutation sends


async def test_add_comment_sends_the_new_comment(stack, consumer):
    comment = await add_comment(stack)
    assert await received(stack, consumer) == [(Topic.COMMENT, [comment])]


async def test_place_order_sends_its_products_and_the_order(stack, consumer):
    first, second = await make_products(stack, ("1.00", 10), ("2.00", 10))
    order = await place_ok(stack, stack.world.tokens["alice"], [line(second, 1), line(first, 2)])
    assert await received(stack, consumer) == [
        (Topic.PRODUCT, [second, first]),
        (Topic.ORDER, [order]),
    ]


async def test_cancel_order_sends_the_restocked_products_and_the_order(stack, consumer):
    first, second = await make_products(stack, ("1.00", 10), ("2.00", 10))
    order = await place_ok(stack, stack.world.tokens["alice"], [line(second, 1), line(first, 2)])
    await received(stack, consumer)
    body = await stack.gql(
        CANCEL_ORDER,
        {"input": {"id": encode_id("Order", order)}},
        token=stack.world.tokens["alice"],
    )
    assert body["data"]["cancelOrder"]["userErrors"] == []
    assert await received(stack, consumer) == [
        (Topic.PRODUCT, sorted([first, second])),
        (Topic.ORDER, [order]),
    ]


async def test_set_order_status_sends_only_the_orders_that_changed(stack, consumer):
    (product,) = await make_products(stack, ("1.00", 10))
    alice = stack.world.tokens["alice"]
    one, two, three = [await place_ok(stack, alice, [line(product, 1)]) for _ in range(3)]
    await set_status(stack, "PAID", three)
    await received(stack, consumer)

    assert await set_status(stack, "PAID", one, two, three) == 2  # three is PAID already
    assert await received(stack, consumer) == [(Topic.ORDER, sorted([one, two]))]

    assert await set_status(stack, "PENDING", one) == 0  # changes nothing: sends nothing
    assert await received(stack, consumer) == []


async def test_set_order_status_cancelled_also_sends_the_restocked_products(stack, consumer):
    first, second = await make_products(stack, ("1.00", 10), ("1.00", 10))
    alice = stack.world.tokens["alice"]
    one = await place_ok(stack, alice, [line(first, 1), line(second, 1)])
    two = await place_ok(stack, alice, [line(second, 2)])
    await received(stack, consumer)

    assert await set_status(stack, "CANCELLED", one, two) == 2
    assert await received(stack, consumer) == [
        (Topic.ORDER, sorted([one, two])),
        (Topic.PRODUCT, sorted([first, second])),
    ]


async def test_a_transfer_is_sent_once_and_its_replay_sends_nothing(stack, consumer):
    source = await new_account(stack, stack.world.alice, "50.00")
    target = await new_account(stack, stack.world.bob)
    variables = {"input": transfer(source, target, "5.00", key=f"evt-{next(_bodies)}")}
    alice = stack.world.tokens["alice"]

    first = await stack.gql(TRANSFER, variables, token=alice)
    assert await received(stack, consumer) == [
        (Topic.TRANSFER, [pk(first["data"]["transferFunds"]["transfer"]["id"])])
    ]
    replay = await stack.gql(TRANSFER, variables, token=alice)
    assert replay["data"]["transferFunds"]["transfer"] == first["data"]["transferFunds"]["transfer"]
    assert await received(stack, consumer) == []


async def test_a_deposit_writes_no_transfer_row_so_sends_nothing(stack, consumer):
    account = await new_account(stack, stack.world.bob)
    body = await stack.gql(
        DEPOSIT,
        {"input": {"accountId": encode_id("Account", account), "amount": "10.00"}},
        token=stack.world.tokens["admin"],
    )
    assert body["data"]["depositFunds"]["userErrors"] == []
    assert await received(stack, consumer) == []


async def test_adjust_prices_sends_every_changed_product(stack, consumer):
    first, second, _untouched = await make_products(stack, ("1.00", 1), ("2.00", 1), ("3.00", 1))
    body = await stack.gql(
        ADJUST_PRICES,
        {
            "input": {
                "percent": "10",
                "productIds": [encode_id("Product", first), encode_id("Product", second)],
            }
        },
        token=stack.world.tokens["admin"],
    )
    assert body["data"]["adjustPrices"]["affectedCount"] == 2
    assert await received(stack, consumer) == [(Topic.PRODUCT, [first, second])]


# ---------------------------------------------------------------- what is never sent


async def test_a_failed_field_sends_nothing_while_its_sibling_sends(stack, consumer):
    plenty, scarce = await make_products(stack, ("1.00", 10), ("1.00", 1))
    body = await stack.gql(
        TWO_ORDERS_ONE_SHORT,
        {
            "ok": {"lines": [line(plenty, 1)]},
            "short": {"lines": [line(plenty, 1), line(scarce, 2)]},
        },
        token=stack.world.tokens["alice"],
    )
    assert body["data"]["short"] == {"order": None, "userErrors": [{"code": "OUT_OF_STOCK"}]}
    order = pk(body["data"]["ok"]["order"]["id"])
    assert await received(stack, consumer) == [(Topic.PRODUCT, [plenty]), (Topic.ORDER, [order])]


async def test_an_insufficient_funds_field_sends_nothing_while_its_sibling_sends(stack, consumer):
    source = await new_account(stack, stack.world.alice, "10.00")
    target = await new_account(stack, stack.world.bob)
    body = await stack.gql(
        TWO_TRANSFERS_ONE_POOR,
        {"ok": transfer(source, target, "6.00"), "poor": transfer(source, target, "6.00")},
        token=stack.world.tokens["alice"],
    )
    assert body["data"]["poor"] == {
        "transfer": None,
        "userErrors": [{"code": "INSUFFICIENT_FUNDS"}],
    }
    posted = pk(body["data"]["ok"]["transfer"]["id"])
    assert await received(stack, consumer) == [(Topic.TRANSFER, [posted])]


@contextlib.asynccontextmanager
async def refusing(
    stack: Stack, table: str, condition: str, *, at_commit: bool
) -> AsyncIterator[None]:
    """A trigger that raises on inserting a row of ``table`` where ``condition`` holds
    (``NEW.<column>``): at once, or at COMMIT (a deferred constraint trigger)."""
    name = f"refuse_{next(_bodies)}"
    trigger = (
        f"CREATE CONSTRAINT TRIGGER {name} AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED"
        if at_commit
        else f"CREATE TRIGGER {name} BEFORE INSERT ON {table}"
    )
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF {condition} THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
            )
        )
        await conn.execute(text(f"{trigger} FOR EACH ROW EXECUTE FUNCTION {name}()"))
    try:
        yield
    finally:
        async with stack.engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER {name} ON {table}"))
            await conn.execute(text(f"DROP FUNCTION {name}()"))


async def test_a_field_that_fails_after_its_write_sends_nothing_while_its_sibling_sends(
    stack, consumer
):
    # Given order items of quantity 7 are refused, after the stock was reserved
    plenty, other = await make_products(stack, ("1.00", 10), ("1.00", 10))
    async with refusing(stack, "order_items", "NEW.quantity = 7", at_commit=False):
        # When one document places a good order, then one whose items are refused
        body = await stack.gql(
            TWO_ORDERS_ONE_SHORT,
            {"ok": {"lines": [line(plenty, 1)]}, "short": {"lines": [line(other, 7)]}},
            token=stack.world.tokens["alice"],
            expect_errors=True,
        )
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    async with stack.engine.connect() as conn:
        order = await conn.scalar(
            text("SELECT max(id) FROM orders WHERE customer_id = :c"), {"c": stack.world.alice}
        )
    # Then only the good order's events were sent (the other's PRODUCT event was dropped)
    assert await received(stack, consumer) == [(Topic.PRODUCT, [plenty]), (Topic.ORDER, [order])]


async def test_a_failed_commit_sends_nothing(stack, consumer, stack_sql):
    # Given a deferred constraint that refuses one comment body, only at COMMIT
    async with refusing(stack, "comments", "NEW.body = 'refused at commit'", at_commit=True):
        # When the comment is added: the field succeeds, the commit fails
        body = await stack.gql(
            ADD_COMMENT,
            {"postId": post_id(stack), "body": "refused at commit"},
            token=stack.world.tokens["bob"],
            expect_errors=True,
        )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    # Then its pg_notify went out in the transaction, and nothing was delivered
    assert sum("pg_notify" in s for s in stack_sql.statements) == 1
    assert await received(stack, consumer) == []


async def test_queries_send_nothing(stack, consumer, stack_sql):
    body = await stack.gql(POSTS, token=stack.world.tokens["alice"])
    assert body["data"]["posts"]["nodes"]
    assert not any("pg_notify" in s for s in stack_sql.statements)
    assert await received(stack, consumer) == []


# ---------------------------------------------------------------- many rows, order


def assert_chunked_exactly(events: list[Event], topic: Topic, expected: list[int]) -> None:
    assert {t for t, _ in events} == {topic}
    assert len(events) > 1  # really chunked
    for t, ids in events:
        assert len(f"{t.value}:{','.join(map(str, ids))}".encode()) < 8_000
    sent = [i for _, ids in events for i in ids]
    assert sorted(sent) == sorted(expected) and len(sent) == len(set(sent))


async def test_adjust_prices_over_thousands_of_rows_sends_chunked_payloads(stack, consumer):
    async with stack.engine.begin() as conn:
        products = list(
            await conn.scalars(
                text(
                    "INSERT INTO products (sku, name, price, stock) "
                    "SELECT 'EVT-BULK-' || g, 'Bulk ' || g, 1.00, 1 "
                    "FROM generate_series(1, 2500) AS g RETURNING id"
                )
            )
        )
    body = await stack.gql(
        ADJUST_PRICES,
        {"input": {"percent": "1", "skuPrefix": "EVT-BULK-"}},
        token=stack.world.tokens["admin"],
    )
    assert body["data"]["adjustPrices"]["affectedCount"] == 2_500
    assert_chunked_exactly(await received(stack, consumer), Topic.PRODUCT, products)


async def test_set_order_status_over_thousands_of_rows_sends_chunked_payloads(stack, consumer):
    # setOrderStatus takes at most 100 ids: 25 aliased fields of 100 make one operation of 2 500
    async with stack.engine.begin() as conn:
        orders = list(
            await conn.scalars(
                text(
                    "INSERT INTO orders (customer_id, status) "
                    "SELECT :customer, 'PENDING' FROM generate_series(1, 2500) RETURNING id"
                ),
                {"customer": stack.world.alice},
            )
        )
    groups = [orders[i : i + 100] for i in range(0, len(orders), 100)]
    document = "mutation(" + ", ".join(f"$g{n}: [ID!]!" for n in range(len(groups))) + ") {\n"
    document += "\n".join(
        f"  g{n}: setOrderStatus(input: {{ids: $g{n}, status: PAID}}) {{ affectedCount }}"
        for n in range(len(groups))
    )
    document += "\n}"
    body = await stack.gql(
        document,
        {f"g{n}": [encode_id("Order", o) for o in group] for n, group in enumerate(groups)},
        token=stack.world.tokens["admin"],
    )
    assert sum(field["affectedCount"] for field in body["data"].values()) == 2_500
    assert_chunked_exactly(await received(stack, consumer), Topic.ORDER, orders)


async def test_sequential_mutations_arrive_in_commit_order(stack, consumer):
    (product,) = await make_products(stack, ("1.00", 1))
    comment = await add_comment(stack)
    await stack.gql(
        ADJUST_PRICES,
        {"input": {"percent": "5", "productIds": [encode_id("Product", product)]}},
        token=stack.world.tokens["admin"],
    )
    later = await add_comment(stack, "alice")
    assert await received(stack, consumer) == [
        (Topic.COMMENT, [comment]),
        (Topic.PRODUCT, [product]),
        (Topic.COMMENT, [later]),
    ]


async def test_events_committed_together_arrive_as_one_batch(stack, consumer):
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                f"SELECT pg_notify('{CHANNEL}', p) FROM unnest(ARRAY['order:1', 'product:2', 'comment:0']) AS p"
            )
        )
    batch = await asyncio.wait_for(consumer.get(), WITHIN)
    assert batch == [(Topic.ORDER, [1]), (Topic.PRODUCT, [2]), SENTINEL]


# ---------------------------------------------------------------- the listener's connection


async def test_the_listener_survives_a_terminated_connection(stack, listener, consumer):
    # Given the listener's backend
    pid = listener.server_pid
    assert pid is not None
    # When it is terminated
    async with stack.engine.begin() as conn:
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    # Then the consumer is told the stream was interrupted
    with pytest.raises(Interrupted):
        await asyncio.wait_for(consumer.get(), WITHIN)
    # And the listener reconnects, on a new backend, and hears the next commit
    await asyncio.wait_for(listener.wait_connected(), WITHIN)
    assert listener.server_pid not in (None, pid)
    comment = await add_comment(stack)
    assert await received(stack, consumer) == [(Topic.COMMENT, [comment])]


async def test_an_unreachable_database_is_retried_until_closed_and_nothing_is_left_running():
    # Given a listener on a port nothing listens on
    unreachable = EventListener(
        "postgresql://nobody@127.0.0.1:1/none",
        min_backoff=0.01,
        max_backoff=0.02,
        connect_timeout=1,
    )
    feed = unreachable.consume()
    # When it starts: it returns after the first failed attempt, and keeps trying
    before = asyncio.all_tasks()
    await unreachable.start()
    assert not unreachable.connected
    tasks = list(asyncio.all_tasks() - before)
    assert [t.get_name() for t in tasks] == ["gql_app event listener"]
    assert not tasks[0].done()
    # Then close stops it and ends the consumers' streams
    await unreachable.close()
    assert tasks[0].done()
    assert await asyncio.wait_for(feed.get(), WITHIN) is None
    assert [item async for item in feed] == []


async def test_a_malformed_payload_is_ignored(stack, consumer):
    async with stack.engine.begin() as conn:
        await conn.execute(text(f"SELECT pg_notify('{CHANNEL}', 'order:1;DROP')"))
    comment = await add_comment(stack)
    assert await received(stack, consumer) == [(Topic.COMMENT, [comment])]


async def test_a_consumer_that_falls_behind_loses_its_backlog_and_is_told():
    consumer = Consumer(EventListener("postgresql://unused"), max_batches=2)
    for n in range(3):
        consumer.put([(Topic.ORDER, [n])])
    with pytest.raises(Interrupted):
        await consumer.get()
    consumer.put([(Topic.ORDER, [9])])
    assert await consumer.get() == [(Topic.ORDER, [9])]


async def test_keepalive_pings_share_the_connection_with_notifications(stack):
    async with EventListener(stack.url, keepalive=0.02) as pinging:
        await asyncio.wait_for(pinging.wait_connected(), WITHIN)
        feed = pinging.consume()
        pid = pinging.server_pid

        async def pinged() -> None:  # polled, bounded: the ping shows in pg_stat_activity
            while True:
                async with stack.engine.connect() as conn:
                    query = await conn.scalar(
                        text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                    )
                if query == "SELECT 1":
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(pinged(), WITHIN)
        comment = await add_comment(stack)
        assert await received(stack, feed) == [(Topic.COMMENT, [comment])]
        assert pinging.server_pid == pid
