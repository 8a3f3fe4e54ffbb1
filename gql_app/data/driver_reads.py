"""Replaces the ORM session for query operations: their Core statements, compiled by
SQLAlchemy, run on the asyncpg connection underneath (``ReadDB``), in one
REPEATABLE READ, READ ONLY transaction, or, when the operation's plan sends at
most one statement, in none (a statement is its own snapshot). Mutations keep the
session (``RequestDB``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from operator import itemgetter
from typing import Any

import asyncpg
from cachetools import LRUCache
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, PoolProxiedConnection
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn

from gql_app.data.db import BEGIN_ATTEMPTS, GuardedDB, NamedRow
from gql_app.errors import ErrorCode, database_fault
from gql_app.tracing import end_statement

log = logging.getLogger(__name__)

BEGIN_READ_ONLY = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


class Row(asyncpg.Record):
    """A result row: by position, by column name (``row["id"]``), and by attribute."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_RECORD_NAMES = frozenset(dir(Row))


class StatementPlan:
    """One statement object, compiled once: its SQL, its arguments, its row class.

    SQLAlchemy's asyncpg dialect compiles it (the SQL sent is the same text); bound
    values go through the statement's bind processors, and result columns whose
    type has a result processor (an Enum, say) through it.
    """

    __slots__ = ("args", "cacheable", "converters", "record_class", "result_types", "slots", "sql")

    def __init__(self, statement: Executable, dialect: Dialect, params: dict[str, Any]) -> None:
        compiled: Any = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        values = compiled.construct_params(params, escape_names=False)
        sql, positions = compiled.string, compiled.positiontup
        processors = compiled._bind_processors
        self.cacheable = True
        if compiled.post_compile_params or compiled.literal_execute_params:
            # IN lists and literal-rendered values: expanded as SQLAlchemy's own
            # execution does; reusable unless a per-execution value is expanded.
            expanded = compiled._process_parameters_for_postcompile(values)
            sql, positions = expanded.statement, expanded.positiontup
            processors, values = expanded.processors, expanded.parameters
            self.cacheable = not any(
                param.key in params
                for param in (*compiled.post_compile_params, *compiled.literal_execute_params)
            )
        self.sql: str = sql
        self.args: list[Any] = []
        self.slots: list[tuple[int, str, Any]] = []  # arguments given per execution
        for index, name in enumerate(positions or ()):
            processor = processors.get(name)
            if name in params:
                self.slots.append((index, name, processor))
                self.args.append(None)
            else:
                value = values[name]
                self.args.append(processor(value) if processor is not None else value)
        self.result_types = [entry.type for entry in compiled._result_columns]
        self.record_class: type[Any] | None = None
        self.converters: list[Any] | None = None

    def arguments(self, params: dict[str, Any] | None) -> list[Any]:
        if not self.slots:
            return self.args
        args = list(self.args)
        assert params is not None
        for index, name, processor in self.slots:
            value = params[name]
            args[index] = processor(value) if processor is not None else value
        return args

    async def describe(self, driver: asyncpg.Connection, dialect: Dialect) -> None:
        """Learn the result columns (names, types) once: the row class and converters."""
        prepared = await driver.prepare(self.sql)
        attributes = prepared.get_attributes()
        names = [attribute.name for attribute in attributes]
        namespace: dict[str, Any] = {"__slots__": ()}
        for index, name in enumerate(names):
            if name.isidentifier() and name not in _RECORD_NAMES and name not in namespace:
                namespace[name] = property(itemgetter(index))
        converters = None
        if len(self.result_types) == len(attributes):
            found = [
                kind._cached_result_processor(dialect, attribute.type.oid)
                for kind, attribute in zip(self.result_types, attributes, strict=True)
            ]
            if any(found):
                converters = found
        if converters is None:
            self.record_class = type("Row", (Row,), namespace)
        else:
            namespace["_keys"] = tuple(names)
            self.record_class = type("Row", (ConvertedRow,), namespace)
        self.converters = converters


class ConvertedRow(NamedRow):
    """A row whose values went through result processors (immutable, like a record)."""

    __slots__ = ()


PLANS: LRUCache[int, tuple[Executable, tuple[str, ...], StatementPlan]] = LRUCache(maxsize=2048)


def plan_for(statement: Executable, dialect: Dialect, params: dict[str, Any]) -> StatementPlan:
    """The statement's plan; statement objects built once (loaders, page shapes) reuse it."""
    names = tuple(params)
    found = PLANS.get(id(statement))
    if found is not None and found[0] is statement and found[1] == names:
        return found[2]
    plan = StatementPlan(statement, dialect, params)
    if not plan.cacheable:
        return plan
    PLANS[id(statement)] = (statement, names, plan)
    return plan


