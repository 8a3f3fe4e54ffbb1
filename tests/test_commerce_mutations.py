"""placeOrder, cancelOrder, setOrderStatus and adjustPrices over real HTTP, on an isolated stack.

Every test makes its own products (unique SKUs), so the tests do not depend on
each other; each asserts both the JSON a client gets and the rows left behind.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gql_app.models import Order, OrderItem, OrderStatus, Product
from gql_app.relay.ids import encode_id

PLACE_ORDER = """
mutation PlaceOrder($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    order {
      id status total itemCount
      customer { username }
      items { quantity unitPrice subtotal product { id sku price stock } }
    }
    userErrors { field message code }
  }
}
"""

CANCEL_ORDER = """
mutation CancelOrder($input: CancelOrderInput!) {
  cancelOrder(input: $input) {
    order { id status items { quantity product { stock } } }
    userErrors { field message code }
  }
}
"""

SET_ORDER_STATUS = """
mutation SetOrderStatus($input: SetOrderStatusInput!) {
  setOrderStatus(input: $input) { affectedCount userErrors { field message code } }
}
"""

ADJUST_PRICES = """
mutation AdjustPrices($input: AdjustPricesInput!) {
  adjustPrices(input: $input) { affectedCount userErrors { field message code } }
}
"""

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { token userErrors { code } }
}
"""

_skus = itertools.count(1)


# ---------------------------------------------------------------- helpers


def gid(type_name: str, pk: int) -> str:
    return encode_id(type_name, pk)


async def make_products(stack: Any, *specs: tuple[str, int] | tuple[str, int, str]) -> list[int]:
    """Products with (price, stock[, sku]); SKUs are unique per call unless given."""
    async with AsyncSession(stack.engine, expire_on_commit=False) as session:
        products = []
        for spec in specs:
            price, stock = spec[0], spec[1]
            sku = spec[2] if len(spec) == 3 else f"CMT-{next(_skus):05d}"  # type: ignore[misc]
            products.append(Product(sku=sku, name=f"Test {sku}", price=Decimal(price), stock=stock))
        session.add_all(products)
        await session.commit()
        return [p.id for p in products]


async def product_state(stack: Any, *ids: int) -> list[tuple[Decimal, int]]:
    async with AsyncSession(stack.engine) as session:
        rows = (
            await session.execute(
                select(Product.id, Product.price, Product.stock).where(Product.id.in_(ids))
            )
        ).all()
    by_id = {row.id: (row.price, row.stock) for row in rows}
    return [by_id[i] for i in ids]


async def order_state(stack: Any, *ids: int) -> list[OrderStatus]:
    async with AsyncSession(stack.engine) as session:
        rows = (
            await session.execute(select(Order.id, Order.status).where(Order.id.in_(ids)))
        ).all()
    by_id = {row.id: row.status for row in rows}
    return [by_id[i] for i in ids]


async def database_snapshot(stack: Any) -> tuple[Any, ...]:
    """Everything a commerce mutation could change."""
    async with AsyncSession(stack.engine) as session:
        products = (
            await session.execute(
                select(Product.id, Product.price, Product.stock).order_by(Product.id)
            )
        ).all()
        orders = (await session.execute(select(Order.id, Order.status).order_by(Order.id))).all()
        items = await session.scalar(select(func.count()).select_from(OrderItem))
    return tuple(products), tuple(orders), items


async def place(stack: Any, token: str | None, lines: list[dict[str, Any]]) -> dict[str, Any]:
    body = await stack.gql(PLACE_ORDER, {"input": {"lines": lines}}, token=token)
    return body["data"]["placeOrder"]  # type: ignore[no-any-return]


async def place_ok(stack: Any, token: str, lines: list[dict[str, Any]]) -> int:
    payload = await place(stack, token, lines)
    assert payload["userErrors"] == []
    return int(decode_pk(payload["order"]["id"]))


