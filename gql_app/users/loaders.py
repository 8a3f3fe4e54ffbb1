from __future__ import annotations

from gql_app.loaders import ByColumnLoader, ByIdLoader
from gql_app.users.models import Profile, User


class UserByIdLoader(ByIdLoader[User]):
    model = User


class UserByUsernameLoader(ByColumnLoader[User]):
    model = User
    column = User.username


class ProfileByUserIdLoader(ByColumnLoader[Profile]):
    model = Profile
    column = Profile.user_id
