"""signUp / logIn / logOut / viewer, against real tokens and real rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gql_app.models import Account, AuthToken, Profile, User
from gql_app.users.passwords import token_digest
from tests.documents import VIEWER

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) {
    token
    user { username email profile { displayName } accounts { currency balance } }
    userErrors { field message code }
  }
}
"""
LOG_IN = """
mutation LogIn($email: String!, $password: String!) {
  logIn(input: {email: $email, password: $password}) {
    token user { username lastLoginAt } userErrors { field message code }
  }
}
"""
LOG_OUT = "mutation { logOut { ok } }"


@pytest.fixture
async def cleanup(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """Usernames created by a test, deleted afterwards so the shared world stays as built."""
    names: list[str] = []
    yield names
    async with AsyncSession(engine) as session:
        await session.execute(delete(User).where(User.username.in_(names)))
        await session.commit()


def sign_up_input(name: str, **extra: str) -> dict[str, object]:
    return {
        "input": {
            "username": name,
            "email": f"{name}@example.org",
            "password": "s3cret-pass!",
            **extra,
        }
    }


async def test_sign_up_creates_user_profile_and_empty_usd_account(gql, engine, cleanup):
    cleanup.append("newcomer")
    body = await gql(SIGN_UP, sign_up_input("newcomer", displayName="New Comer"))
    payload = body["data"]["signUp"]
    assert payload["userErrors"] == []
    assert payload["user"] == {
        "username": "newcomer",
        "email": "newcomer@example.org",
        "profile": {"displayName": "New Comer"},
        "accounts": [{"currency": "USD", "balance": "0.00"}],
    }
    async with AsyncSession(engine) as session:
        user = await session.scalar(select(User).where(User.username == "newcomer"))
        assert user is not None and user.password_hash.startswith("$argon2")
        assert (
            await session.scalar(select(Profile.display_name).where(Profile.user_id == user.id))
            == "New Comer"
        )
        assert (
            await session.scalars(select(Account.balance).where(Account.owner_id == user.id))
        ).all() == [0]
    viewer = await gql(VIEWER, token=payload["token"])
    assert viewer["data"]["viewer"] == {"username": "newcomer", "email": "newcomer@example.org"}


async def test_sign_up_reports_taken_username_and_email(gql, world, cleanup):
    body = await gql(
        SIGN_UP,
        {"input": {"username": "alice", "email": "alice@example.com", "password": "long enough"}},
    )
    errors = body["data"]["signUp"]["userErrors"]
    assert {(tuple(e["field"]), e["code"]) for e in errors} == {
        (("input", "username"), "TAKEN"),
        (("input", "email"), "TAKEN"),
    }
    assert body["data"]["signUp"]["user"] is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"username": "x"}, "username"),
        ({"username": "bad name!"}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"displayName": "x" * 101}, "displayName"),
        ({"displayName": "nul\x00byte"}, "displayName"),
    ],
)
async def test_sign_up_validates_input_and_writes_nothing(gql, engine, changes, field):
    variables = sign_up_input("validname")
    variables["input"].update(changes)  # type: ignore[attr-defined]
    body = await gql(SIGN_UP, variables)
    errors = body["data"]["signUp"]["userErrors"]
    assert [e["field"] for e in errors] == [["input", field]]
    assert errors[0]["code"] == "INVALID"
    async with AsyncSession(engine) as session:
        assert await session.scalar(select(User).where(User.username == "validname")) is None


async def test_log_in_issues_a_token_and_records_the_login(gql, cleanup):
    cleanup.append("loginner")
    await gql(SIGN_UP, sign_up_input("loginner"))
    body = await gql(LOG_IN, {"email": "LogInner@Example.org", "password": "s3cret-pass!"})
    payload = body["data"]["logIn"]
    assert payload["userErrors"] == []
    assert payload["user"]["username"] == "loginner"
    assert payload["user"]["lastLoginAt"] is not None
    assert (await gql(VIEWER, token=payload["token"]))["data"]["viewer"]["username"] == "loginner"


async def test_log_in_with_a_wrong_password_is_a_user_error(gql, world):
    body = await gql(LOG_IN, {"email": "alice@example.com", "password": "wrong password"})
    assert body["data"]["logIn"] == {
        "token": None,
        "user": None,
        "userErrors": [{"field": None, "message": "Wrong email or password.", "code": "INVALID"}],
    }


async def test_log_out_revokes_the_token(gql, cleanup):
    cleanup.append("leaver")
    token = (await gql(SIGN_UP, sign_up_input("leaver")))["data"]["signUp"]["token"]
    assert (await gql(LOG_OUT, token=token))["data"]["logOut"] == {"ok": True}
    assert (await gql(VIEWER, token=token))["data"]["viewer"] is None


async def test_log_out_without_a_token_is_unauthenticated(gql):
    body = await gql(LOG_OUT, expect_errors=True)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_expired_and_forged_tokens_are_anonymous(gql, engine, cleanup):
    cleanup.append("expiring")
    token = (await gql(SIGN_UP, sign_up_input("expiring")))["data"]["signUp"]["token"]
    async with AsyncSession(engine) as session:
        await session.execute(
            update(AuthToken)
            .where(AuthToken.token_hash == token_digest(token))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    assert (await gql(VIEWER, token=token))["data"]["viewer"] is None
    assert (await gql(VIEWER, token="forged-" + "x" * 40))["data"]["viewer"] is None
    assert (await gql(VIEWER, token="x" * 5000))["data"]["viewer"] is None


async def test_a_deactivated_user_cannot_sign_in_and_their_tokens_stop_working(
    gql, engine, cleanup
):
    cleanup.append("sleeper")
    token = (await gql(SIGN_UP, sign_up_input("sleeper")))["data"]["signUp"]["token"]
    async with AsyncSession(engine) as session:
        await session.execute(
            update(User).where(User.username == "sleeper").values(is_active=False)
        )
        await session.commit()
    assert (await gql(VIEWER, token=token))["data"]["viewer"] is None
    body = await gql(LOG_IN, {"email": "sleeper@example.org", "password": "s3cret-pass!"})
    assert body["data"]["logIn"]["userErrors"][0]["code"] == "FORBIDDEN"
    assert body["data"]["logIn"]["token"] is None