def decode_pk(global_id: str) -> int:
    from gql_app.relay.ids import decode_id

    return decode_id(global_id)[1]


def line(product_id: int, quantity: int) -> dict[str, Any]:
    return {"productId": gid("Product", product_id), "quantity": quantity}


def write_statements(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "WITH"))]


# ---------------------------------------------------------------- placeOrder


async def test_place_order_reserves_stock_at_current_prices_and_shows_the_fresh_order(stack):
    tokens = stack.world.tokens
    first, second = await make_products(stack, ("12.50", 10), ("3.99", 4))

    payload = await place(stack, tokens["alice"], [line(first, 3), line(second, 4)])

    assert payload["userErrors"] == []
    order = payload["order"]
    assert order["status"] == "PENDING"
    assert order["customer"] == {"username": "alice"}
    assert order["itemCount"] == 2
    assert Decimal(order["total"]) == Decimal("53.46")
    assert [
        (i["quantity"], i["unitPrice"], i["subtotal"], i["product"]["stock"])
        for i in order["items"]
    ] == [(3, "12.50", "37.50", 7), (4, "3.99", "15.96", 0)]
    assert await product_state(stack, first, second) == [
        (Decimal("12.50"), 7),
        (Decimal("3.99"), 0),
    ]
    async with AsyncSession(stack.engine) as session:
        saved = (
            await session.execute(
                select(Order.customer_id, Order.status).where(Order.id == decode_pk(order["id"]))
            )
        ).one()
        items = (
            await session.execute(
                select(OrderItem.product_id, OrderItem.quantity, OrderItem.unit_price)
                .where(OrderItem.order_id == decode_pk(order["id"]))
                .order_by(OrderItem.id)
            )
        ).all()
    assert tuple(saved) == (stack.world.alice, OrderStatus.PENDING)
    assert [tuple(i) for i in items] == [
        (first, 3, Decimal("12.50")),
        (second, 4, Decimal("3.99")),
    ]


@pytest.mark.parametrize(
    ("token", "lines", "code", "field"),
    [
        (None, lambda p: [line(p, 1)], "UNAUTHENTICATED", None),
        ("alice", lambda p: [], "INVALID", ["input", "lines"]),
        ("alice", lambda p: [line(p, 1)] * 51, "INVALID", ["input", "lines"]),
        ("alice", lambda p: [line(p, 0)], "INVALID", ["input", "lines", "0", "quantity"]),
        ("alice", lambda p: [line(p, 1001)], "INVALID", ["input", "lines", "0", "quantity"]),
        (
            "alice",
            lambda p: [{"productId": "not-an-id", "quantity": 1}],
            "INVALID",
            ["input", "lines", "0", "productId"],
        ),
        (
            "alice",
            lambda p: [line(p, 1), {"productId": gid("User", p), "quantity": 1}],
            "INVALID",
            ["input", "lines", "1", "productId"],
        ),
        (
            "alice",
            lambda p: [line(p, 1), line(p, 2)],
            "INVALID",
            ["input", "lines", "1", "productId"],
        ),
        (
            "alice",
            lambda p: [line(p, 1), line(2**62, 1)],
            "NOT_FOUND",
            ["input", "lines", "1", "productId"],
        ),
    ],
    ids=[
        "anonymous",
        "no-lines",
        "51-lines",
        "quantity-0",
        "quantity-1001",
        "malformed-id",
        "wrong-type-id",
        "duplicate-product",
        "unknown-product",
    ],
)
async def test_place_order_refusals_change_nothing(stack, token, lines, code, field):
    (product,) = await make_products(stack, ("1.00", 5))
    before = await database_snapshot(stack)

    payload = await place(stack, stack.world.tokens.get(token or ""), lines(product))

    assert payload["order"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]
    assert await database_snapshot(stack) == before


