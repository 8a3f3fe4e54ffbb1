from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, or_

from gql_app.data.context import Context
from gql_app.data.loaders import ByColumnLoader, ByIdLoader, RootPage
from gql_app.data.pages import contains, in_range
from gql_app.users.models import Profile, User


class UserByIdLoader(ByIdLoader[User], model=User): ...


class UserByUsernameLoader(ByColumnLoader[User], column=User.username): ...


class ProfileByUserIdLoader(ByColumnLoader[Profile], column=Profile.user_id): ...


@dataclass(frozen=True)
class UserCriteria:
    search: str | None = None
    is_active: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def conditions(self, ctx: Context) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.search:
            matches = [
                contains(User.username, self.search),
                exists().where(
                    Profile.user_id == User.id, contains(Profile.display_name, self.search)
                ),
            ]
            if ctx.is_admin:  # an email is private: only admins may search by it
                matches.append(contains(User.email, self.search))
            conds.append(or_(*matches))
        if self.is_active is not None:
            conds.append(User.is_active.is_(self.is_active))
        return conds + in_range(User.created_at, self.created_after, self.created_before)


class UserPage(RootPage[User], model=User): ...
