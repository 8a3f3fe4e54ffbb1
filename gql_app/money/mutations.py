"""transferFunds and depositFunds: accounts locked in id order, the transfer recorded
(idempotently, with a key), the money moved with Core UPDATEs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import strawberry
from sqlalchemy import ColumnElement, any_, insert, select, update
from sqlalchemy.exc import IntegrityError

from gql_app.data.context import Context, Info
from gql_app.data.db import id_array
from gql_app.data.events import Topic
from gql_app.engine.mutations import (
    Payload,
    admin,
    amount,
    atomic_mutation,
    collect,
    fail,
    raise_collected,
    signed_in,
)
from gql_app.errors import UserError, UserErrorCode
from gql_app.money.loaders import AccountByIdLoader
from gql_app.money.models import Account as AccountModel
from gql_app.money.models import Transfer as TransferModel
from gql_app.money.types import Account, Transfer
from gql_app.relay.ids import input_id

MAX_BALANCE = Decimal("999999999999.99")  # numeric(14,2)
MAX_KEY_LENGTH = 100  # transfers.idempotency_key is varchar(100)
UNIQUE_VIOLATION = "23505"


@strawberry.input
class TransferFundsInput:
    from_account_id: strawberry.ID
    to_account_id: strawberry.ID
    amount: Decimal
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Repeating a transfer with the same key returns the first transfer "
        "and moves no more money.",
    )


@strawberry.type
class TransferFundsPayload(Payload):
    transfer: Transfer | None = None
    from_: Account | None = strawberry.field(name="from", default=None)
    to: Account | None = None


@strawberry.input
class DepositFundsInput:
    account_id: strawberry.ID
    amount: Decimal


@strawberry.type
class DepositFundsPayload(Payload):
    account: Account | None = None


def idempotency_key(value: str | None) -> str | None:
    """An opaque key, kept exactly as given: 1..100 characters, without NUL."""
    if value is not None and (not 1 <= len(value) <= MAX_KEY_LENGTH or "\x00" in value):
        raise fail("idempotencyKey", f"`idempotencyKey` must be 1 to {MAX_KEY_LENGTH} characters.")
    return value


async def lock_accounts(ctx: Context, *ids: int) -> dict[int, AccountModel]:
    """The accounts that exist among ``ids``, locked in id order (one statement): a
    fixed order, so opposite transfers cannot deadlock."""
    rows = await ctx.db.scalars(
        select(AccountModel)
        .where(AccountModel.id == any_(id_array(sorted(set(ids)))))
        .order_by(AccountModel.id)
        .with_for_update()
    )
    return {row.id: row for row in rows}


async def fresh_accounts(ctx: Context, *ids: int) -> list[AccountModel | None]:
    """The accounts as they are now, after this field's writes (one batched statement)."""
    loader = ctx.loaders.get(AccountByIdLoader)
    for pk in ids:
        loader.clear(pk)
    return await loader.load_many(list(ids))


async def transfer_by_key(ctx: Context, key: str) -> TransferModel | None:
    return await ctx.db.scalar(select(TransferModel).where(TransferModel.idempotency_key == key))  # type: ignore[no-any-return]


async def replay(
    ctx: Context, earlier: TransferModel, from_id: int, to_id: int, value: Decimal
) -> TransferFundsPayload:
    """The answer to a repeated key: the first transfer and the current balances, or
    INVALID when the key was used for a different transfer."""
    if (earlier.from_account_id, earlier.to_account_id, earlier.amount) != (from_id, to_id, value):
        raise fail("idempotencyKey", "This idempotency key was already used for another transfer.")
    return await transfer_payload(ctx, earlier, from_id, to_id)


async def transfer_payload(
    ctx: Context, transfer: TransferModel, from_id: int, to_id: int
) -> TransferFundsPayload:
    """The transfer, and both accounts as they are now (after this field's writes)."""
    source, target = await fresh_accounts(ctx, from_id, to_id)
    return TransferFundsPayload(transfer=transfer, from_=source, to=target)  # type: ignore[arg-type]


def transfer_input(input: TransferFundsInput) -> tuple[int, int, Decimal, str | None]:
    """(from id, to id, amount, idempotency key), every bad field reported at once."""
    errors: list[UserError] = []
    from_id = collect(errors, input_id, "fromAccountId", input.from_account_id, "Account")
    to_id = collect(errors, input_id, "toAccountId", input.to_account_id, "Account")
    value = collect(errors, amount, "amount", input.amount)
    key = collect(errors, idempotency_key, input.idempotency_key)
    raise_collected(errors)
    assert from_id is not None and to_id is not None and value is not None
    if from_id == to_id:
        raise fail("toAccountId", "A transfer needs two different accounts.")
    return from_id, to_id, value, key


