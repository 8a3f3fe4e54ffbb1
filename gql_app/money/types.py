from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import strawberry

from gql_app.data.context import Info
from gql_app.engine.columns import rows_of
from gql_app.engine.fields import columns, loaded, private_to
from gql_app.money import models
from gql_app.money.loaders import AccountByIdLoader, TransferPageByAccountIdLoader
from gql_app.relay.connection import Connection, OrderDirection, Sorting, connection
from gql_app.relay.node import Node, global_id
from gql_app.users.lazy import UserType
from gql_app.users.loaders import UserByIdLoader


class TransferOrderField(enum.Enum):  # not exposed: transfers come newest first
    CREATED_AT = "created_at"


TRANSFER_ORDER = Sorting(TransferOrderField, models.Transfer, OrderDirection.DESC)


@rows_of(models.Account, always=("owner_id",))  # Account and Transfer nodes check owners
@strawberry.type(
    description="A wallet account. Its balance and transfers are private to its owner and admins."
)
class Account(Node):
    id: strawberry.ID = global_id("Account")
    currency: str = strawberry.field(description='ISO-4217 code, e.g. "USD".')

    owner: UserType = loaded(UserByIdLoader, "owner_id", UserType)

    @strawberry.field(
        description="Private: the owner and admins. Others (e.g. the other side of a "
        "transfer) get a FORBIDDEN error.",
        metadata=columns("owner_id", "balance"),
    )
    def balance(self, root: strawberry.Parent[models.Account], info: Info) -> Decimal:
        info.context.require_private(root.owner_id)
        return root.balance

    transfers: Connection[Transfer] = connection(
        TransferPageByAccountIdLoader,
        TRANSFER_ORDER,
        order_by=False,
        guard=private_to("owner_id"),
        description="Transfers into or out of this account, newest first.",
    )


@rows_of(models.Transfer, always=("from_account_id", "to_account_id"))  # fetch_transfer
@strawberry.type
class Transfer(Node):
    id: strawberry.ID = global_id("Transfer")
    amount: Decimal
    created_at: datetime

    from_: Account = loaded(AccountByIdLoader, "from_account_id", Account, name="from")

    to: Account = loaded(AccountByIdLoader, "to_account_id", Account)
