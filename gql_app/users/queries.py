from __future__ import annotations

import strawberry

from gql_app.context import Info
from gql_app.errors import BadUserInput
from gql_app.ids import decode_id_of
from gql_app.loaders import root_page
from gql_app.node import node_type
from gql_app.pagination import Connection, OrderDirection, Sorting, SortKey
from gql_app.users.loaders import UserByIdLoader, UserByUsernameLoader, UserCriteria
from gql_app.users.models import User as UserModel
from gql_app.users.types import User, UserFilter, UserOrder

USER_SORTING = Sorting(
    {
        "CREATED_AT": SortKey("CREATED_AT", UserModel.created_at),
        "USERNAME": SortKey("USERNAME", UserModel.username),
        "LAST_LOGIN_AT": SortKey("LAST_LOGIN_AT", UserModel.last_login_at, nullable=True),
    },
    UserModel.id,
    ("CREATED_AT", OrderDirection.ASC),
)


@node_type("User")
async def fetch_user(info: Info, pk: int) -> UserModel | None:
    return await info.context.loaders.get(UserByIdLoader, info).load(pk)


@strawberry.type
class UserQuery:
    @strawberry.field(description="The signed-in user, or null.")
    def viewer(self, info: Info) -> User | None:
        return info.context.viewer  # type: ignore[return-value]

    @strawberry.field(description="Exactly one of id or username.")
    async def user(
        self, info: Info, id: strawberry.ID | None = None, username: str | None = None
    ) -> User | None:
        if (id is None) == (username is None):
            raise BadUserInput("Pass exactly one of `id` or `username`.")
        if id is not None:
            return await fetch_user(info, decode_id_of(id, "User"))  # type: ignore[return-value]
        return await info.context.loaders.get(UserByUsernameLoader, info).load(username)  # type: ignore[return-value]

    @strawberry.field
    async def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: UserFilter | None = None,
        order_by: UserOrder | None = None,
    ) -> Connection[User]:
        args = USER_SORTING.page_args(info, "Query.users", first, after, last, before, order_by)
        criteria = filter.criteria() if filter is not None else UserCriteria()
        return await root_page(
            info, UserModel, args, shape=criteria, where=lambda: criteria.conditions(info.context)
        )