async def transfer_accounts(
    ctx: Context, viewer: Any, from_id: int, to_id: int
) -> tuple[AccountModel, AccountModel]:
    """Both accounts, locked: the viewer's own to send from, one in the same currency
    to receive."""
    accounts = await lock_accounts(ctx, from_id, to_id)
    source, target = accounts.get(from_id), accounts.get(to_id)
    if source is None or not ctx.can_see_private(source.owner_id):
        raise fail("fromAccountId", "No such account.", UserErrorCode.NOT_FOUND)
    if source.owner_id != viewer.id:
        raise fail(
            "fromAccountId", "You can only send from your own account.", UserErrorCode.FORBIDDEN
        )
    if target is None:
        raise fail("toAccountId", "No such account.", UserErrorCode.NOT_FOUND)
    if target.currency != source.currency:
        raise fail("toAccountId", f"The receiving account is not in {source.currency}.")
    return source, target


async def insert_transfer(
    ctx: Context, from_id: int, to_id: int, value: Decimal, key: str | None
) -> TransferModel:
    """The transfer row, inserted before the money moves and in a savepoint of its
    own: a request that loses an idempotency-key race to a concurrent one rolls back
    only this insert, moves nothing and answers with the winner's transfer."""
    async with ctx.db.session.begin_nested():
        return await ctx.db.scalar(  # type: ignore[no-any-return]
            insert(TransferModel)
            .values(from_account_id=from_id, to_account_id=to_id, amount=value, idempotency_key=key)
            .returning(TransferModel)
        )


async def race_winner(ctx: Context, key: str | None, exc: IntegrityError) -> TransferModel:
    """The transfer a concurrent request inserted first with the same key, and has
    committed; ``exc`` again when the insert failed for another reason."""
    if key is None or getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
        raise exc
    winner = await transfer_by_key(ctx, key)
    if winner is None:
        raise exc
    return winner


async def set_balance(ctx: Context, account_id: int, balance: ColumnElement[Decimal]) -> None:
    await ctx.db.execute(
        update(AccountModel)
        .where(AccountModel.id == account_id)
        .values(balance=balance)
        .execution_options(synchronize_session=False)
    )


async def transfer_funds(info: Info, input: TransferFundsInput) -> TransferFundsPayload:
    ctx = info.context
    viewer = signed_in(ctx)
    from_id, to_id, value, key = transfer_input(input)
    source, target = await transfer_accounts(ctx, viewer, from_id, to_id)
    if key is not None and (earlier := await transfer_by_key(ctx, key)) is not None:
        return await replay(ctx, earlier, from_id, to_id, value)
    if source.balance < value:
        raise fail("amount", "Insufficient funds.", UserErrorCode.INSUFFICIENT_FUNDS)
    if target.balance + value > MAX_BALANCE:
        raise fail("amount", "The receiving account cannot hold that much.")

    try:
        transfer = await insert_transfer(ctx, from_id, to_id, value, key)
    except IntegrityError as exc:
        return await replay(ctx, await race_winner(ctx, key, exc), from_id, to_id, value)
    await set_balance(ctx, from_id, AccountModel.balance - value)
    await set_balance(ctx, to_id, AccountModel.balance + value)
    ctx.events.add(Topic.TRANSFER, [transfer.id])
    return await transfer_payload(ctx, transfer, from_id, to_id)


async def deposit_funds(info: Info, input: DepositFundsInput) -> DepositFundsPayload:
    ctx = info.context
    admin(ctx)
    errors: list[UserError] = []
    account_id = collect(errors, input_id, "accountId", input.account_id, "Account")
    value = collect(errors, amount, "amount", input.amount)
    raise_collected(errors)
    assert account_id is not None and value is not None

    account = (await lock_accounts(ctx, account_id)).get(account_id)
    if account is None:
        raise fail("accountId", "No such account.", UserErrorCode.NOT_FOUND)
    if account.balance + value > MAX_BALANCE:
        raise fail("amount", f"The balance cannot exceed {MAX_BALANCE}.")
    # No event: a deposit writes no transfer row, so no transferPosted subscriber sees it.
    await set_balance(ctx, account_id, AccountModel.balance + value)
    (account,) = await fresh_accounts(ctx, account_id)
    return DepositFundsPayload(account=account)  # type: ignore[arg-type]


@strawberry.type
class MoneyMutation:
    transfer_funds = atomic_mutation(transfer_funds, TransferFundsPayload)

    deposit_funds = atomic_mutation(deposit_funds, DepositFundsPayload, description="Admins only.")