async def test_place_order_reports_every_bad_line_at_once(stack):
    (product,) = await make_products(stack, ("1.00", 5))
    before = await database_snapshot(stack)

    payload = await place(
        stack,
        stack.world.tokens["alice"],
        [
            {"productId": "bad", "quantity": 1},
            {"productId": "worse", "quantity": 0},
            line(product, 1),
            line(product, 1),
        ],
    )

    assert payload["order"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID", ["input", "lines", "0", "productId"]),
        ("INVALID", ["input", "lines", "1", "productId"]),
        ("INVALID", ["input", "lines", "1", "quantity"]),
        ("INVALID", ["input", "lines", "3", "productId"]),
    ]
    assert await database_snapshot(stack) == before


async def test_place_order_out_of_stock_names_the_line_and_reserves_nothing(stack):
    plenty, scarce = await make_products(stack, ("2.00", 10), ("3.00", 2))
    before = await database_snapshot(stack)

    payload = await place(stack, stack.world.tokens["bob"], [line(plenty, 5), line(scarce, 3)])

    assert payload["order"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("OUT_OF_STOCK", ["input", "lines", "1", "quantity"])
    ]
    assert await database_snapshot(stack) == before
    assert await product_state(stack, plenty, scarce) == [
        (Decimal("2.00"), 10),
        (Decimal("3.00"), 2),
    ]


async def test_a_refused_field_keeps_the_earlier_fields_writes(stack):
    (product,) = await make_products(stack, ("1.00", 3))
    document = """
    mutation Two($ok: PlaceOrderInput!, $bad: PlaceOrderInput!) {
      ok: placeOrder(input: $ok) { order { id } userErrors { code } }
      bad: placeOrder(input: $bad) { order { id } userErrors { code } }
    }
    """

    body = await stack.gql(
        document,
        {"ok": {"lines": [line(product, 2)]}, "bad": {"lines": [line(product, 2)]}},
        token=stack.world.tokens["alice"],
    )

    assert body["data"]["ok"]["order"] is not None
    assert body["data"]["bad"] == {"order": None, "userErrors": [{"code": "OUT_OF_STOCK"}]}
    assert await product_state(stack, product) == [(Decimal("1.00"), 1)]


# ---------------------------------------------------------------- concurrency


async def test_concurrent_orders_never_oversell_and_concurrent_cancels_restock_once(stack):
    tokens = [stack.world.tokens[name] for name in ("admin", "alice", "bob")]
    for name in ("cmt_buyer_one", "cmt_buyer_two"):
        body = await stack.gql(
            SIGN_UP,
            {"input": {"username": name, "email": f"{name}@example.com", "password": "p" * 12}},
        )
        tokens.append(body["data"]["signUp"]["token"])
    (product,) = await make_products(stack, ("9.00", 5))

    responses = await asyncio.gather(
        *(
            stack.gql(PLACE_ORDER, {"input": {"lines": [line(product, 1)]}}, token=tokens[n % 5])
            for n in range(100)
        )
    )

    payloads = [r["data"]["placeOrder"] for r in responses]
    placed = [(tokens[n % 5], p["order"]) for n, p in enumerate(payloads) if p["order"]]
    outcomes = Counter(e["code"] for p in payloads for e in p["userErrors"])
    assert len(placed) == 5
    assert outcomes == Counter({"OUT_OF_STOCK": 95})
    assert await product_state(stack, product) == [(Decimal("9.00"), 0)]
    async with AsyncSession(stack.engine) as session:
        quantities = (
            await session.execute(
                select(func.count(), func.sum(OrderItem.quantity)).where(
                    OrderItem.product_id == product
                )
            )
        ).one()
    assert tuple(quantities) == (5, 5)

    # Every order cancelled by its customer, the first three twice at once.
    cancels = [(token, order["id"]) for token, order in placed]
    cancels += cancels[:3]
    responses = await asyncio.gather(
        *(stack.gql(CANCEL_ORDER, {"input": {"id": i}}, token=t) for t, i in cancels)
    )

    payloads = [r["data"]["cancelOrder"] for r in responses]
    cancelled = [p["order"]["id"] for p in payloads if p["order"]]
    assert sorted(cancelled) == sorted(order["id"] for _, order in placed)
    assert Counter(e["code"] for p in payloads for e in p["userErrors"]) == Counter(
        {"INVALID_STATE": 3}
    )
    assert await product_state(stack, product) == [(Decimal("9.00"), 5)]
    assert (
        await order_state(stack, *(decode_pk(i) for i in cancelled)) == [OrderStatus.CANCELLED] * 5
    )


