from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry

from gql_app.commerce import models
from gql_app.commerce.loaders import (
    ItemCountByOrderIdLoader,
    OrderCriteria,
    OrderItemsByOrderIdLoader,
    OrderStatsRow,
    OrderTotalByOrderIdLoader,
    ProductByIdLoader,
    ProductCriteria,
    UnitsSoldByProductIdLoader,
)
from gql_app.data.context import Info
from gql_app.engine.columns import rows_of
from gql_app.engine.fields import computed, loaded
from gql_app.relay.connection import OrderDirection, Sorting
from gql_app.relay.node import Node, global_id
from gql_app.users.lazy import UserType
from gql_app.users.loaders import UserByIdLoader

OrderStatus = strawberry.enum(models.OrderStatus, name="OrderStatus")


@rows_of(models.Product)
@strawberry.type
class Product(Node):
    id: strawberry.ID = global_id("Product")
    sku: str
    name: str
    price: Decimal
    stock: int
    created_at: datetime

    units_sold: int = loaded(
        UnitsSoldByProductIdLoader, "id", int, description="Units sold over non-cancelled orders."
    )


@rows_of(models.OrderItem)
@strawberry.type
class OrderItem:
    quantity: int
    unit_price: Decimal = strawberry.field(description="Price at the time the order was placed.")

    product: Product = loaded(ProductByIdLoader, "product_id", Product)

    subtotal: Decimal = computed(
        lambda root, info: root.quantity * root.unit_price,
        Decimal,
        columns=("quantity", "unit_price"),
    )


@rows_of(models.Order, always=("customer_id",))  # an Order node is its customer's
@strawberry.type
class Order(Node):
    id: strawberry.ID = global_id("Order")
    status: OrderStatus  # type: ignore[valid-type]
    created_at: datetime

    customer: UserType = loaded(UserByIdLoader, "customer_id", UserType)

    items: list[OrderItem] = loaded(OrderItemsByOrderIdLoader, "id", list[OrderItem])

    item_count: int = loaded(
        ItemCountByOrderIdLoader, "id", int, description="Number of items (lines) in the order."
    )

    total: Decimal = loaded(
        OrderTotalByOrderIdLoader,
        "id",
        Decimal,
        description="Sum of quantity * unitPrice over the items.",
    )


@strawberry.type
class OrderStats:
    order_count: int
    total_spent: Decimal
    average_order_value: Decimal | None
    last_order_at: datetime | None

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, OrderStatsRow)


@strawberry.input
class ProductFilter:
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of name or sku."
    )
    sku_prefix: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None

    def criteria(self) -> ProductCriteria:
        return ProductCriteria(
            self.search, self.sku_prefix, self.min_price, self.max_price, self.in_stock
        )


@strawberry.enum
class ProductOrderField(enum.Enum):
    NAME = "name"
    PRICE = "price"
    CREATED_AT = "created_at"


PRODUCT_ORDER = Sorting(ProductOrderField, models.Product, OrderDirection.ASC)


@strawberry.input
class OrderFilter:
    status: list[OrderStatus] | None = None  # type: ignore[valid-type]
    placed_after: datetime | None = None
    placed_before: datetime | None = None

    def criteria(self) -> OrderCriteria:
        return OrderCriteria(
            statuses=tuple(self.status) if self.status is not None else None,
            placed_after=self.placed_after,
            placed_before=self.placed_before,
        )


@strawberry.enum
class OrderOrderField(enum.Enum):
    CREATED_AT = "created_at"


ORDER_ORDER = Sorting(OrderOrderField, models.Order, OrderDirection.DESC)


@strawberry.type
class SalesDay:
    day: date
    order_count: int
    revenue: Decimal


@strawberry.type
class ProductSales:
    units_sold: int
    revenue: Decimal
    product_id: strawberry.Private[int]

    @strawberry.field
    async def product(self, info: Info) -> Product:
        return await info.context.loaders.get(ProductByIdLoader, info).load(self.product_id)  # type: ignore[return-value]
