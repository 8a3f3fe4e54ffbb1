"""Replaces the ORM session for query operations: their Core statements, compiled by
SQLAlchemy, run on the asyncpg connection underneath (``ReadDB``), in one
REPEATABLE READ, READ ONLY transaction, or, when the operation's plan sends at
most one statement, in none (a statement is its own snapshot). Mutations keep the
session (``RequestDB``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from operator import itemgetter
from typing import Any

import asyncpg
from cachetools import LRUCache
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn

from gql_app.data.db import BEGIN_ATTEMPTS, GuardedDB, NamedRow, began
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


Connect = Callable[[], Awaitable[tuple[PoolProxiedConnection, AsyncEngine]]]
"""Another connection (and its engine) for a ``ReadDB`` whose first command found
its connection broken."""

PENDING, BEGUN, SINGLE, SENT = range(4)
"""A lazy ``ReadDB``: nothing sent yet; in its transaction; one statement expected,
none sent; that statement sent."""


class ReadDB(GuardedDB):
    """A query operation's connection: one read-only transaction on the driver, or,
    lazily begun (``begin_read(lazy=True)``), BEGIN only with the first statement
    of an operation whose plan did not say one statement is all it sends."""

    __slots__ = ("_connect", "_dispatch", "dialect", "driver", "gone", "proxied", "state")

    def __init__(
        self, proxied: PoolProxiedConnection, engine: AsyncEngine, connect: Connect | None = None
    ) -> None:
        super().__init__()
        self._attach(proxied, engine)
        self._connect = connect
        self.state = BEGUN if connect is None else PENDING
        self.gone = False

    def _attach(self, proxied: PoolProxiedConnection, engine: AsyncEngine) -> None:
        self.proxied = proxied
        self.driver: asyncpg.Connection = proxied.driver_connection  # type: ignore[assignment]
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
                await self._drop()
                self._attach(*await self._connect())
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
            await self._drop()
        else:
            await greenlet_spawn(self.proxied.close)

    async def _drop(self) -> None:
        """Close the connection and take it out of the pool."""
        self.driver.terminate()
        await greenlet_spawn(self.proxied.invalidate)
        await greenlet_spawn(self.proxied.close)


class Rows:
    """``ReadDB.execute``'s result: the part of SQLAlchemy's ``Result`` queries use."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = rows

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise ValueError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]


async def begin_read(engine: AsyncEngine, connect: Connect | None = None) -> ReadDB:
    """A connection from the pool, in a read-only REPEATABLE READ transaction (``began``),
    or, given ``connect`` (where another connection comes from if this one is found
    broken), with nothing sent yet: BEGIN goes with its first statement, or never
    (``ReadDB.expect``).

    SQLAlchemy's pool still lends and takes back the connections: its sizes,
    timeouts, pre-ping, closed-connection guard and metrics apply.
    """
    if connect is not None:
        proxied, chosen = await connect()
        return ReadDB(proxied, chosen, connect)

    async def take() -> ReadDB:
        return ReadDB(await engine.raw_connection(), engine)

    async def discard(db: ReadDB) -> None:
        await db.release(clean=False)

    return await began(take, ReadDB.begin, discard)
