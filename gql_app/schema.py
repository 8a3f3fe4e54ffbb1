"""The schema: Query, Mutation and Subscription merged from every domain."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from gql_app.commerce import queries as commerce_queries
from gql_app.commerce.mutations import CommerceMutation
from gql_app.commerce.subscriptions import CommerceSubscription
from gql_app.commerce.types import Order, Product
from gql_app.content import queries as content_queries
from gql_app.content.mutations import ContentMutation
from gql_app.content.subscriptions import ContentSubscription
from gql_app.content.types import Comment, Post, Tag
from gql_app.engine import fields
from gql_app.engine.extensions import ObserveOperation, Transaction
from gql_app.engine.limits import QueryLimits
from gql_app.engine.planned_executor import PlannedExecutor
from gql_app.engine.scalars import DATETIME, DECIMAL
from gql_app.money import queries as money_queries
from gql_app.money.mutations import MoneyMutation
from gql_app.money.subscriptions import MoneySubscription
from gql_app.money.types import Account, Transfer
from gql_app.relay import node
from gql_app.relay.node import NodeQuery
from gql_app.users import queries as user_queries
from gql_app.users.mutations import UserMutation
from gql_app.users.types import User

_ = money_queries  # registers the Account and Transfer node fetchers


@strawberry.type
class Query(
    NodeQuery,
    user_queries.UserQuery,
    content_queries.ContentQuery,
    commerce_queries.CommerceQuery,
):
    pass


@strawberry.type
class Mutation(UserMutation, ContentMutation, CommerceMutation, MoneyMutation):
    pass


@strawberry.type(
    description="Live events (graphql-transport-ws over WebSocket at /graphql). An event "
    "is delivered after the transaction that caused it commits, never for one that "
    "rolled back, once per subscription, in commit order."
)
class Subscription(ContentSubscription, CommerceSubscription, MoneySubscription):
    pass


class Schema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Strawberry logs every error with its traceback here; ``errors.format_error``
        already logs the unexpected ones once, masked, with the request id."""


def build_schema(*, planned: bool = True) -> Schema:
    """The schema. ``planned=False`` leaves out the planned executor and the direct
    resolvers: Strawberry's and graphql-core's own machinery, the reference the
    differential tests compare the app with."""
    built = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[User, Post, Tag, Comment, Product, Order, Account, Transfer],
        # Factories: extensions are created per request; the parse and validation
        # LRU caches behind them live at module level and are shared.
        extensions=[
            QueryLimits,
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            Transaction,
            ObserveOperation,
        ],
        config=StrawberryConfig(
            auto_camel_case=True, scalar_map={Decimal: DECIMAL, datetime: DATETIME}
        ),
        execution_context_class=PlannedExecutor if planned else None,
    )
    if planned:
        fields.install(built)
    node.install(built)
    return built


schema = build_schema()
