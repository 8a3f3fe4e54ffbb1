"""The typed per-request context every resolver receives as ``info.context``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from gql_app.data.db import RequestDB
from gql_app.data.events import Events
from gql_app.data.loaders import LoaderRegistry
from gql_app.data.replica import Replica
from gql_app.errors import Forbidden, Unauthenticated
from gql_app.settings import Settings

if TYPE_CHECKING:
    from gql_app.data.driver_reads import ReadDB


@dataclass(eq=False)
class Context:
    request: Request | None
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    """The primary's: every mutation, and queries the replica does not serve."""
    bearer_token: str | None = None
    authenticate: Callable[[Context], Awaitable[None]] | None = None
    """Resolves ``bearer_token`` to ``viewer`` inside the operation's transaction."""
    viewer: Any = None
    """The signed-in user, or None: a users row in queries, a ``User`` object in mutations."""
    request_id: str = ""
    read_engine: AsyncEngine | None = None
    """The primary's engine, when query operations run on the driver (``driver_reads``);
    None: on a session."""
    replica: Replica | None = None
    """The read replica, when one is configured and this context may read it
    (``data.transaction.begin_reads`` decides per operation)."""
    _db: RequestDB | None = None
    loaders: LoaderRegistry = field(init=False)
    events: Events = field(init=False)
    """What this request's mutation fields changed, sent at commit (``data.events``)."""

    def __post_init__(self) -> None:
        self.loaders = LoaderRegistry(self)
        self.events = Events()

    def join(self, shared: Context) -> None:
        """Work inside ``shared``'s operation: its database connection, and its loaders
        for those that do not read the viewer (a live event batch: one context per
        viewer, one statement per field path for them all)."""
        self._db = shared._db
        self.loaders = LoaderRegistry(self, shared=shared.loaders)

    @property
    def db(self) -> RequestDB:
        if self._db is None:
            raise RuntimeError("no database session outside an operation")
        return self._db

    def open_db(self, session: AsyncSession, *, fresh: bool = False) -> RequestDB:
        self._db = RequestDB(session, fresh=fresh)
        return self._db

    def open_read_db(self, db: ReadDB) -> None:
        """A query operation's driver connection. It has RequestDB's Core reads
        (``rows``, ``execute``) and refuses ORM use at run time."""
        self._db = cast(RequestDB, db)

    @property
    def orm(self) -> bool:
        """Whether ``db`` has an ORM session (mutations), or only Core reads (queries)."""
        return isinstance(self._db, RequestDB)

    @property
    def visibility(self) -> Any:
        """All that visibility rules read of the viewer: "admin", their id, or None."""
        if self.viewer is None:
            return None
        return "admin" if self.viewer.is_admin else self.viewer.id

    @property
    def is_admin(self) -> bool:
        return self.viewer is not None and self.viewer.is_admin

    def require_viewer(self) -> Any:
        if self.viewer is None:
            raise Unauthenticated()
        return self.viewer

    def can_see_private(self, owner_id: int) -> bool:
        """The owner themself and admins see private data."""
        return self.viewer is not None and (self.viewer.is_admin or self.viewer.id == owner_id)

    def require_private(self, owner_id: int) -> None:
        if not self.can_see_private(owner_id):
            raise Forbidden()


Info: TypeAlias = strawberry.Info[Context, Any]