# ---------------------------------------------------------------- cancelOrder


async def test_cancel_order_restocks_every_item_and_shows_the_cancelled_order(stack):
    first, second = await make_products(stack, ("1.00", 10), ("2.00", 10))
    order = await place_ok(stack, stack.world.tokens["alice"], [line(first, 4), line(second, 6)])

    body = await stack.gql(
        CANCEL_ORDER, {"input": {"id": gid("Order", order)}}, token=stack.world.tokens["alice"]
    )

    assert body["data"]["cancelOrder"] == {
        "order": {
            "id": gid("Order", order),
            "status": "CANCELLED",
            "items": [
                {"quantity": 4, "product": {"stock": 10}},
                {"quantity": 6, "product": {"stock": 10}},
            ],
        },
        "userErrors": [],
    }
    assert await order_state(stack, order) == [OrderStatus.CANCELLED]
    assert await product_state(stack, first, second) == [
        (Decimal("1.00"), 10),
        (Decimal("2.00"), 10),
    ]


async def test_an_admin_may_cancel_anyones_paid_order(stack):
    (product,) = await make_products(stack, ("1.00", 3))
    order = await place_ok(stack, stack.world.tokens["bob"], [line(product, 3)])
    await stack.gql(
        SET_ORDER_STATUS,
        {"input": {"ids": [gid("Order", order)], "status": "PAID"}},
        token=stack.world.tokens["admin"],
    )

    body = await stack.gql(
        CANCEL_ORDER, {"input": {"id": gid("Order", order)}}, token=stack.world.tokens["admin"]
    )

    assert body["data"]["cancelOrder"]["order"]["status"] == "CANCELLED"
    assert await product_state(stack, product) == [(Decimal("1.00"), 3)]


async def test_cancel_order_refusals_change_nothing(stack):
    tokens = stack.world.tokens
    (product,) = await make_products(stack, ("1.00", 10))
    pending = await place_ok(stack, tokens["alice"], [line(product, 1)])
    shipped = await place_ok(stack, tokens["alice"], [line(product, 1)])
    for status in ("PAID", "SHIPPED"):
        await stack.gql(
            SET_ORDER_STATUS,
            {"input": {"ids": [gid("Order", shipped)], "status": status}},
            token=tokens["admin"],
        )
    cases = [
        (None, gid("Order", pending), "UNAUTHENTICATED", None),
        ("alice", "garbage", "INVALID", ["input", "id"]),
        ("alice", gid("Product", pending), "INVALID", ["input", "id"]),
        ("bob", gid("Order", pending), "NOT_FOUND", ["input", "id"]),  # not bob's: not leaked
        ("bob", gid("Order", 2**62), "NOT_FOUND", ["input", "id"]),
        ("alice", gid("Order", shipped), "INVALID_STATE", ["input", "id"]),
    ]
    before = await database_snapshot(stack)

    for token, order_id, code, field in cases:
        body = await stack.gql(
            CANCEL_ORDER, {"input": {"id": order_id}}, token=tokens.get(token or "")
        )
        payload = body["data"]["cancelOrder"]
        assert payload["order"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]

    assert await database_snapshot(stack) == before
    assert await order_state(stack, pending, shipped) == [OrderStatus.PENDING, OrderStatus.SHIPPED]


