"""transferFunds and depositFunds over real HTTP, checked against the rows they wrote.

These tests commit, so they run on the module's own isolated ``stack``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gql_app.models import Account, Transfer
from gql_app.relay.ids import decode_id_of, encode_id
from tests.conftest import Stack

TRANSFER = """
mutation Transfer($input: TransferFundsInput!) {
  transferFunds(input: $input) {
    transfer { id amount from { id } to { id } }
    from { id balance }
    to { id }
    userErrors { field message code }
  }
}
"""
TRANSFER_BETWEEN_OWN_ACCOUNTS = """
mutation Transfer($input: TransferFundsInput!) {
  transferFunds(input: $input) {
    transfer { id amount createdAt }
    from { id balance }
    to { id balance }
    userErrors { field message code }
  }
}
"""
DEPOSIT = """
mutation Deposit($input: DepositFundsInput!) {
  depositFunds(input: $input) {
    account { id balance }
    userErrors { field message code }
  }
}
"""
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { token user { accounts { id } } userErrors { code } }
}
"""

MAX_BALANCE = Decimal("999999999999.99")


def gid(pk: int) -> str:
    return encode_id("Account", pk)


async def new_account(
    stack: Stack, owner_id: int, balance: str = "0", currency: str = "USD"
) -> int:
    async with AsyncSession(stack.engine, expire_on_commit=False) as session:
        account = Account(owner_id=owner_id, currency=currency, balance=Decimal(balance))
        session.add(account)
        await session.commit()
        return account.id


async def balance_of(stack: Stack, account_id: int) -> Decimal:
    async with AsyncSession(stack.engine) as session:
        return await session.scalar(select(Account.balance).where(Account.id == account_id))  # type: ignore[no-any-return]


async def transfers_between(stack: Stack, account_ids: list[int]) -> list[Transfer]:
    async with AsyncSession(stack.engine) as session:
        return list(
            await session.scalars(
                select(Transfer)
                .where(Transfer.from_account_id.in_(account_ids))
                .order_by(Transfer.id)
            )
        )


async def snapshot(stack: Stack) -> tuple[list[tuple[int, Decimal]], list[tuple[Any, ...]]]:
    """Every balance and every transfer row: what "the database is unchanged" compares."""
    async with AsyncSession(stack.engine) as session:
        balances = (
            await session.execute(select(Account.id, Account.balance).order_by(Account.id))
        ).all()
        transfers = (
            await session.execute(
                select(
                    Transfer.id,
                    Transfer.from_account_id,
                    Transfer.to_account_id,
                    Transfer.amount,
                    Transfer.idempotency_key,
                ).order_by(Transfer.id)
            )
        ).all()
    return [tuple(row) for row in balances], [tuple(row) for row in transfers]  # type: ignore[misc]


@dataclass
class Given:
    """Accounts with known balances, made once for the module."""

    alice: int  # 100.00 USD, alice's
    alice_spare: int  # 0 USD, alice's
    alice_eur: int  # 0 EUR, alice's
    bob: int  # 100.00 USD, bob's
    full: int  # one cent short of numeric(14,2)'s ceiling, bob's


@pytest.fixture(scope="module")
async def given(stack: Stack) -> Given:
    world = stack.world
    return Given(
        alice=await new_account(stack, world.alice, "100.00"),
        alice_spare=await new_account(stack, world.alice),
        alice_eur=await new_account(stack, world.alice, currency="EUR"),
        bob=await new_account(stack, world.bob, "100.00"),
        full=await new_account(stack, world.bob, str(MAX_BALANCE - Decimal("0.01"))),
    )


# ---------------------------------------------------------------- transferFunds: the happy path


async def test_a_transfer_moves_the_money_records_it_and_shows_fresh_balances(stack):
    # Given two accounts of alice's
    source = await new_account(stack, stack.world.alice, "100.00")
    target = await new_account(stack, stack.world.alice, "5.00")

    # When alice moves 30.25 from one to the other
    body = await stack.gql(
        TRANSFER_BETWEEN_OWN_ACCOUNTS,
        {"input": {"fromAccountId": gid(source), "toAccountId": gid(target), "amount": "30.25"}},
        token=stack.world.tokens["alice"],
    )

    # Then the payload shows the transfer and both new balances
    payload = body["data"]["transferFunds"]
    assert payload["userErrors"] == []
    assert payload["transfer"]["amount"] == "30.25"
    assert payload["from"] == {"id": gid(source), "balance": "69.75"}
    assert payload["to"] == {"id": gid(target), "balance": "35.25"}
    # And the rows agree
    assert await balance_of(stack, source) == Decimal("69.75")
    assert await balance_of(stack, target) == Decimal("35.25")
    (row,) = await transfers_between(stack, [source])
    assert encode_id("Transfer", row.id) == payload["transfer"]["id"]
    assert (row.from_account_id, row.to_account_id, row.amount, row.idempotency_key) == (
        source,
        target,
        Decimal("30.25"),
        None,
    )