Lent = tuple["KeptConnections", PoolProxiedConnection, float]
"""A connection, where it goes back to, and when it left the pool (``KeptConnections.take``)."""


class KeptConnections:
    """The connections query operations gave back, kept for the next one (last in,
    first out) instead of going back to SQLAlchemy's pool, whose checkout and
    checkin each run in a greenlet (about 30 µs of CPU per operation, a tenth of
    a one-statement query's).

    The pool still lends every connection and gets each back: at most ``keep``
    wait here (half of ``GQL_POOL_SIZE``, so mutations, which take theirs from
    the pool, always find the other half and the overflow), and one that left the
    pool more than ``LEASE_S`` ago goes back at its next release, so the pool's
    recycle, pre-ping, closed-connection guard and sizes still apply within a
    second.

    A query that finds none idle waits in the pool's queue (first come, first
    served) while the pool is exhausted: as long as one waits there, connections
    given back go to the pool, so a newcomer never takes one from the keeper ahead
    of it (under more concurrent queries than connections, the keeper would
    otherwise serve the newest and starve the queue until its leases ended).
    """

    LEASE_S = 1.0

    __slots__ = ("__weakref__", "_idle", "engine", "keep", "waiting")

    def __init__(self, engine: AsyncEngine, keep: int) -> None:
        self.engine = engine
        self.keep = keep
        self._idle: list[tuple[PoolProxiedConnection, float]] = []
        self.waiting = 0
        """Takers in the pool's queue (or checking out of it)."""

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def take(self) -> Lent:
        """An idle connection still open, else one from the pool."""
        idle = self._idle
        while idle:
            proxied, since = idle.pop()
            if not proxied.driver_connection.is_closed():  # type: ignore[union-attr]
                return self, proxied, since
            await discard(proxied)  # the server closed it (restart, terminated backend)
        self.waiting += 1
        try:
            return self, await self.engine.raw_connection(), time.monotonic()
        finally:
            self.waiting -= 1

    async def give(self, proxied: PoolProxiedConnection, since: float) -> None:
        """A connection whose operation ended cleanly (no transaction open): to the
        pool while a taker waits there, else kept (room and lease permitting)."""
        if (
            len(self._idle) < self.keep
            and time.monotonic() - since < self.LEASE_S
            and not (self.waiting and self._pool_has_room())
        ):
            self._idle.append((proxied, since))
        else:
            await greenlet_spawn(proxied.close)

    def _pool_has_room(self) -> bool:
        """Whether the pool takes a connection back without closing it: its queue
        holds ``size`` (beyond them, an overflow connection given back is closed,
        which under a burst of releases would reopen one per waiter)."""
        pool: Any = self.engine.sync_engine.pool
        return bool(pool.checkedin() < pool.size())

    async def release(self) -> None:
        """Every idle connection back to the pool, and from now on each one given
        (before the engine is disposed)."""
        self.keep = 0
        idle, self._idle = self._idle, []
        for proxied, _ in idle:
            await greenlet_spawn(proxied.close)


_KEPT: weakref.WeakKeyDictionary[Pool, KeptConnections] = weakref.WeakKeyDictionary()


