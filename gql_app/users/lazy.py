"""``UserType``: the User GraphQL type as the other domains' types refer to it,
lazily (``users.types`` imports their types, so they cannot import it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

if TYPE_CHECKING:
    from gql_app.users.types import User

UserType = Annotated["User", strawberry.lazy("gql_app.users.types")]