async def test_a_transfer_to_someone_else_shows_the_senders_balance_only(stack):
    # Given alice's account with 50.00 and bob's with nothing
    source = await new_account(stack, stack.world.alice, "50.00")
    target = await new_account(stack, stack.world.bob)

    # When alice sends bob 50.00, all of it
    body = await stack.gql(
        TRANSFER,
        {"input": {"fromAccountId": gid(source), "toAccountId": gid(target), "amount": "50"}},
        token=stack.world.tokens["alice"],
    )

    # Then the money moved and the payload names both sides
    payload = body["data"]["transferFunds"]
    assert payload["userErrors"] == []
    assert payload["from"] == {"id": gid(source), "balance": "0.00"}
    assert payload["to"] == {"id": gid(target)}
    assert payload["transfer"]["from"] == {"id": gid(source)}
    assert payload["transfer"]["to"] == {"id": gid(target)}
    assert await balance_of(stack, source) == Decimal("0.00")
    assert await balance_of(stack, target) == Decimal("50.00")


async def test_the_recipients_balance_stays_private_in_the_payload(stack, given):
    # Given alice sends bob a cent
    body = await stack.gql(
        """mutation($input: TransferFundsInput!) {
          transferFunds(input: $input) { to { balance } userErrors { code } } }""",
        {
            "input": {
                "fromAccountId": gid(given.alice),
                "toAccountId": gid(given.bob),
                "amount": "0.01",
            }
        },
        token=stack.world.tokens["alice"],
        expect_errors=True,
    )

    # Then bob's balance is FORBIDDEN to her, while the transfer itself went through
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert await balance_of(stack, given.bob) == Decimal("100.01")
    await stack.gql(  # (give the cent back, so the module's other tests see 100.00 each)
        TRANSFER,
        {
            "input": {
                "fromAccountId": gid(given.bob),
                "toAccountId": gid(given.alice),
                "amount": "0.01",
            }
        },
        token=stack.world.tokens["bob"],
    )


# ---------------------------------------------------------------- transferFunds: refusals


TRANSFER_REFUSALS: list[
    tuple[str, str | None, Callable[[Given], dict[str, Any]], str, list[str] | None]
] = [
    # (case, who, input, code, field)
    (
        "anonymous",
        None,
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(g.bob), "amount": "1"},
        "UNAUTHENTICATED",
        None,
    ),
    (
        "malformed from id",
        "alice",
        lambda g: {"fromAccountId": "nope", "toAccountId": gid(g.bob), "amount": "1"},
        "INVALID",
        ["input", "fromAccountId"],
    ),
    (
        "to id of another type",
        "alice",
        lambda g: {
            "fromAccountId": gid(g.alice),
            "toAccountId": encode_id("Post", 1),
            "amount": "1",
        },
        "INVALID",
        ["input", "toAccountId"],
    ),
    (
        "someone else's account",
        "alice",
        lambda g: {"fromAccountId": gid(g.bob), "toAccountId": gid(g.alice), "amount": "1"},
        "NOT_FOUND",
        ["input", "fromAccountId"],
    ),
    (
        "unknown from account",
        "alice",
        lambda g: {"fromAccountId": gid(10**9), "toAccountId": gid(g.bob), "amount": "1"},
        "NOT_FOUND",
        ["input", "fromAccountId"],
    ),
    (
        "an admin sending from a user's account",
        "admin",
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(g.bob), "amount": "1"},
        "FORBIDDEN",
        ["input", "fromAccountId"],
    ),
    (
        "unknown to account",
        "alice",
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(10**9), "amount": "1"},
        "NOT_FOUND",
        ["input", "toAccountId"],
    ),
    (
        "same account",
        "alice",
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(g.alice), "amount": "1"},
        "INVALID",
        ["input", "toAccountId"],
    ),
    (
        "other currency",
        "alice",
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(g.alice_eur), "amount": "1"},
        "INVALID",
        ["input", "toAccountId"],
    ),
    *[
        (
            f"amount {amount}",
            "alice",
            lambda g, amount=amount: {
                "fromAccountId": gid(g.alice),
                "toAccountId": gid(g.bob),
                "amount": amount,
            },
            "INVALID",
            ["input", "amount"],
        )
        for amount in ["0", "-1", "1.001", "1000000000.01"]
    ],
    (
        "more than the balance",
        "alice",
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(g.bob), "amount": "100.01"},
        "INSUFFICIENT_FUNDS",
        ["input", "amount"],
    ),
    (
        "more than the recipient can hold",
        "alice",
        lambda g: {"fromAccountId": gid(g.alice), "toAccountId": gid(g.full), "amount": "0.02"},
        "INVALID",
        ["input", "amount"],
    ),
    (
        "empty idempotency key",
        "alice",
        lambda g: {
            "fromAccountId": gid(g.alice),
            "toAccountId": gid(g.bob),
            "amount": "1",
            "idempotencyKey": "",
        },
        "INVALID",
        ["input", "idempotencyKey"],
    ),
    (
        "idempotency key too long",
        "alice",
        lambda g: {
            "fromAccountId": gid(g.alice),
            "toAccountId": gid(g.bob),
            "amount": "1",
            "idempotencyKey": "k" * 101,
        },
        "INVALID",
        ["input", "idempotencyKey"],
    ),
]


