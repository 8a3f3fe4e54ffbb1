from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, func, select
from sqlalchemy.sql.elements import BindParameter

from gql_app.commerce.models import Order, OrderItem, OrderStatus, Product
from gql_app.data.context import Context
from gql_app.data.loaders import (
    AggregateLoader,
    ByColumnLoader,
    ByIdLoader,
    CountLoader,
    ListByColumnLoader,
    PageLoader,
    RootPage,
)
from gql_app.data.pages import contains, in_range, starts_with
from gql_app.errors import BadUserInput

ZERO = Decimal("0.00")
MAX_PRICE = Decimal(10) ** 10  # numeric(12, 2)
LINE_TOTAL = OrderItem.quantity * OrderItem.unit_price
NOT_CANCELLED = Order.status != OrderStatus.CANCELLED


@dataclass(frozen=True)
class ProductCriteria:
    search: str | None = None
    sku_prefix: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None

    def conditions(self, ctx: Context) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        for name, bound in (("minPrice", self.min_price), ("maxPrice", self.max_price)):
            if bound is not None and (not bound.is_finite() or abs(bound) >= MAX_PRICE):
                raise BadUserInput(f"`{name}` must be a finite price below {MAX_PRICE}.")
        if self.search:
            conds.append(contains(Product.name, self.search) | contains(Product.sku, self.search))
        if self.sku_prefix:
            conds.append(starts_with(Product.sku, self.sku_prefix))
        if self.min_price is not None:
            conds.append(Product.price >= self.min_price)
        if self.max_price is not None:
            conds.append(Product.price <= self.max_price)
        if self.in_stock is True:
            conds.append(Product.stock > 0)
        elif self.in_stock is False:
            conds.append(Product.stock == 0)
        return conds


@dataclass(frozen=True)
class OrderCriteria:
    statuses: tuple[OrderStatus, ...] | None = None
    placed_after: datetime | None = None
    placed_before: datetime | None = None

    def conditions(self, ctx: Context) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.statuses is not None:
            conds.append(Order.status.in_(self.statuses))
        return conds + in_range(Order.created_at, self.placed_after, self.placed_before)


def visible_orders(ctx: Context) -> list[ColumnElement[bool]]:
    """An order is visible to its customer and to admins."""
    viewer = ctx.require_viewer()
    return [] if viewer.is_admin else [Order.customer_id == viewer.id]


class ProductByIdLoader(ByIdLoader[Product], model=Product): ...


class ProductBySkuLoader(ByColumnLoader[Product], column=Product.sku): ...


class OrderByIdLoader(ByIdLoader[Order], model=Order): ...


class OrderItemsByOrderIdLoader(ListByColumnLoader[OrderItem], column=OrderItem.order_id): ...


class ItemCountByOrderIdLoader(CountLoader, column=OrderItem.order_id): ...


class OrderTotalByOrderIdLoader(AggregateLoader[Decimal]):
    def aggregate(self, keys: BindParameter[Any]) -> Select[Any]:
        return (
            select(OrderItem.order_id, func.sum(LINE_TOTAL))
            .where(OrderItem.order_id == any_(keys))
            .group_by(OrderItem.order_id)
        )

    def value(self, row: Any) -> Decimal:
        return row[1]  # type: ignore[no-any-return]

    def empty(self, key: int) -> Decimal:
        return ZERO


class UnitsSoldByProductIdLoader(AggregateLoader[int]):
    def aggregate(self, keys: BindParameter[Any]) -> Select[Any]:
        return (
            select(OrderItem.product_id, func.sum(OrderItem.quantity))
            .join(Order, Order.id == OrderItem.order_id)
            .where(OrderItem.product_id == any_(keys), NOT_CANCELLED)
            .group_by(OrderItem.product_id)
        )

    def value(self, row: Any) -> int:
        return int(row[1])

    def empty(self, key: int) -> int:
        return 0


@dataclass(frozen=True)
class OrderStatsRow:
    order_count: int
    total_spent: Decimal
    average_order_value: Decimal | None
    last_order_at: datetime | None


class OrderStatsByCustomerIdLoader(AggregateLoader[OrderStatsRow]):
    def aggregate(self, keys: BindParameter[Any]) -> Select[Any]:
        per_order = (
            select(
                Order.customer_id,
                Order.created_at,
                func.coalesce(func.sum(LINE_TOTAL), 0).label("total"),
            )
            .outerjoin(OrderItem, OrderItem.order_id == Order.id)
            .where(Order.customer_id == any_(keys), NOT_CANCELLED)
            .group_by(Order.id)
            .subquery()
        )
        return select(
            per_order.c.customer_id,
            func.count(),
            func.sum(per_order.c.total),
            func.round(func.avg(per_order.c.total), 2),
            func.max(per_order.c.created_at),
        ).group_by(per_order.c.customer_id)

    def value(self, row: Any) -> OrderStatsRow:
        return OrderStatsRow(row[1], row[2], row[3], row[4])

    def empty(self, key: int) -> OrderStatsRow:
        return OrderStatsRow(0, ZERO, None, None)


class OrderPageByCustomerIdLoader(PageLoader[Order], column=Order.customer_id): ...


class ProductPage(RootPage[Product], model=Product): ...


class OrderPage(RootPage[Order], model=Order):
    """The viewer's orders (everyone's for admins)."""

    def conditions(self, criteria: OrderCriteria) -> list[ColumnElement[bool]]:
        return [*visible_orders(self.ctx), *criteria.conditions(self.ctx)]
