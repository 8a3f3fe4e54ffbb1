from __future__ import annotations

import re
from datetime import datetime

import strawberry
from sqlalchemy import func, select, update

from gql_app.data.context import Context, Info
from gql_app.data.events import Topic
from gql_app.engine.mutations import (
    BulkUpdatePayload,
    Payload,
    admin,
    atomic_mutation,
    collect,
    fail,
    input_error,
    raise_collected,
    signed_in,
    text,
)
from gql_app.errors import Unauthenticated, UserErrorCode, UserFailure
from gql_app.money.models import Account
from gql_app.users.auth import issue_token, revoke_token
from gql_app.users.models import Profile
from gql_app.users.models import User as UserModel
from gql_app.users.passwords import hash_password, verify_password
from gql_app.users.types import User

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,50}$")
EMAIL = re.compile(r"^[^@\s\x00]{1,64}@[^@\s\x00]{1,185}\.[^@\s\x00]{2,63}$")


@strawberry.input
class SignUpInput:
    username: str
    email: str
    password: str
    display_name: str | None = None


@strawberry.type
class SignUpPayload(Payload):
    user: User | None = None
    token: str | None = strawberry.field(
        default=None, description="Bearer token for the Authorization header."
    )


@strawberry.input
class LogInInput:
    email: str
    password: str


@strawberry.type
class LogInPayload(Payload):
    user: User | None = None
    token: str | None = None


@strawberry.type
class LogOutPayload:
    ok: bool


def sign_up_input(input: SignUpInput) -> str | None:
    """Every malformed field reported at once; the display name, trimmed, if given."""
    errors = []
    if not USERNAME.match(input.username):
        errors.append(input_error("username", "3 to 50 letters, digits, '.', '_' or '-'."))
    if len(input.email) > 254 or not EMAIL.match(input.email):
        errors.append(input_error("email", "Not a valid email address."))
    if not 8 <= len(input.password) <= 128:
        errors.append(input_error("password", "The password must be 8 to 128 characters."))
    display_name = None
    if input.display_name is not None:
        display_name = collect(errors, text, "displayName", input.display_name, max_length=100)
    raise_collected(errors)
    return display_name


async def check_not_taken(ctx: Context, username: str, email: str) -> None:
    """TAKEN for a username (any case) or an email that an account already has."""
    taken = await ctx.db.execute(
        select(UserModel.username, UserModel.email).where(
            (func.lower(UserModel.username) == username.lower()) | (UserModel.email == email)
        )
    )
    errors = []
    for existing_username, existing_email in taken.all():
        if existing_username.lower() == username.lower():
            errors.append(input_error("username", "Username taken.", UserErrorCode.TAKEN))
        if existing_email == email:
            errors.append(input_error("email", "Email taken.", UserErrorCode.TAKEN))
    raise_collected(errors)


async def sign_up(info: Info, input: SignUpInput) -> SignUpPayload:
    display_name = sign_up_input(input)
    email = input.email.strip().lower()
    await check_not_taken(info.context, input.username, email)

    db = info.context.db
    user = UserModel(
        username=input.username, email=email, password_hash=hash_password(input.password)
    )
    db.session.add(user)
    await db.flush()
    db.session.add(Profile(user_id=user.id, display_name=display_name or input.username))
    db.session.add(Account(owner_id=user.id, currency="USD"))
    await db.flush()
    await db.refresh(user)
    info.context.viewer = user
    token = await issue_token(info.context, user)
    return SignUpPayload(user=user, token=token)  # type: ignore[arg-type]


async def log_in(info: Info, input: LogInInput) -> LogInPayload:
    db = info.context.db
    user = await db.scalar(select(UserModel).where(UserModel.email == input.email.strip().lower()))
    if (
        user is None
        or len(input.password) > 1024
        or not verify_password(user.password_hash, input.password)
    ):
        raise UserFailure.of(UserErrorCode.INVALID, "Wrong email or password.")
    if not user.is_active:
        raise UserFailure.of(UserErrorCode.FORBIDDEN, "This account is deactivated.")
    await db.execute(
        update(UserModel).where(UserModel.id == user.id).values(last_login_at=func.now())
    )
    await db.refresh(user)
    info.context.viewer = user
    token = await issue_token(info.context, user)
    return LogInPayload(user=user, token=token)  # type: ignore[arg-type]