@pytest.mark.parametrize(
    ("who", "make_input", "code", "field"),
    [case[1:] for case in TRANSFER_REFUSALS],
    ids=[case[0] for case in TRANSFER_REFUSALS],
)
async def test_a_refused_transfer_is_a_user_error_and_writes_nothing(
    stack, given, who, make_input, code, field
):
    # Given the database as it is
    before = await snapshot(stack)

    # When a transfer that must be refused is asked for
    body = await stack.gql(
        TRANSFER,
        {"input": make_input(given)},
        token=stack.world.tokens[who] if who else None,
    )

    # Then the payload carries one coded error and nothing else
    payload = body["data"]["transferFunds"]
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]
    assert (payload["transfer"], payload["from"], payload["to"]) == (None, None, None)
    # And no row changed
    assert await snapshot(stack) == before


async def test_every_malformed_input_is_reported_at_once(stack, given):
    # When every argument is malformed
    body = await stack.gql(
        TRANSFER,
        {"input": {"fromAccountId": "x", "toAccountId": "y", "amount": "0", "idempotencyKey": ""}},
        token=stack.world.tokens["alice"],
    )

    # Then each is named
    errors = body["data"]["transferFunds"]["userErrors"]
    assert [e["field"][1] for e in errors] == [
        "fromAccountId",
        "toAccountId",
        "amount",
        "idempotencyKey",
    ]


NOT_A_DECIMAL = {
    # The contract's Decimal is a string like "12.50", never a float
    "a word": "ten",
    "a JSON integer": 10,
    "a JSON float": 10.5,
    "an exponent": "1e20",
    "NaN": "NaN",
    "sNaN": "sNaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "padded": " 10.00",
    "a plus sign": "+10",
}


@pytest.mark.parametrize("amount", list(NOT_A_DECIMAL.values()), ids=list(NOT_A_DECIMAL))
async def test_an_amount_that_is_not_a_decimal_string_is_refused_before_execution(
    stack, given, amount
):
    # Given the database as it is
    before = await snapshot(stack)

    # When the amount is not a decimal number written as a string
    body = await stack.gql(
        TRANSFER,
        {
            "input": {
                "fromAccountId": gid(given.alice),
                "toAccountId": gid(given.bob),
                "amount": amount,
            }
        },
        token=stack.world.tokens["alice"],
        expect_errors=True,
    )

    # Then the Decimal scalar refuses the variable: a BAD_USER_INPUT error, no data
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert "A Decimal is a string in plain decimal notation" in body["errors"][0]["message"]
    assert await snapshot(stack) == before


# ---------------------------------------------------------------- idempotency


