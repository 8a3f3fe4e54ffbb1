"""Live money: transfers into or out of an account."""

from __future__ import annotations

from collections.abc import AsyncIterator

import strawberry

from gql_app.data.context import Info
from gql_app.data.events import Topic
from gql_app.engine.live import Feed
from gql_app.errors import AppError, ErrorCode, Forbidden
from gql_app.money.queries import fetch_account, fetch_transfer
from gql_app.money.types import Transfer
from gql_app.relay.ids import decode_id_of

TRANSFERS = Feed(
    Topic.TRANSFER,
    fetch_transfer,
    lambda transfer: (transfer.from_account_id, transfer.to_account_id),
)


@strawberry.type
class MoneySubscription:
    @strawberry.subscription(
        description="Transfers into or out of this account. The account's owner and "
        "admins only: UNAUTHENTICATED without sign-in, FORBIDDEN for another's account."
    )
    async def transfer_posted(
        self, info: Info, account_id: strawberry.ID
    ) -> AsyncIterator[Transfer]:
        ctx = info.context
        ctx.require_viewer()
        account = await fetch_account(info, decode_id_of(account_id, "Account", "accountId"))
        if account is None:
            if ctx.is_admin:
                raise AppError("No account with this id.", ErrorCode.NOT_FOUND)
            raise Forbidden("You may only follow your own accounts.")
        return TRANSFERS.watch([account.id])