# ---------------------------------------------------------------- setOrderStatus


async def test_set_order_status_follows_the_state_machine_in_one_statement(stack, stack_sql):
    tokens = stack.world.tokens
    (product,) = await make_products(stack, ("1.00", 10))
    first = await place_ok(stack, tokens["alice"], [line(product, 1)])
    second = await place_ok(stack, tokens["bob"], [line(product, 1)])
    ids = [gid("Order", first), gid("Order", second), gid("Order", 2**62)]

    async def set_status(status: str, order_ids: list[str]) -> int:
        stack_sql.reset()
        body = await stack.gql(
            SET_ORDER_STATUS, {"input": {"ids": order_ids, "status": status}}, token=tokens["admin"]
        )
        payload = body["data"]["setOrderStatus"]
        assert payload["userErrors"] == []
        changed = payload["affectedCount"] > 0
        # auth, SAVEPOINT, the UPDATE, RELEASE SAVEPOINT, and pg_notify when rows changed
        assert stack_sql.count == 4 + changed
        assert len(write_statements(stack_sql.statements)) == 1
        return payload["affectedCount"]  # type: ignore[no-any-return]

    assert await set_status("SHIPPED", ids) == 0  # PENDING -> SHIPPED skips PAID
    assert await order_state(stack, first, second) == [OrderStatus.PENDING] * 2
    assert await set_status("PAID", ids) == 2
    assert await set_status("SHIPPED", ids[:1]) == 1
    assert await order_state(stack, first, second) == [OrderStatus.SHIPPED, OrderStatus.PAID]
    assert await set_status("PAID", ids) == 0  # SHIPPED never goes back, PAID stays PAID
    assert await order_state(stack, first, second) == [OrderStatus.SHIPPED, OrderStatus.PAID]


async def test_set_order_status_pending_is_reached_from_nowhere_and_writes_nothing(
    stack, stack_sql
):
    (product,) = await make_products(stack, ("1.00", 10))
    order = await place_ok(stack, stack.world.tokens["alice"], [line(product, 1)])
    await stack.gql(
        SET_ORDER_STATUS,
        {"input": {"ids": [gid("Order", order)], "status": "PAID"}},
        token=stack.world.tokens["admin"],
    )
    stack_sql.reset()

    body = await stack.gql(
        SET_ORDER_STATUS,
        {"input": {"ids": [gid("Order", order)], "status": "PENDING"}},
        token=stack.world.tokens["admin"],
    )

    assert body["data"]["setOrderStatus"] == {"affectedCount": 0, "userErrors": []}
    assert write_statements(stack_sql.statements) == []
    assert stack_sql.count == 1  # the auth statement only
    assert await order_state(stack, order) == [OrderStatus.PAID]


async def test_set_order_status_cancelled_restocks_in_the_same_statement(stack, stack_sql):
    tokens = stack.world.tokens
    first, second = await make_products(stack, ("1.00", 10), ("1.00", 10))
    one = await place_ok(stack, tokens["alice"], [line(first, 2), line(second, 3)])
    two = await place_ok(stack, tokens["bob"], [line(first, 4)])
    shipped = await place_ok(stack, tokens["bob"], [line(second, 5)])
    admin = tokens["admin"]
    for status in ("PAID", "SHIPPED"):
        await stack.gql(
            SET_ORDER_STATUS,
            {"input": {"ids": [gid("Order", shipped)], "status": status}},
            token=admin,
        )
    assert await product_state(stack, first, second) == [(Decimal("1.00"), 4), (Decimal("1.00"), 2)]
    stack_sql.reset()

    body = await stack.gql(
        SET_ORDER_STATUS,
        {
            "input": {
                "ids": [gid("Order", one), gid("Order", two), gid("Order", shipped)],
                "status": "CANCELLED",
            }
        },
        token=admin,
    )

    assert body["data"]["setOrderStatus"] == {"affectedCount": 2, "userErrors": []}
    assert stack_sql.count == 5  # auth, SAVEPOINT, the UPDATE, RELEASE SAVEPOINT, pg_notify
    (write,) = write_statements(stack_sql.statements)
    assert write.lstrip().upper().startswith("WITH")
    assert await order_state(stack, one, two, shipped) == [
        OrderStatus.CANCELLED,
        OrderStatus.CANCELLED,
        OrderStatus.SHIPPED,
    ]
    assert await product_state(stack, first, second) == [
        (Decimal("1.00"), 10),
        (Decimal("1.00"), 5),
    ]


