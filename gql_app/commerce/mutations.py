"""Orders and prices: placeOrder, cancelOrder, and the bulk setOrderStatus / adjustPrices.

Stock never goes below zero under any concurrency: every path that touches
several products locks them in id order (placeOrder) or changes them in one
conditional statement, and the CHECK (stock >= 0) constraint stands behind both.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import strawberry
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Numeric,
    Update,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from gql_app.commerce.loaders import visible_orders
from gql_app.commerce.models import Order, OrderItem, OrderStatus, Product
from gql_app.commerce.types import Order as OrderType
from gql_app.commerce.types import OrderStatus as OrderStatusType
from gql_app.data.context import Info
from gql_app.data.db import RequestDB, id_array
from gql_app.data.events import Topic
from gql_app.data.pages import starts_with
from gql_app.engine.mutations import (
    BulkUpdatePayload,
    Payload,
    admin,
    atomic_mutation,
    collect,
    fail,
    input_error,
    raise_collected,
    signed_in,
)
from gql_app.errors import UserError, UserErrorCode, UserFailure
from gql_app.relay.ids import input_id

MAX_LINES = 50
MAX_QUANTITY = 1000
MAX_IDS = 100
MAX_PERCENT = Decimal("1000")
MIN_PERCENT = Decimal("-100")  # exclusive
NUMERIC_OUT_OF_RANGE = "22003"

# Where each target status may be reached from (PENDING -> PAID -> SHIPPED, or CANCELLED).
ALLOWED_FROM: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.PENDING: (),
    OrderStatus.PAID: (OrderStatus.PENDING,),
    OrderStatus.SHIPPED: (OrderStatus.PAID,),
    OrderStatus.CANCELLED: (OrderStatus.PENDING, OrderStatus.PAID),
}
CANCELLABLE = ALLOWED_FROM[OrderStatus.CANCELLED]


@strawberry.input
class OrderLineInput:
    product_id: strawberry.ID
    quantity: int


@strawberry.input
class PlaceOrderInput:
    lines: list[OrderLineInput]


@strawberry.type
class PlaceOrderPayload(Payload):
    order: OrderType | None = None


@strawberry.input
class CancelOrderInput:
    id: strawberry.ID


@strawberry.type
class CancelOrderPayload(Payload):
    order: OrderType | None = None


@strawberry.input
class SetOrderStatusInput:
    ids: list[strawberry.ID]
    status: OrderStatusType  # type: ignore[valid-type]


@strawberry.input
class AdjustPricesInput:
    percent: Decimal = strawberry.field(
        description='Percentage change, e.g. "10" raises by 10%, "-25" lowers by 25%. '
        "Must be > -100."
    )
    product_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Exactly one of productIds or skuPrefix."
    )
    sku_prefix: str | None = None


def _ids(field: str, values: list[strawberry.ID], type_name: str) -> list[int]:
    """At most MAX_IDS global IDs of ``type_name``, decoded (each bad one is an error)."""
    if len(values) > MAX_IDS:
        raise fail(field, f"`{field}` takes at most {MAX_IDS} IDs.")
    errors: list[UserError] = []
    pks = [
        collect(errors, input_id, f"{field}.{i}", value, type_name)
        for i, value in enumerate(values)
    ]
    raise_collected(errors)
    return cast(list[int], pks)


# ---------------------------------------------------------------- placeOrder


def _order_lines(input: PlaceOrderInput) -> list[tuple[int, int]]:
    """(product id, quantity) per line, in input order; every bad line is reported."""
    if not 1 <= len(input.lines) <= MAX_LINES:
        raise fail("lines", f"An order has 1 to {MAX_LINES} lines.")
    errors: list[UserError] = []
    lines: list[tuple[int, int]] = []
    seen: set[int] = set()
    for index, line in enumerate(input.lines):
        field = f"lines.{index}"
        product_id = collect(errors, input_id, f"{field}.productId", line.product_id, "Product")
        if product_id is not None:
            if product_id in seen:
                errors.append(
                    input_error(f"{field}.productId", "Each product may appear in one line only.")
                )
            seen.add(product_id)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            errors.append(
                input_error(f"{field}.quantity", f"`quantity` must be 1 to {MAX_QUANTITY}.")
            )
        lines.append((product_id or 0, line.quantity))
    raise_collected(errors)
    return lines


async def _lock_products(db: RequestDB, lines: list[tuple[int, int]]) -> dict[int, Any]:
    """The order's products by id (sku, price, stock), locked; NOT_FOUND for unknown ones.

    Always locked in id order: concurrent orders sharing products queue up
    instead of deadlocking.
    """
    locked = await db.execute(
        select(Product.id, Product.sku, Product.price, Product.stock)
        .where(Product.id == any_(id_array([product_id for product_id, _ in lines])))
        .order_by(Product.id)
        .with_for_update()
    )
    found = {row.id: row for row in locked.all()}
    raise_collected(
        [
            input_error(f"lines.{i}.productId", "No such product.", UserErrorCode.NOT_FOUND)
            for i, (product_id, _) in enumerate(lines)
            if product_id not in found
        ]
    )
    return found


async def _reserve_stock(
    db: RequestDB, lines: list[tuple[int, int]], products: dict[int, Any]
) -> None:
    """Take every line's quantity off its product's stock; OUT_OF_STOCK for the lines
    that lack it (the mutation's savepoint then undoes the lines reserved).

    One conditional, set-based decrement: a line lacking stock matches no row.
    """
    lines_table = (
        func.unnest(
            bindparam("line_product_ids", [p for p, _ in lines], type_=ARRAY(BigInteger)),
            bindparam("line_quantities", [q for _, q in lines], type_=ARRAY(Integer)),
        )
        .table_valued("product_id", "quantity")
        .render_derived(name="line")
    )
    reserved = await db.execute(
        update(Product)
        .where(Product.id == lines_table.c.product_id, Product.stock >= lines_table.c.quantity)
        .values(stock=Product.stock - lines_table.c.quantity)
        .returning(Product.id)
        .execution_options(synchronize_session=False)
    )
    reserved_ids = set(reserved.scalars())
    raise_collected(
        [
            input_error(
                f"lines.{i}.quantity",
                f"Only {products[product_id].stock} of {products[product_id].sku} in stock.",
                UserErrorCode.OUT_OF_STOCK,
            )
            for i, (product_id, _) in enumerate(lines)
            if product_id not in reserved_ids
        ]
    )


async def _insert_order(
    db: RequestDB, customer_id: int, lines: list[tuple[int, int]], products: dict[int, Any]
) -> Order:
    """The PENDING order and its items, each at its product's current price."""
    order = await db.scalar(
        insert(Order).values(customer_id=customer_id, status=OrderStatus.PENDING).returning(Order)
    )
    items = [
        {
            "order_id": order.id,
            "product_id": product_id,
            "quantity": quantity,
            "unit_price": products[product_id].price,
        }
        for product_id, quantity in lines
    ]
    await db.execute(insert(OrderItem).values(items))
    return order  # type: ignore[no-any-return]


async def place_order(info: Info, input: PlaceOrderInput) -> PlaceOrderPayload:
    ctx = info.context
    viewer = signed_in(ctx)
    lines = _order_lines(input)
    products = await _lock_products(ctx.db, lines)
    await _reserve_stock(ctx.db, lines, products)
    ctx.events.add(Topic.PRODUCT, [product_id for product_id, _ in lines])
    order = await _insert_order(ctx.db, viewer.id, lines, products)
    ctx.events.add(Topic.ORDER, [order.id])
    return PlaceOrderPayload(order=order)  # type: ignore[arg-type]


# ---------------------------------------------------------------- cancelOrder


def _restock(of_orders: ColumnElement[bool]) -> Update:
    """Puts the items of the orders ``of_orders`` selects back in stock."""
    returned = (
        select(OrderItem.product_id, func.sum(OrderItem.quantity).label("quantity"))
        .where(of_orders)
        .group_by(OrderItem.product_id)
        .subquery("returned")
    )
    return (
        update(Product)
        .where(Product.id == returned.c.product_id)
        .values(stock=Product.stock + returned.c.quantity)
    )


async def cancel_order(info: Info, input: CancelOrderInput) -> CancelOrderPayload:
    ctx = info.context
    signed_in(ctx)
    order_id = input_id("id", input.id, "Order")
    db = ctx.db

    # The order row first: a concurrent cancel of the same order waits here,
    # then sees CANCELLED, so it can never restock twice.
    status = await db.scalar(
        select(Order.status).where(Order.id == order_id, *visible_orders(ctx)).with_for_update()
    )
    if status is None:
        raise fail("id", "No such order.", UserErrorCode.NOT_FOUND)
    if status not in CANCELLABLE:
        raise fail(
            "id", f"A {status.value} order cannot be cancelled.", UserErrorCode.INVALID_STATE
        )

    items = select(OrderItem.product_id).where(OrderItem.order_id == order_id)
    await db.execute(  # products in id order, as placeOrder locks them
        select(Product.id).where(Product.id.in_(items)).order_by(Product.id).with_for_update()
    )
    restocked = await db.execute(
        _restock(OrderItem.order_id == order_id)
        .returning(Product.id)
        .execution_options(synchronize_session=False)
    )
    ctx.events.add(Topic.PRODUCT, sorted(restocked.scalars()))
    order = await db.scalar(
        update(Order)
        .where(Order.id == order_id)
        .values(status=OrderStatus.CANCELLED)
        .returning(Order)
    )
    ctx.events.add(Topic.ORDER, [order_id])
    return CancelOrderPayload(order=order)


# ---------------------------------------------------------------- setOrderStatus


async def set_order_status(info: Info, input: SetOrderStatusInput) -> BulkUpdatePayload:
    admin(info.context)
    order_ids = _ids("ids", input.ids, "Order")
    target: OrderStatus = input.status
    from_states = ALLOWED_FROM[target]
    if not order_ids or not from_states:
        return BulkUpdatePayload(affected_count=0)

    changed = (
        update(Order)
        .where(Order.id == any_(id_array(order_ids)), Order.status.in_(from_states))
        .values(status=target)
        .returning(Order.id)
        .cte("changed")
    )
    ids = [select(func.array_agg(changed.c.id)).scalar_subquery()]
    if target is OrderStatus.CANCELLED:
        # Cancelling puts the items back in stock, in the same statement.
        restock = _restock(OrderItem.order_id.in_(select(changed.c.id)))
        restocked = restock.returning(Product.id).cte("restock")
        ids.append(select(func.array_agg(restocked.c.id)).scalar_subquery())
    changed_ids, *restocked_ids = (await info.context.db.execute(select(*ids))).one()
    events = info.context.events
    events.add(Topic.ORDER, sorted(changed_ids or ()))
    for product_ids in restocked_ids:
        events.add(Topic.PRODUCT, sorted(product_ids or ()))
    return BulkUpdatePayload(affected_count=len(changed_ids or ()))


# ---------------------------------------------------------------- adjustPrices


def _percent(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise fail("percent", "`percent` must be a finite number.")
    if not MIN_PERCENT < value <= MAX_PERCENT:
        raise fail("percent", f"`percent` must be greater than {MIN_PERCENT} and at most 1000.")
    if value != value.quantize(Decimal("0.01")):
        raise fail("percent", "`percent` takes at most 2 decimals.")
    return value.quantize(Decimal("0.01"))


def _sku_prefix(prefix: str) -> str:
    if "\x00" in prefix or len(prefix) > 64:
        raise fail("skuPrefix", "`skuPrefix` must be at most 64 characters, without NUL.")
    return prefix


async def adjust_prices(info: Info, input: AdjustPricesInput) -> BulkUpdatePayload:
    admin(info.context)
    if (input.product_ids is None) == (input.sku_prefix is None):
        raise UserFailure(
            UserError(
                field=["input"],
                message="Pass exactly one of `productIds` or `skuPrefix`.",
                code=UserErrorCode.INVALID,
            )
        )
    percent = _percent(input.percent)
    if input.product_ids is not None:
        matched = Product.id == any_(id_array(_ids("productIds", input.product_ids, "Product")))
    else:
        matched = starts_with(Product.sku, _sku_prefix(input.sku_prefix or ""))

    percent_param = bindparam("percent", percent, type_=Numeric(8, 2))
    try:
        result = await info.context.db.execute(
            update(Product)
            .where(matched)
            .values(price=func.round(Product.price * (100 + percent_param) / 100, 2))
            .returning(Product.id)
            .execution_options(synchronize_session=False)
        )
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != NUMERIC_OUT_OF_RANGE:
            raise
        raise fail("percent", "The new price of a matched product would be too large.") from None
    changed = sorted(result.scalars())
    info.context.events.add(Topic.PRODUCT, changed)
    return BulkUpdatePayload(affected_count=len(changed))


# ---------------------------------------------------------------- the fields


@strawberry.type
class CommerceMutation:
    place_order = atomic_mutation(place_order, PlaceOrderPayload)

    cancel_order = atomic_mutation(cancel_order, CancelOrderPayload)

    set_order_status = atomic_mutation(
        set_order_status,
        BulkUpdatePayload,
        description="Admins only. One set-based UPDATE of the given orders' status "
        "(PENDING -> PAID -> SHIPPED, or CANCELLED from PENDING or PAID, which restocks); "
        "orders in another state are left alone.",
    )

    adjust_prices = atomic_mutation(
        adjust_prices,
        BulkUpdatePayload,
        description="Admins only. One set-based UPDATE: "
        "price = round(price * (100 + percent) / 100, 2) for the matched products.",
    )
