from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, CompoundSelect, select, union_all
from sqlalchemy.orm import aliased

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
            conds.append(User.id.in_(ids_of_users_matching(self.search, ctx)))
        if self.is_active is not None:
            conds.append(User.is_active.is_(self.is_active))
        return conds + in_range(User.created_at, self.created_after, self.created_before)


def ids_of_users_matching(text: str, ctx: Context) -> CompoundSelect:
    """The ids of users whose username, display name or (for admins) email contains
    ``text``: one SELECT per column, each read through that column's trigram index
    (an OR of the columns, across two tables, could only be a scan of ``users``)."""
    matched = aliased(User, name="matched")
    selects = [
        select(matched.id).where(contains(matched.username, text)),
        select(Profile.user_id).where(contains(Profile.display_name, text)),
    ]
    if ctx.is_admin:  # an email is private: only admins may search by it
        selects.append(select(matched.id).where(contains(matched.email, text)))
    return union_all(*selects)


class UserPage(RootPage[User], model=User): ...
