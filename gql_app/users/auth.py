"""Bearer tokens: issue, resolve to the viewer, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update

from gql_app.data.context import Context
from gql_app.data.events import Topic
from gql_app.users.models import AuthToken, User
from gql_app.users.passwords import new_token, token_digest


def _viewer_query(selected: Any) -> Any:
    return (
        select(selected)
        .join(AuthToken, AuthToken.user_id == User.id)
        .where(
            AuthToken.token_hash == bindparam("digest"),
            AuthToken.revoked_at.is_(None),
            AuthToken.expires_at > func.now(),
            User.is_active.is_(True),
        )
    )


VIEWER_OBJECT = _viewer_query(User)
"""A mutation's viewer: an ORM object it may refresh or change."""
VIEWER_ROW = _viewer_query(User.__table__)
"""A query's viewer: a row, like every other row a query reads."""


SESSION_ROW = _viewer_query(User.__table__).add_columns(
    AuthToken.id.label("token_id"), AuthToken.expires_at.label("token_expires_at")
)
"""A live connection's viewer, with the token's id and expiry (it ends with them)."""


@dataclass(frozen=True, slots=True)
class Session:
    viewer: Any
    token_id: int
    expires_at: datetime


async def session_of(ctx: Context, token: str) -> Session | None:
    """The active session ``token`` opens, or None (unknown, revoked, expired, inactive)."""
    if len(token) > 200:
        return None
    found = await ctx.db.rows(SESSION_ROW, {"digest": token_digest(token)})
    if not found:
        return None
    row = found[0]
    return Session(row, row.token_id, row.token_expires_at)


async def authenticate(ctx: Context) -> None:
    """Resolve the request's bearer token to an active user (one statement, only with a token)."""
    if ctx.bearer_token is None or len(ctx.bearer_token) > 200:
        return
    params = {"digest": token_digest(ctx.bearer_token)}
    if ctx.orm:
        ctx.viewer = (await ctx.db.execute(VIEWER_OBJECT, params)).scalar()
    else:
        found = await ctx.db.rows(VIEWER_ROW, params)
        ctx.viewer = found[0] if found else None
    if ctx.viewer is not None:
        ctx.loaders.prime(User, ctx.viewer)


async def issue_token(ctx: Context, user: User) -> str:
    token = new_token()
    ctx.db.session.add(
        AuthToken(
            user_id=user.id,
            token_hash=token_digest(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=ctx.settings.token_ttl_seconds),
        )
    )
    await ctx.db.flush()
    return token


async def revoke_token(ctx: Context, token: str) -> bool:
    """Revoke ``token``; live connections signed in with it end (``Topic.TOKEN``)."""
    result = await ctx.db.execute(
        update(AuthToken)
        .where(AuthToken.token_hash == token_digest(token), AuthToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(AuthToken.id)
    )
    revoked = list(result.scalars())
    ctx.events.add(Topic.TOKEN, revoked)
    return bool(revoked)
