"""Declarative base, engine and sessionmaker factories, and the per-request session guard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import uuid4

from sqlalchemy import BigInteger, DateTime, Identity, Index, MetaData, bindparam, event, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Result
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter

from gql_app.errors import database_fault
from gql_app.settings import Settings

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def trigram_index(table: str, column: str) -> Index:
    """``ix_<table>_<column>_trgm``: a GIN index of ``column``'s trigrams (pg_trgm), which
    serves ``ILIKE '%text%'`` (``pages.contains``) and ``LIKE`` without a full scan."""
    return Index(
        f"ix_{table}_{column}_trgm",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
    )


PrimaryKey = Annotated[int, mapped_column(BigInteger, Identity(), primary_key=True)]
"""``id: Mapped[PrimaryKey]``: a bigint identity primary key."""
CreatedAt = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
"""``created_at: Mapped[CreatedAt]``: when the row was inserted, set by the database."""


T = TypeVar("T")
C = TypeVar("C")
BEGIN_ATTEMPTS = 3


def async_url(url: str) -> str:
    """Normalise a libpq-style URL to SQLAlchemy's asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def asyncpg_dsn(url: str) -> str:
    """A libpq or SQLAlchemy URL as the DSN ``asyncpg.connect`` takes."""
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    target = url or settings.database_url
    if not target:
        raise RuntimeError("no database URL: set DATABASE_URL or start the embedded server")
    engine = create_async_engine(
        async_url(target),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
        # Errors (and so logs) never carry parameter values: they may hold secrets.
        hide_parameters=True,
        connect_args=connect_args(settings),
    )
    event.listen(engine.sync_engine.pool, "checkout", reject_closed_connection)
    return engine