async def test_a_retried_key_returns_the_first_transfer_and_moves_nothing_more(stack):
    # Given alice's 100.00 and a first transfer of 10.00 under a key
    source = await new_account(stack, stack.world.alice, "100.00")
    target = await new_account(stack, stack.world.bob)
    transfer = {"fromAccountId": gid(source), "toAccountId": gid(target), "amount": "10.00"}
    request = {"input": {**transfer, "idempotencyKey": "retry-me"}}
    first = (await stack.gql(TRANSFER, request, token=stack.world.tokens["alice"]))["data"]

    # When the client retries it twice, the amount written another way
    again = {"input": {**transfer, "amount": "10", "idempotencyKey": "retry-me"}}
    second = (await stack.gql(TRANSFER, again, token=stack.world.tokens["alice"]))["data"]
    third = (await stack.gql(TRANSFER, request, token=stack.world.tokens["alice"]))["data"]

    # Then every answer is the first transfer, with the balance as it is now
    assert first["transferFunds"]["userErrors"] == []
    assert second == third == first
    assert first["transferFunds"]["from"]["balance"] == "90.00"
    # And one row, the money moved once
    (row,) = await transfers_between(stack, [source])
    assert encode_id("Transfer", row.id) == first["transferFunds"]["transfer"]["id"]
    assert row.idempotency_key == "retry-me"
    assert await balance_of(stack, source) == Decimal("90.00")
    assert await balance_of(stack, target) == Decimal("10.00")


async def test_a_key_reused_for_another_transfer_is_invalid(stack):
    # Given a transfer made under a key
    source = await new_account(stack, stack.world.alice, "100.00")
    target = await new_account(stack, stack.world.bob)
    other = await new_account(stack, stack.world.bob)
    transfer = {"fromAccountId": gid(source), "toAccountId": gid(target), "amount": "10.00"}
    await stack.gql(
        TRANSFER,
        {"input": {**transfer, "idempotencyKey": "once"}},
        token=stack.world.tokens["alice"],
    )

    # When the key comes back with another amount, another recipient, or from another sender
    bob_account = await new_account(stack, stack.world.bob, "100.00")
    before = await snapshot(stack)
    reuses = [
        ("alice", {**transfer, "amount": "11.00"}),
        ("alice", {**transfer, "toAccountId": gid(other)}),
        ("bob", {**transfer, "fromAccountId": gid(bob_account)}),
    ]
    bodies = [
        await stack.gql(
            TRANSFER, {"input": {**reuse, "idempotencyKey": "once"}}, token=stack.world.tokens[who]
        )
        for who, reuse in reuses
    ]

    # Then each is INVALID on the key, and nothing moved
    for body in bodies:
        payload = body["data"]["transferFunds"]
        assert payload["transfer"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("INVALID", ["input", "idempotencyKey"])
        ]
    assert await snapshot(stack) == before


async def test_losing_a_key_race_rolls_back_only_the_insert_and_answers_with_the_winner(stack):
    # Given another transaction that has recorded a transfer under "raced" but not committed yet
    source = await new_account(stack, stack.world.alice, "100.00")
    target = await new_account(stack, stack.world.bob)
    elsewhere_from = await new_account(stack, stack.world.bob, "5.00")
    elsewhere_to = await new_account(stack, stack.world.bob)
    async with stack.engine.connect() as winner:
        await winner.execute(
            Transfer.__table__.insert().values(
                from_account_id=elsewhere_from,
                to_account_id=elsewhere_to,
                amount=Decimal("5.00"),
                idempotency_key="raced",
            )
        )

        # When alice's transfer under the same key reaches its insert, waits there, and the
        # other transaction commits
        request = asyncio.ensure_future(
            stack.gql(
                TRANSFER,
                {
                    "input": {
                        "fromAccountId": gid(source),
                        "toAccountId": gid(target),
                        "amount": "1.00",
                        "idempotencyKey": "raced",
                    }
                },
                token=stack.world.tokens["alice"],
            )
        )
        await until_a_backend_waits_for_a_lock(stack)
        await winner.commit()
        body = await request

    # Then the loser gets a clean INVALID (the key names another transfer), not an error
    payload = body["data"]["transferFunds"]
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID", ["input", "idempotencyKey"])
    ]
    # And its money did not move
    assert await balance_of(stack, source) == Decimal("100.00")
    assert await transfers_between(stack, [source]) == []


async def until_a_backend_waits_for_a_lock(stack: Stack) -> None:
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with stack.engine.connect() as conn:
        for _ in range(500):
            if await conn.scalar(waiting):
                return
            await conn.rollback()
            await asyncio.sleep(0.01)
    raise AssertionError("the request never waited on the uncommitted key")


# ---------------------------------------------------------------- depositFunds