@pytest.mark.parametrize(
    ("token", "ids", "code", "field"),
    [
        (None, lambda o: [o], "UNAUTHENTICATED", None),
        ("alice", lambda o: [o], "FORBIDDEN", None),
        ("admin", lambda o: [o] * 101, "INVALID", ["input", "ids"]),
        ("admin", lambda o: [o, "garbage"], "INVALID", ["input", "ids", "1"]),
        ("admin", lambda o: [gid("Product", 1)], "INVALID", ["input", "ids", "0"]),
    ],
    ids=["anonymous", "not-admin", "101-ids", "malformed-id", "wrong-type-id"],
)
async def test_set_order_status_refusals_change_nothing(stack, token, ids, code, field):
    (product,) = await make_products(stack, ("1.00", 10))
    order = await place_ok(stack, stack.world.tokens["alice"], [line(product, 1)])
    before = await database_snapshot(stack)

    body = await stack.gql(
        SET_ORDER_STATUS,
        {"input": {"ids": ids(gid("Order", order)), "status": "CANCELLED"}},
        token=stack.world.tokens.get(token or ""),
    )

    payload = body["data"]["setOrderStatus"]
    assert payload["affectedCount"] == 0
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]
    assert await database_snapshot(stack) == before


# ---------------------------------------------------------------- adjustPrices


async def test_adjust_prices_by_ids_rounds_to_cents_in_one_statement(stack, stack_sql):
    first, second, untouched = await make_products(stack, ("9.99", 1), ("100.00", 1), ("5.00", 1))
    stack_sql.reset()

    body = await stack.gql(
        ADJUST_PRICES,
        {
            "input": {
                "percent": "10",
                "productIds": [gid("Product", first), gid("Product", second)],
            }
        },
        token=stack.world.tokens["admin"],
    )

    assert body["data"]["adjustPrices"] == {"affectedCount": 2, "userErrors": []}
    assert stack_sql.count == 5  # auth, SAVEPOINT, the UPDATE, RELEASE SAVEPOINT, pg_notify
    (write,) = write_statements(stack_sql.statements)
    assert write.lstrip().upper().startswith("UPDATE")
    assert await product_state(stack, first, second, untouched) == [
        (Decimal("10.99"), 1),  # 10.989
        (Decimal("110.00"), 1),
        (Decimal("5.00"), 1),
    ]


async def test_adjust_prices_by_sku_prefix_treats_wildcards_literally(stack, stack_sql):
    matched, also_matched, lookalike = await make_products(
        stack,
        ("10.00", 1, "CMT%_AP-1"),
        ("20.00", 1, "CMT%_AP-2"),
        ("30.00", 1, "CMTx-AP-3"),
    )
    stack_sql.reset()

    body = await stack.gql(
        ADJUST_PRICES,
        {"input": {"percent": "-25.5", "skuPrefix": "CMT%_"}},
        token=stack.world.tokens["admin"],
    )

    assert body["data"]["adjustPrices"] == {"affectedCount": 2, "userErrors": []}
    assert stack_sql.count == 5  # with the pg_notify before COMMIT
    assert len(write_statements(stack_sql.statements)) == 1
    assert await product_state(stack, matched, also_matched, lookalike) == [
        (Decimal("7.45"), 1),
        (Decimal("14.90"), 1),
        (Decimal("30.00"), 1),
    ]


