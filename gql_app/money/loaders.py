from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_

from gql_app.data.loaders import ByIdLoader, ListByColumnLoader, PageLoader
from gql_app.money.models import Account, Transfer


class AccountByIdLoader(ByIdLoader[Account], model=Account): ...


class TransferByIdLoader(ByIdLoader[Transfer], model=Transfer): ...


class AccountsByOwnerIdLoader(ListByColumnLoader[Account], column=Account.owner_id): ...


class TransferPageByAccountIdLoader(PageLoader[Transfer], model=Transfer):
    """Transfers into or out of an account."""

    def children(self, parent: ColumnElement[Any]) -> tuple[Any, list[ColumnElement[bool]]]:
        return Transfer, [or_(Transfer.from_account_id == parent, Transfer.to_account_id == parent)]