async def test_an_admin_deposit_adds_to_the_balance(stack):
    # Given an account with 1.50
    account = await new_account(stack, stack.world.bob, "1.50")

    # When an admin deposits 98.50
    body = await stack.gql(
        DEPOSIT,
        {"input": {"accountId": gid(account), "amount": "98.50"}},
        token=stack.world.tokens["admin"],
    )

    # Then the payload and the row show 100.00
    assert body["data"]["depositFunds"] == {
        "account": {"id": gid(account), "balance": "100.00"},
        "userErrors": [],
    }
    assert await balance_of(stack, account) == Decimal("100.00")


DEPOSIT_REFUSALS: list[
    tuple[str, str | None, Callable[[Given], dict[str, Any]], str, list[str] | None]
] = [
    (
        "anonymous",
        None,
        lambda g: {"accountId": gid(g.bob), "amount": "1"},
        "UNAUTHENTICATED",
        None,
    ),
    (
        "not an admin",
        "alice",
        lambda g: {"accountId": gid(g.alice), "amount": "1"},
        "FORBIDDEN",
        None,
    ),
    (
        "unknown account",
        "admin",
        lambda g: {"accountId": gid(10**9), "amount": "1"},
        "NOT_FOUND",
        ["input", "accountId"],
    ),
    (
        "malformed id",
        "admin",
        lambda g: {"accountId": "nope", "amount": "1"},
        "INVALID",
        ["input", "accountId"],
    ),
    *[
        (
            f"amount {amount}",
            "admin",
            lambda g, amount=amount: {"accountId": gid(g.bob), "amount": amount},
            "INVALID",
            ["input", "amount"],
        )
        for amount in ["0", "-5", "0.001", "1000000000.01"]
    ],
    (
        "beyond numeric(14,2)",
        "admin",
        lambda g: {"accountId": gid(g.full), "amount": "0.02"},
        "INVALID",
        ["input", "amount"],
    ),
]


@pytest.mark.parametrize(
    ("who", "make_input", "code", "field"),
    [case[1:] for case in DEPOSIT_REFUSALS],
    ids=[case[0] for case in DEPOSIT_REFUSALS],
)
async def test_a_refused_deposit_is_a_user_error_and_writes_nothing(
    stack, given, who, make_input, code, field
):
    # Given the database as it is
    before = await snapshot(stack)

    # When a deposit that must be refused is asked for
    body = await stack.gql(
        DEPOSIT, {"input": make_input(given)}, token=stack.world.tokens[who] if who else None
    )

    # Then one coded error, no account, no change
    payload = body["data"]["depositFunds"]
    assert payload["account"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]
    assert await snapshot(stack) == before


async def test_a_deposit_may_fill_an_account_to_the_last_cent(stack, given):
    # When an admin deposits exactly what the full account can still hold
    body = await stack.gql(
        DEPOSIT,
        {"input": {"accountId": gid(given.full), "amount": "0.01"}},
        token=stack.world.tokens["admin"],
    )

    # Then it holds numeric(14,2)'s maximum
    assert body["data"]["depositFunds"]["account"]["balance"] == str(MAX_BALANCE)
    assert await balance_of(stack, given.full) == MAX_BALANCE
    async with AsyncSession(stack.engine) as session:  # (back to one cent short)
        await session.execute(
            update(Account)
            .where(Account.id == given.full)
            .values(balance=MAX_BALANCE - Decimal("0.01"))
        )
        await session.commit()


# ---------------------------------------------------------------- under concurrency

PEOPLE = 6
REQUESTS = 1000
CONCURRENCY = 100
REPEAT_SHARE = 0.10


@dataclass
class Person:
    token: str
    account: int


