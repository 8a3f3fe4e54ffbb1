from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_

from gql_app.data.loaders import ByIdLoader, ListByColumnLoader, PageLoader
from gql_app.money.models import Account, Transfer


class AccountByIdLoader(ByIdLoader[Account], model=Account): ...


class TransferByIdLoader(ByIdLoader[Transfer], model=Transfer): ...


class AccountsByOwnerIdLoader(ListByColumnLoader[Account], column=Account.owner_id): ...


class TransferPageByAccountIdLoader(PageLoader[Transfer], model=Transfer):
    """Transfers into or out of an account: the page reads each side through its own
    index ((from|to)_account_id, created_at, id), LIMITed, and merges the two (a
    transfer is never from and to the same account: no row is in both)."""

    def children(self, parent: ColumnElement[Any]) -> tuple[Any, list[ColumnElement[bool]]]:
        return Transfer, [or_(Transfer.from_account_id == parent, Transfer.to_account_id == parent)]

    def branches(self, parent: ColumnElement[Any]) -> list[tuple[Any, list[ColumnElement[bool]]]]:
        return [
            (Transfer, [Transfer.from_account_id == parent]),
            (Transfer, [Transfer.to_account_id == parent]),
        ]