async def test_adjust_prices_overflowing_numeric_is_refused_and_changes_nothing(stack):
    small, huge = await make_products(
        stack, ("1.00", 1, "CMT-OVF-1"), ("1000000000.00", 1, "CMT-OVF-2")
    )
    before = await database_snapshot(stack)

    body = await stack.gql(
        ADJUST_PRICES,
        {"input": {"percent": "1000", "skuPrefix": "CMT-OVF-"}},
        token=stack.world.tokens["admin"],
    )

    payload = body["data"]["adjustPrices"]
    assert payload["affectedCount"] == 0
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID", ["input", "percent"])
    ]
    assert await database_snapshot(stack) == before
    assert await product_state(stack, small, huge) == [
        (Decimal("1.00"), 1),
        (Decimal("1000000000.00"), 1),
    ]


@pytest.mark.parametrize(
    ("token", "input", "code", "field"),
    [
        (None, lambda p: {"percent": "5", "productIds": [p]}, "UNAUTHENTICATED", None),
        ("bob", lambda p: {"percent": "5", "productIds": [p]}, "FORBIDDEN", None),
        ("admin", lambda p: {"percent": "5"}, "INVALID", ["input"]),
        (
            "admin",
            lambda p: {"percent": "5", "productIds": [p], "skuPrefix": "CMT"},
            "INVALID",
            ["input"],
        ),
        (
            "admin",
            lambda p: {"percent": "-100", "productIds": [p]},
            "INVALID",
            ["input", "percent"],
        ),
        (
            "admin",
            lambda p: {"percent": "1000.01", "productIds": [p]},
            "INVALID",
            ["input", "percent"],
        ),
        (
            "admin",
            lambda p: {"percent": "1.234", "productIds": [p]},
            "INVALID",
            ["input", "percent"],
        ),
        (
            "admin",
            lambda p: {"percent": "5", "productIds": [p] * 101},
            "INVALID",
            ["input", "productIds"],
        ),
        (
            "admin",
            lambda p: {"percent": "5", "productIds": [p, "garbage"]},
            "INVALID",
            ["input", "productIds", "1"],
        ),
        (
            "admin",
            lambda p: {"percent": "5", "skuPrefix": "x" * 65},
            "INVALID",
            ["input", "skuPrefix"],
        ),
    ],
    ids=[
        "anonymous",
        "not-admin",
        "neither",
        "both",
        "percent-minus-100",
        "percent-over-1000",
        "percent-3-decimals",
        "101-ids",
        "malformed-id",
        "long-prefix",
    ],
)
async def test_adjust_prices_refusals_change_nothing(stack, token, input, code, field):
    (product,) = await make_products(stack, ("10.00", 1))
    before = await database_snapshot(stack)

    body = await stack.gql(
        ADJUST_PRICES,
        {"input": input(gid("Product", product))},
        token=stack.world.tokens.get(token or ""),
    )

    payload = body["data"]["adjustPrices"]
    assert payload["affectedCount"] == 0
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]
    assert await database_snapshot(stack) == before


@pytest.mark.parametrize("percent", ["NaN", 5, 5.5, "5e0", "5.", " 5"])
async def test_a_percent_that_is_not_a_decimal_string_is_bad_user_input(stack, percent):
    # Given a product and the database as it is
    (product,) = await make_products(stack, ("10.00", 1))
    before = await database_snapshot(stack)
    # When an admin adjusts prices by a percent that is no Decimal string
    body = await stack.gql(
        ADJUST_PRICES,
        {"input": {"percent": percent, "productIds": [gid("Product", product)]}},
        token=stack.world.tokens["admin"],
        expect_errors=True,
    )
    # Then the variable is refused, coded, and nothing changed
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert await database_snapshot(stack) == before