def kept(engine: AsyncEngine) -> KeptConnections:
    """``engine``'s kept connections (one keeper per pool)."""
    pool = engine.sync_engine.pool
    found = _KEPT.get(pool)
    if found is None:
        size = pool.size() if hasattr(pool, "size") else 0  # a NullPool keeps none
        found = _KEPT[pool] = KeptConnections(engine, keep=size // 2)
    return found


async def discard(proxied: PoolProxiedConnection) -> None:
    """Close a connection and take it out of the pool."""
    driver = proxied.driver_connection
    if driver is not None:
        driver.terminate()
    await greenlet_spawn(proxied.invalidate)
    await greenlet_spawn(proxied.close)


Connect = Callable[[], Awaitable[Lent]]
"""Where a ``ReadDB``'s connection comes from: its first, and another if its first
command finds it broken."""

PENDING, BEGUN, SINGLE, SENT = range(4)
"""A ``ReadDB``: nothing sent yet; in its transaction; one statement expected, none
sent; that statement sent."""


class ReadDB(GuardedDB):
    """A query operation's connection, in one read-only transaction begun with its
    first statement, or in none when the operation's plan says one statement is
    all it sends (``expect``)."""

    __slots__ = (
        "_connect",
        "_dispatch",
        "dialect",
        "driver",
        "gone",
        "kept",
        "proxied",
        "since",
        "state",
    )

    def __init__(self, lent: Lent, connect: Connect) -> None:
        super().__init__()
        self._attach(lent)
        self._connect = connect
        self.state = PENDING
        self.gone = False

    def _attach(self, lent: Lent) -> None:
        self.kept, self.proxied, self.since = lent
        self.driver: asyncpg.Connection = self.proxied.driver_connection  # type: ignore[assignment]
        engine = self.kept.engine
        self.dialect = engine.dialect
        self._dispatch = engine.sync_engine.dispatch

    async def begin(self) -> None:
        await self.driver.execute(BEGIN_READ_ONLY)

    def expect(self, statements: int) -> None:
        """The plan sends at most ``statements``: with one (or none) and nothing sent
        yet, no transaction is begun."""
        if self.state == PENDING and statements <= 1:
            self.state = SINGLE

    @property
    def session(self) -> Any:
        raise RuntimeError("a query operation has no ORM session; read with Core statements")

    async def rows(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Any]:
        return await self.guarded(lambda: self._read(statement, params))

    async def execute(self, statement: Executable, params: dict[str, Any] | None = None) -> Rows:
        return Rows(await self.rows(statement, params))

    async def _read(self, statement: Executable, params: dict[str, Any] | None) -> list[Any]:
        state = self.state
        if state == BEGUN:
            return await self._fetch(statement, params)
        if state == SINGLE:
            self.state = SENT
            return await self._first(lambda: self._fetch(statement, params))
        if state == PENDING:
            await self._first(self.begin)
            self.state = BEGUN
            return await self._fetch(statement, params)
        raise RuntimeError("an operation planned as one statement sent a second one")

    async def _first(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """The connection's first command, on another connection if this one is
        found broken (as ``began`` does with BEGIN)."""
        for attempt in range(1, BEGIN_ATTEMPTS + 1):
            try:
                return await command()
            except Exception as exc:
                broken = self.driver.is_closed()
                if (
                    attempt == BEGIN_ATTEMPTS
                    or self._connect is None
                    or not (broken or database_fault(exc) is ErrorCode.SERVICE_UNAVAILABLE)
                ):
                    raise
                log.warning("discarded a broken connection at its first command: %r", exc)
                self.gone = True
                await discard(self.proxied)
                self._attach(await self._connect())
                self.gone = False
        raise AssertionError("unreachable")

    async def _fetch(self, statement: Executable, params: dict[str, Any] | None) -> list[Any]:
        plan = plan_for(statement, self.dialect, params or {})
        if plan.record_class is None:
            await plan.describe(self.driver, self.dialect)
        args = plan.arguments(params)
        # The engine's cursor listeners see every statement (the pool's proxy as
        # ``conn``, no cursor or context): statement counts and the slow-query log.
        dispatch = self._dispatch
        dispatch.before_cursor_execute(self.proxied, None, plan.sql, args, None, False)
        try:
            records = await self.driver.fetch(
                plan.sql,
                *args,
                record_class=plan.record_class if plan.converters is None else Row,
            )
        except BaseException:
            end_statement(self.proxied, failed=True)  # its trace span, if any
            raise
        dispatch.after_cursor_execute(self.proxied, None, plan.sql, args, None, False)
        converters = plan.converters
        if converters is None:
            return records
        row = plan.record_class
        assert row is not None
        return [
            row(
                value if convert is None else convert(value)
                for convert, value in zip(converters, record, strict=True)
            )
            for record in records
        ]

    async def release(self, clean: bool) -> None:
        """End the transaction, if one was begun, and give the connection back
        (discarded if not ``clean``)."""
        if self.gone:
            return
        if self.driver.is_closed():
            clean = False  # broken at its statement: not back into the pool
        if clean and self.state == BEGUN:
            try:
                await self.driver.execute("ROLLBACK")
            except Exception as exc:
                log.warning("discarded a connection at ROLLBACK: %s", type(exc).__name__)
                clean = False
        if not clean:
            await discard(self.proxied)
        else:
            await self.kept.give(self.proxied, self.since)


class Rows:
    """``ReadDB.execute``'s result: the part of SQLAlchemy's ``Result`` queries use."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = rows

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise ValueError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]


async def begin_read(connect: Connect) -> ReadDB:
    """A connection from ``connect`` with nothing sent yet: BEGIN goes with its first
    statement, or never (``ReadDB.expect``).

    SQLAlchemy's pool lends the connections (``KeptConnections``): its sizes,
    timeouts, pre-ping, closed-connection guard and metrics apply.
    """
    return ReadDB(await connect(), connect)
