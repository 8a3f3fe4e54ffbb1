from __future__ import annotations

import strawberry

from gql_app.data.context import Info
from gql_app.relay.connection import Connection, connection
from gql_app.relay.node import by_id_or_key, loaded_node
from gql_app.users.loaders import UserByIdLoader, UserByUsernameLoader, UserPage
from gql_app.users.types import USER_ORDER, User, UserFilter

loaded_node("User", UserByIdLoader)


@strawberry.type
class UserQuery:
    @strawberry.field(description="The signed-in user, or null.")
    def viewer(self, info: Info) -> User | None:
        return info.context.viewer  # type: ignore[return-value]

    @strawberry.field(description="Exactly one of id or username.")
    async def user(
        self, info: Info, id: strawberry.ID | None = None, username: str | None = None
    ) -> User | None:
        return await by_id_or_key(info, "User", id, "username", username, UserByUsernameLoader)

    users: Connection[User] = connection(UserPage, USER_ORDER, filter=UserFilter)
