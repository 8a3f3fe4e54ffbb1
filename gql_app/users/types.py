from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from gql_app.commerce.loaders import OrderPageByCustomerIdLoader, OrderStatsByCustomerIdLoader
from gql_app.commerce.types import ORDER_ORDER, Order, OrderFilter, OrderStats
from gql_app.content.loaders import (
    CommentPageByAuthorIdLoader,
    PostPageByAuthorIdLoader,
    author_post_total,
)
from gql_app.content.types import COMMENT_ORDER, POST_ORDER, Comment, Post, PostFilter
from gql_app.engine.columns import rows_of
from gql_app.engine.fields import computed, loaded, private_to
from gql_app.money.loaders import AccountsByOwnerIdLoader
from gql_app.money.types import Account
from gql_app.relay.connection import Connection, OrderDirection, Sorting, connection
from gql_app.relay.node import Node, global_id
from gql_app.users import models
from gql_app.users.loaders import ProfileByUserIdLoader, UserCriteria

private = private_to("id")
"""The user's private fields: the user themself and admins; FORBIDDEN for others."""


@rows_of(models.Profile)
@strawberry.type
class Profile:
    display_name: str
    bio: str | None


@rows_of(models.User)
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
        columns=("email", "id"),
        description="Visible to the user themself and to admins; "
        "null for everyone else (no error).",
    )
    profile: Profile | None = loaded(ProfileByUserIdLoader, "id", Profile | None)
    post_count: int = computed(
        lambda user, info: user.published_post_count,
        int,
        columns=("published_post_count",),
        description="Number of published posts.",
    )

    posts: Connection[Post] = connection(
        PostPageByAuthorIdLoader,
        POST_ORDER,
        filter=PostFilter,
        total=author_post_total,
        description="Published posts; the author themself and admins also see drafts.",
    )
    comments: Connection[Comment] = connection(
        CommentPageByAuthorIdLoader, COMMENT_ORDER, order_by=False
    )
    orders: Connection[Order] | None = connection(
        OrderPageByCustomerIdLoader,
        ORDER_ORDER,
        filter=OrderFilter,
        guard=private,
        description="Private: the user themself and admins. Others get null and a FORBIDDEN error.",
    )
    order_stats: OrderStats | None = loaded(
        OrderStatsByCustomerIdLoader,
        "id",
        OrderStats | None,
        guard=private,
        description="Private, as orders. Aggregated over non-cancelled orders.",
    )
    accounts: list[Account] | None = loaded(
        AccountsByOwnerIdLoader,
        "id",
        list[Account] | None,
        guard=private,
        description="Private, as orders.",
    )


@strawberry.enum
class UserOrderField(enum.Enum):
    CREATED_AT = "created_at"
    USERNAME = "username"
    LAST_LOGIN_AT = "last_login_at"


USER_ORDER = Sorting(UserOrderField, models.User, OrderDirection.ASC)


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
