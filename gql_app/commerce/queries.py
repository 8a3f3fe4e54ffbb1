from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from sqlalchemy import Date, cast, desc, func, select

from gql_app.commerce import models
from gql_app.commerce.loaders import (
    LINE_TOTAL,
    NOT_CANCELLED,
    ZERO,
    OrderByIdLoader,
    OrderPage,
    ProductByIdLoader,
    ProductBySkuLoader,
    ProductPage,
)
from gql_app.commerce.types import (
    ORDER_ORDER,
    PRODUCT_ORDER,
    Order,
    OrderFilter,
    Product,
    ProductFilter,
    ProductSales,
    SalesDay,
)
from gql_app.data.context import Info
from gql_app.engine.fields import viewer_required
from gql_app.errors import BadUserInput, Forbidden
from gql_app.relay.connection import Connection, connection
from gql_app.relay.node import by_id_or_key, loaded_node

fetch_product = loaded_node("Product", ProductByIdLoader)
fetch_order = loaded_node(
    "Order", OrderByIdLoader, lambda ctx, order: ctx.can_see_private(order.customer_id)
)


@strawberry.type
class SalesReport:
    start: strawberry.Private[datetime]
    end: strawberry.Private[datetime]
    _totals: strawberry.Private[asyncio.Task[Any] | None] = None

    def _in_range(self) -> list[Any]:
        return [
            NOT_CANCELLED,
            models.Order.created_at >= self.start,
            models.Order.created_at < self.end,
        ]

    async def totals(self, info: Info) -> Any:
        """orderCount, revenue and unitsSold: one statement, shared by the three fields."""
        if self._totals is None:
            per_order = (
                select(
                    func.coalesce(func.sum(LINE_TOTAL), 0).label("revenue"),
                    func.coalesce(func.sum(models.OrderItem.quantity), 0).label("units"),
                )
                .select_from(models.Order)
                .outerjoin(models.OrderItem, models.OrderItem.order_id == models.Order.id)
                .where(*self._in_range())
                .group_by(models.Order.id)
                .subquery()
            )
            stmt = select(
                func.count(),
                func.coalesce(func.sum(per_order.c.revenue), 0),
                func.coalesce(func.sum(per_order.c.units), 0),
            )
            db = info.context.db

            async def load() -> Any:
                return (await db.execute(stmt)).one()

            self._totals = asyncio.ensure_future(load())
        return await self._totals

    @strawberry.field
    async def order_count(self, info: Info) -> int:
        return int((await self.totals(info))[0])

    @strawberry.field
    async def revenue(self, info: Info) -> Decimal:
        return Decimal((await self.totals(info))[1]).quantize(ZERO)

    @strawberry.field
    async def units_sold(self, info: Info) -> int:
        return int((await self.totals(info))[2])

    @strawberry.field(
        description="One row per calendar day (UTC) that has at least one "
        "non-cancelled order, ascending."
    )
    async def days(self, info: Info) -> list[SalesDay]:
        day = cast(func.timezone("UTC", models.Order.created_at), Date).label("day")
        per_order = (
            select(day, func.coalesce(func.sum(LINE_TOTAL), 0).label("revenue"))
            .select_from(models.Order)
            .outerjoin(models.OrderItem, models.OrderItem.order_id == models.Order.id)
            .where(*self._in_range())
            .group_by(models.Order.id)
            .subquery()
        )
        stmt = (
            select(per_order.c.day, func.count(), func.sum(per_order.c.revenue))
            .group_by(per_order.c.day)
            .order_by(per_order.c.day)
        )
        rows = await info.context.db.rows(stmt)
        return [
            SalesDay(day=r[0], order_count=r[1], revenue=Decimal(r[2]).quantize(ZERO)) for r in rows
        ]

    @strawberry.field
    async def top_products(self, info: Info, limit: int | None = 10) -> list[ProductSales]:
        limit = 10 if limit is None else limit
        if not 0 <= limit <= info.context.settings.max_page_size:
            raise BadUserInput(
                f"`limit` must be between 0 and {info.context.settings.max_page_size}."
            )
        units = func.sum(models.OrderItem.quantity).label("units")
        revenue = func.sum(LINE_TOTAL).label("revenue")
        stmt = (
            select(models.OrderItem.product_id, units, revenue)
            .join(models.Order, models.Order.id == models.OrderItem.order_id)
            .where(*self._in_range())
            .group_by(models.OrderItem.product_id)
            .order_by(desc(units), desc(revenue), models.OrderItem.product_id)
            .limit(limit)
        )
        rows = await info.context.db.rows(stmt)
        return [ProductSales(product_id=r[0], units_sold=int(r[1]), revenue=r[2]) for r in rows]


@strawberry.type
class CommerceQuery:
    @strawberry.field(description="Exactly one of id or sku.")
    async def product(
        self, info: Info, id: strawberry.ID | None = None, sku: str | None = None
    ) -> Product | None:
        return await by_id_or_key(info, "Product", id, "sku", sku, ProductBySkuLoader)

    products: Connection[Product] = connection(ProductPage, PRODUCT_ORDER, filter=ProductFilter)
    orders: Connection[Order] = connection(
        OrderPage,
        ORDER_ORDER,
        filter=OrderFilter,
        guard=viewer_required,
        description="The viewer's orders; admins see everyone's. Anonymous: UNAUTHENTICATED error.",
    )

    @strawberry.field(description="Admins only. Non-cancelled orders with from <= createdAt < to.")
    def sales_report(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
    ) -> SalesReport:
        if not info.context.require_viewer().is_admin:
            raise Forbidden("Only admins may read the sales report.")
        if from_.tzinfo is None or to.tzinfo is None:
            raise BadUserInput("`from` and `to` need a UTC offset.")
        return SalesReport(start=from_, end=to)
