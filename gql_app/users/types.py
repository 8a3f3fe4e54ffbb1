from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gql_app.content.loaders import (
    COMMENT_SORTING,
    POST_SORTING,
    CommentPageByAuthorIdLoader,
    PostPageByAuthorIdLoader,
    PublishedPostCountByAuthorIdLoader,
)
from gql_app.content.types import (
    Comment,
    Post,
    PostFilter,
    PostOrder,
    post_criteria,
)
from gql_app.context import Info
from gql_app.fastpath import computed, loaded
from gql_app.loaders import load_page
from gql_app.node import Node, global_id
from gql_app.pagination import Connection, OrderDirection
from gql_app.users import models
from gql_app.users.loaders import ProfileByUserIdLoader, UserCriteria

if TYPE_CHECKING:
    from gql_app.commerce.types import Order, OrderFilter, OrderOrder, OrderStats
    from gql_app.money.types import Account

OrderType = Annotated["Order", strawberry.lazy("gql_app.commerce.types")]
OrderFilterType = Annotated["OrderFilter", strawberry.lazy("gql_app.commerce.types")]
OrderOrderType = Annotated["OrderOrder", strawberry.lazy("gql_app.commerce.types")]
OrderStatsType = Annotated["OrderStats", strawberry.lazy("gql_app.commerce.types")]
AccountType = Annotated["Account", strawberry.lazy("gql_app.money.types")]


@strawberry.type
class Profile:
    display_name: str
    bio: str | None


@strawberry.type
class User(Node):
    id: strawberry.ID = global_id("User")
    username: str
    is_active: bool
    is_admin: bool
    age: int | None
    created_at: datetime
    last_login_at: datetime | None

    email: str | None = computed(
        lambda root, info: root.email if info.context.can_see_private(root.id) else None,
        str | None,
        description="Visible to the user themself and to admins; "
        "null for everyone else (no error).",
    )
    profile: Profile | None = loaded(ProfileByUserIdLoader, "id", Profile | None)
    post_count: int = loaded(
        PublishedPostCountByAuthorIdLoader, "id", int, description="Number of published posts."
    )

    @strawberry.field(
        description="Published posts; the author themself and admins also see drafts."
    )
    def posts(
        self,
        root: strawberry.Parent[models.User],
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: PostFilter | None = None,
        order_by: PostOrder | None = None,
    ) -> Connection[Post]:
        args = POST_SORTING.page_args(info, "User.posts", first, after, last, before, order_by)
        return load_page(info, PostPageByAuthorIdLoader, root.id, args, post_criteria(filter))

    @strawberry.field
    def comments(
        self,
        root: strawberry.Parent[models.User],
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Comment]:
        args = COMMENT_SORTING.page_args(info, "User.comments", first, after, last, before)
        return load_page(info, CommentPageByAuthorIdLoader, root.id, args)

    @strawberry.field(
        description="Private: the user themself and admins. Others get null and a FORBIDDEN error."
    )
    def orders(
        self,
        root: strawberry.Parent[models.User],
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: OrderFilterType | None = None,
        order_by: OrderOrderType | None = None,
    ) -> Connection[OrderType] | None:
        from gql_app.commerce.types import customer_orders

        info.context.require_private(root.id)
        return customer_orders(info, root.id, first, after, last, before, filter, order_by)

    @strawberry.field(description="Private, as orders. Aggregated over non-cancelled orders.")
    async def order_stats(
        self, root: strawberry.Parent[models.User], info: Info
    ) -> OrderStatsType | None:
        from gql_app.commerce.loaders import OrderStatsByCustomerIdLoader

        info.context.require_private(root.id)
        return await info.context.loaders.get(OrderStatsByCustomerIdLoader, info).load(root.id)  # type: ignore[return-value]

    @strawberry.field(description="Private, as orders.")
    async def accounts(
        self, root: strawberry.Parent[models.User], info: Info
    ) -> list[AccountType] | None:
        from gql_app.money.loaders import AccountsByOwnerIdLoader

        info.context.require_private(root.id)
        return await info.context.loaders.get(AccountsByOwnerIdLoader, info).load(root.id)  # type: ignore[return-value]


@strawberry.enum
class UserOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    USERNAME = "USERNAME"
    LAST_LOGIN_AT = "LAST_LOGIN_AT"


@strawberry.input
class UserOrder:
    field: UserOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class UserFilter:
    search: str | None = strawberry.field(
        default=None,
        description="Case-insensitive substring of username, email or display name "
        "(email is matched for admins only).",
    )
    is_active: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def criteria(self) -> UserCriteria:
        return UserCriteria(self.search, self.is_active, self.created_after, self.created_before)