def reject_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Never hand out a connection the server has closed (terminated backend, restart).

    asyncpg notices the server closing the socket without a round trip, so this
    costs nothing, unlike SQLAlchemy's pre-ping (three round trips per checkout
    here). The pool discards the connection and takes another. A close not yet
    read when the connection is checked out shows at the operation's BEGIN
    (``gql_app.data.transaction.begin``), which does the same. Set
    ``GQL_POOL_PRE_PING=true`` as well where a dead peer is never signalled
    (e.g. a silent firewall between the app and PostgreSQL).
    """
    raw = getattr(dbapi_connection, "_connection", None)
    if raw is not None and raw.is_closed():
        raise DisconnectionError("the server closed this connection")


async def began(
    take: Callable[[], Awaitable[C]],
    start: Callable[[C], Awaitable[None]],
    discard: Callable[[C], Awaitable[None]],
) -> C:
    """A connection (or session) from the pool whose BEGIN went through.

    BEGIN goes out when the operation starts rather than with its first
    statement: a connection whose backend was just terminated can still look
    open at checkout (the server's farewell not yet read) and fails its first
    command. Failing here, before any resolver ran, it is discarded and
    another one taken, as the pool does with connections it sees closed. BEGIN
    is sent either way, so this costs a round trip only to operations that run
    no statement.
    """
    for attempt in range(1, BEGIN_ATTEMPTS + 1):
        connection = await take()
        try:
            await start(connection)
        except BaseException as exc:
            await discard(connection)
            if (
                attempt == BEGIN_ATTEMPTS
                or not isinstance(exc, Exception)
                or database_fault(exc) is None
            ):
                raise
            log.warning("discarded a broken connection at BEGIN: %s", type(exc).__name__)
        else:
            return connection
    raise AssertionError("unreachable")


def unique_statement_name() -> str:
    return f"__asyncpg_{uuid4().hex}__"


def connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg's connect() arguments: timeouts, caches, session settings."""
    cache = 0 if settings.pgbouncer else settings.prepared_statement_cache_size
    args: dict[str, Any] = {
        # asyncpg's own default is 60 s: an unreachable database would hold
        # each request (and /ready) that long.
        "timeout": settings.connect_timeout_s,
        # asyncpg's statement cache and SQLAlchemy's (every statement goes
        # through asyncpg's prepare(), cached by the dialect).
        "statement_cache_size": cache,
        "prepared_statement_cache_size": cache,
        "server_settings": {"application_name": "gql_app"},
    }
    if settings.pgbouncer:
        # Transaction pooling: each transaction may run on another server
        # connection, so no prepared statement is reused after its transaction
        # (caches off), and names are unique: asyncpg numbers them per client
        # connection, and two clients' "__asyncpg_stmt_1__" would meet on one
        # server connection. PgBouncer refuses (or, with ignore_startup_parameters,
        # drops) other startup parameters: set them with ALTER ROLE ... SET.
        args["prepared_statement_name_func"] = unique_statement_name
    else:
        args["server_settings"].update(
            {
                "statement_timeout": str(settings.statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
                # Short OLTP statements: the JIT only adds latency.
                "jit": "off",
            }
        )
    return args


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def id_array(values: Sequence[int], name: str = "ids") -> BindParameter[Any]:
    """All keys as one array parameter: any number of keys, one bind slot."""
    return bindparam(name, list(values), type_=ARRAY(BigInteger), unique=True)


def keys_param(element_type: Any = None) -> BindParameter[Any]:
    """``:keys``, the array parameter of a statement built once and run with many key sets."""
    return bindparam("keys", type_=ARRAY(element_type if element_type is not None else BigInteger))


class GuardedDB:
    """A request's database access, serialized.

    GraphQL resolves sibling fields concurrently; a connection (and a session on
    it) must never run two statements at once. Every statement of a request
    goes through here. It also knows when the request has database work under
    way, so loader batches can wait for it (see ``gql_app.data.loaders.BatchScheduler``).
    """

    __slots__ = ("_busy", "_closed", "_idle", "_lock")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._busy = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock

    @property
    def busy(self) -> bool:
        return self._busy > 0

    def close(self) -> None:
        """The operation is over: any later statement is refused."""
        self._closed = True

    def expect(self, statements: int) -> None:
        """The operation's plan sends at most ``statements`` statements. A session's
        transaction has begun already: nothing to decide (``ReadDB`` decides)."""

    def enter(self) -> None:
        if self._closed:
            raise RuntimeError("the request's database session is closed")
        self._busy += 1
        self._idle.clear()

    def leave(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def guarded(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` as the connection's only statement; the request counts
        as busy from the call (waiting included) until it is done."""
        self.enter()
        try:
            async with self._lock:
                return await work()
        finally:
            self.leave()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class RequestDB(GuardedDB):
    """A mutation's one AsyncSession (ORM and Core), guarded.

    Query operations use ``gql_app.data.driver_reads.ReadDB``, the same interface for
    Core reads, on the driver connection.
    """

    __slots__ = ("_connection", "fresh", "session")

    def __init__(self, session: AsyncSession, *, fresh: bool = False) -> None:
        super().__init__()
        self.session = session
        # In a mutation, rows re-read after a Core UPDATE must overwrite the
        # objects already in the identity map (``populate_existing``).
        self.fresh = fresh
        self._connection: AsyncConnection | None = None

    def _prepare(self, statement: Executable) -> Executable:
        if self.fresh:
            return statement.execution_options(populate_existing=True)
        return statement

    async def execute(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> Result[Any]:
        return await self.guarded(lambda: self.session.execute(self._prepare(statement), params))

    async def rows(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """Run a Core statement on the session's connection (same transaction) -> its rows.

        For reads that want rows, not ORM objects: it skips the ORM's execution
        layer (identity map, compile state, result wrapping), a good share of a
        loader batch's CPU.
        """
        return await self.guarded(lambda: self._rows(statement, params))

    async def _rows(self, statement: Executable, params: dict[str, Any] | None) -> list[Any]:
        if self._connection is None:
            self._connection = await self.session.connection()
        return (await self._connection.execute(statement, params)).all()  # type: ignore[return-value]

    async def scalars(self, statement: Executable) -> list[Any]:
        result = await self.guarded(lambda: self.session.scalars(self._prepare(statement)))
        return list(result.all())

    async def scalar(self, statement: Executable) -> Any:
        return await self.guarded(lambda: self.session.scalar(self._prepare(statement)))

    async def refresh(self, obj: Any) -> None:
        """Re-read an ORM object's row (after a Core UPDATE or server defaults)."""
        await self.guarded(lambda: self.session.refresh(obj))

    async def flush(self) -> None:
        await self.guarded(self.session.flush)


class NamedRow(tuple[Any, ...]):
    """A row by position and by column name (``_keys``, set by each row class).

    Row classes add a property per column, so a row reads by attribute too."""

    __slots__ = ()
    _keys: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._keys.index(key))
        return tuple.__getitem__(self, key)
