from __future__ import annotations

import strawberry

from gql_app.data.context import Info
from gql_app.errors import BadUserInput
from gql_app.relay.connection import Connection, connection
from gql_app.relay.ids import decode_id_of
from gql_app.relay.node import node_type
from gql_app.users.loaders import UserByIdLoader, UserByUsernameLoader, UserPage
from gql_app.users.models import User as UserModel
from gql_app.users.types import USER_ORDER, User, UserFilter


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

    users: Connection[User] = connection(UserPage, USER_ORDER, filter=UserFilter)
