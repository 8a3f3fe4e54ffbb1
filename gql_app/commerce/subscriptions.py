"""Live commerce: orders as they change, products whose price or stock changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import strawberry

from gql_app.commerce.queries import fetch_order, fetch_product
from gql_app.commerce.types import Order, Product
from gql_app.data.context import Info
from gql_app.data.events import Topic
from gql_app.engine.live import Feed
from gql_app.errors import BadUserInput
from gql_app.relay.ids import decode_id_of

ORDERS = Feed(Topic.ORDER, fetch_order, lambda order: (order.customer_id,))
PRODUCTS = Feed(Topic.PRODUCT, fetch_product, lambda product: (product.id,))


@strawberry.type
class CommerceSubscription:
    @strawberry.subscription(
        description="The subscriber's orders when placed, cancelled or given a new status; "
        "admins: every order. Requires sign-in."
    )
    async def order_updated(self, info: Info) -> AsyncIterator[Order]:
        viewer = info.context.require_viewer()
        return ORDERS.watch(None if viewer.is_admin else [viewer.id])

    @strawberry.subscription(
        description="Products whose price or stock changed (orders, cancellations, "
        "adjustPrices); only these ids when given (at most 100)."
    )
    async def product_changed(
        self, info: Info, ids: list[strawberry.ID] | None = None
    ) -> AsyncIterator[Product]:
        if ids is None:
            return PRODUCTS.watch()
        limit = info.context.settings.max_ids
        if not 0 < len(ids) <= limit:
            raise BadUserInput(
                f"Pass 1 to {limit} ids in `ids`, or leave it out for every product."
            )
        return PRODUCTS.watch(decode_id_of(id, "Product", "ids") for id in ids)