async def test_a_thousand_concurrent_transfers_conserve_money_and_honour_keys_once(stack):
    # Given six members who signed up and got a deposit each
    rng = random.Random(20260101)
    signups = await asyncio.gather(
        *(
            stack.gql(
                SIGN_UP,
                {
                    "input": {
                        "username": f"payer{i}",
                        "email": f"payer{i}@example.org",
                        "password": "s3cret-pass!",
                    }
                },
            )
            for i in range(PEOPLE)
        )
    )
    people = [
        Person(
            token=body["data"]["signUp"]["token"],
            account=decode_id_of(body["data"]["signUp"]["user"]["accounts"][0]["id"], "Account"),
        )
        for body in signups
    ]
    deposits = [Decimal(rng.randint(20_000, 60_000)) / 100 for _ in people]
    for person, deposit in zip(people, deposits, strict=True):
        body = await stack.gql(
            DEPOSIT,
            {"input": {"accountId": gid(person.account), "amount": str(deposit)}},
            token=stack.world.tokens["admin"],
        )
        assert body["data"]["depositFunds"]["account"]["balance"] == f"{deposit:.2f}"
    accounts = [person.account for person in people]

    # And a thousand transfers both ways between them, some overdrawing, and about one in
    # ten repeating an earlier request's key with the same arguments
    requests: list[tuple[str, dict[str, Any]]] = []
    repeats_of: dict[int, int] = {}
    keyed: list[int] = []
    for i in range(REQUESTS):
        if keyed and rng.random() < REPEAT_SHARE:
            original = rng.choice(keyed[-2 * CONCURRENCY :])  # often in the same batch
            repeats_of[i] = original
            requests.append(requests[original])
            keyed.append(i)
            continue
        sender, receiver = rng.sample(people, 2)
        request: dict[str, Any] = {
            "fromAccountId": gid(sender.account),
            "toAccountId": gid(receiver.account),
            "amount": str(Decimal(rng.randint(1, 20_000)) / 100),
        }
        if rng.random() < 0.8:
            request["idempotencyKey"] = f"load-{i}"
            keyed.append(i)
        requests.append((sender.token, request))

    # When they are fired over HTTP, a hundred at a time
    started = time.perf_counter()
    bodies: list[dict[str, Any]] = []
    for start in range(0, REQUESTS, CONCURRENCY):
        bodies += await asyncio.gather(
            *(
                stack.gql(TRANSFER, {"input": request}, token=token, expect_errors=True)
                for token, request in requests[start : start + CONCURRENCY]
            )
        )
    elapsed = time.perf_counter() - started

    # Then no request failed with an error: each either moved money or was refused for funds
    assert [body for body in bodies if "errors" in body] == []
    payloads = [body["data"]["transferFunds"] for body in bodies]
    codes = Counter(e["code"] for p in payloads for e in p["userErrors"])
    assert set(codes) <= {"INSUFFICIENT_FUNDS"}
    succeeded = {i: p["transfer"]["id"] for i, p in enumerate(payloads) if not p["userErrors"]}
    assert all(p["transfer"] is None for i, p in enumerate(payloads) if i not in succeeded)

    # And money was conserved, no balance is negative, and each balance is its deposit
    # plus exactly the recorded transfers
    rows = await transfers_between(stack, accounts)
    async with AsyncSession(stack.engine) as session:
        balances = dict(
            (
                await session.execute(
                    select(Account.id, Account.balance).where(Account.id.in_(accounts))
                )
            ).all()
        )
    assert sum(balances.values()) == sum(deposits)
    assert min(balances.values()) >= 0
    expected = dict(zip(accounts, deposits, strict=True))
    for row in rows:
        expected[row.from_account_id] -= row.amount
        expected[row.to_account_id] += row.amount
    assert balances == expected

    # And every successful transfer is one row, and the rows are exactly those transfers
    row_ids = Counter(encode_id("Transfer", row.id) for row in rows)
    assert set(row_ids) == set(succeeded.values())
    assert all(count == 1 for count in row_ids.values())
    assert len(rows) == len(set(succeeded.values()))

    # And a key was honoured once: all who sent it got the same transfer, the one recorded
    by_key: dict[str, set[str]] = defaultdict(set)
    for i, transfer_id in succeeded.items():
        key = requests[i][1].get("idempotencyKey")
        if key is not None:
            by_key[key].add(transfer_id)
    recorded = {row.idempotency_key: encode_id("Transfer", row.id) for row in rows}
    assert {key: ids for key, ids in by_key.items() if len(ids) != 1} == {}
    assert {key: ids.pop() for key, ids in by_key.items()} == {
        key: tid for key, tid in recorded.items() if key is not None
    }
    replays = [i for i, original in repeats_of.items() if original in succeeded and i in succeeded]
    assert all(succeeded[i] == succeeded[repeats_of[i]] for i in replays)
    for i in replays:
        assert payloads[i]["transfer"]["amount"] == payloads[repeats_of[i]]["transfer"]["amount"]

    insufficient = codes["INSUFFICIENT_FUNDS"]
    print(
        f"\n{REQUESTS} transfers in {elapsed:.1f}s ({REQUESTS / elapsed:.0f}/s): "
        f"{len(succeeded)} succeeded ({len(rows)} distinct transfers, "
        f"{len(succeeded) - len(rows)} idempotent replays), {insufficient} insufficient funds, "
        f"{len(repeats_of)} repeated keys"
    )
    assert len(rows) > REQUESTS // 3 and insufficient > 0 and len(replays) > 0
    assert len(succeeded) + insufficient == REQUESTS
