"""The money domain has no root query fields: accounts and transfers are reached
through ``User.accounts`` and ``node``."""

from __future__ import annotations

from gql_app.data.context import Info
from gql_app.money import models
from gql_app.money.loaders import AccountByIdLoader, TransferByIdLoader
from gql_app.relay.node import loaded_node, node_type

fetch_account = loaded_node(
    "Account", AccountByIdLoader, lambda ctx, account: ctx.can_see_private(account.owner_id)
)


@node_type(
    "Transfer",
    1,
    TransferByIdLoader,
    {
        TransferByIdLoader: (
            ("from_account_id", AccountByIdLoader),
            ("to_account_id", AccountByIdLoader),
        )
    },
)
async def fetch_transfer(info: Info, pk: int) -> models.Transfer | None:
    """A transfer is visible to admins and to the owners of either account."""
    transfer = await info.context.loaders.get(TransferByIdLoader, info).load(pk)
    if transfer is None:
        return None
    accounts = await info.context.loaders.get(AccountByIdLoader, info).load_many(
        [transfer.from_account_id, transfer.to_account_id]
    )
    if any(a is not None and info.context.can_see_private(a.owner_id) for a in accounts):
        return transfer
    return None
