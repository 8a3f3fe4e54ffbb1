from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from gql_app.context import Info
from gql_app.fastpath import loaded
from gql_app.loaders import load_page
from gql_app.money import models
from gql_app.money.loaders import (
    TRANSFER_SORTING,
    AccountByIdLoader,
    TransferPageByAccountIdLoader,
)
from gql_app.node import Node, global_id
from gql_app.pagination import Connection
from gql_app.users.loaders import UserByIdLoader

if TYPE_CHECKING:
    from gql_app.users.types import User

UserType = Annotated["User", strawberry.lazy("gql_app.users.types")]


@strawberry.type(
    description="A wallet account. Its balance and transfers are private to its owner and admins."
)
class Account(Node):
    id: strawberry.ID = global_id("Account")
    currency: str = strawberry.field(description='ISO-4217 code, e.g. "USD".')

    owner: UserType = loaded(UserByIdLoader, "owner_id", UserType)

    @strawberry.field(
        description="Private: the owner and admins. Others (e.g. the other side of a "
        "transfer) get a FORBIDDEN error."
    )
    def balance(self, root: strawberry.Parent[models.Account], info: Info) -> Decimal:
        info.context.require_private(root.owner_id)
        return root.balance

    @strawberry.field(description="Transfers into or out of this account, newest first.")
    def transfers(
        self,
        root: strawberry.Parent[models.Account],
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Transfer]:
        info.context.require_private(root.owner_id)
        args = TRANSFER_SORTING.page_args(info, "Account.transfers", first, after, last, before)
        return load_page(info, TransferPageByAccountIdLoader, root.id, args)


@strawberry.type
class Transfer(Node):
    id: strawberry.ID = global_id("Transfer")
    amount: Decimal
    created_at: datetime

    from_: Account = loaded(AccountByIdLoader, "from_account_id", Account, name="from")

    to: Account = loaded(AccountByIdLoader, "to_account_id", Account)