@strawberry.input
class UpdateProfileInput:
    display_name: str | None = strawberry.UNSET
    bio: str | None = strawberry.field(
        default=strawberry.UNSET, description="null clears the bio; omitted keeps it."
    )
    age: int | None = strawberry.field(
        default=strawberry.UNSET, description="null clears the age; omitted keeps it."
    )


@strawberry.type
class UpdateProfilePayload(Payload):
    user: User | None = None


@strawberry.input
class DeactivateInactiveUsersInput:
    last_login_before: datetime


async def update_profile(info: Info, input: UpdateProfileInput) -> UpdateProfilePayload:
    ctx = info.context
    viewer = signed_in(ctx)
    profile_values: dict[str, object] = {}
    if input.display_name is not None and input.display_name is not strawberry.UNSET:
        profile_values["display_name"] = text("displayName", input.display_name, max_length=100)
    if input.bio is not strawberry.UNSET:
        profile_values["bio"] = (
            None if input.bio is None else text("bio", input.bio, max_length=2_000, min_length=0)
        ) or None
    user_values: dict[str, object] = {}
    if input.age is not strawberry.UNSET:
        if input.age is not None and not 0 <= input.age <= 150:
            raise fail("age", "`age` must be between 0 and 150.")
        user_values["age"] = input.age
    if profile_values:
        profile = await ctx.db.scalar(select(Profile).where(Profile.user_id == viewer.id))
        if profile is None:
            ctx.db.session.add(
                Profile(
                    user_id=viewer.id,
                    **{"display_name": viewer.username, **profile_values},  # type: ignore[arg-type]
                )
            )
            await ctx.db.flush()
        else:
            await ctx.db.execute(
                update(Profile).where(Profile.user_id == viewer.id).values(**profile_values)
            )
    if user_values:
        await ctx.db.execute(
            update(UserModel)
            .where(UserModel.id == viewer.id)
            .values(**user_values, updated_at=func.now())
        )
    await ctx.db.refresh(viewer)
    return UpdateProfilePayload(user=viewer)  # type: ignore[arg-type]


async def deactivate_inactive_users(
    info: Info, input: DeactivateInactiveUsersInput
) -> BulkUpdatePayload:
    admin(info.context)
    if input.last_login_before.tzinfo is None:
        raise fail("lastLoginBefore", "`lastLoginBefore` needs a UTC offset.")
    result = await info.context.db.execute(
        update(UserModel)
        .where(
            UserModel.is_active.is_(True),
            func.coalesce(UserModel.last_login_at, UserModel.created_at) < input.last_login_before,
        )
        .values(is_active=False, updated_at=func.now())
        .returning(UserModel.id)
    )
    deactivated = list(result.scalars())
    info.context.events.add(Topic.USER, deactivated)  # their live connections end
    return BulkUpdatePayload(affected_count=len(deactivated))


@strawberry.type
class UserMutation:
    sign_up = atomic_mutation(sign_up, SignUpPayload)

    log_in = atomic_mutation(log_in, LogInPayload)

    update_profile = atomic_mutation(update_profile, UpdateProfilePayload)

    deactivate_inactive_users = atomic_mutation(
        deactivate_inactive_users,
        BulkUpdatePayload,
        description="Admins only. One set-based UPDATE: deactivates active users whose "
        "lastLoginAt (or createdAt when never logged in) is before the cutoff.",
    )

    @strawberry.mutation(description="Revokes the token the request was made with.")
    async def log_out(self, info: Info) -> LogOutPayload:
        ctx = info.context
        if ctx.viewer is None or ctx.bearer_token is None:
            raise Unauthenticated()
        return LogOutPayload(ok=await revoke_token(ctx, ctx.bearer_token))
