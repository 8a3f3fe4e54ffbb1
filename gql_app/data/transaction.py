"""The transaction boundary, drawn once: ``operation`` for the whole operation (a
query in one REPEATABLE READ, READ ONLY snapshot, or none when its plan sends at
most one statement, ``ReadDB.expect``; a mutation in one read-write transaction)
and ``atomic`` for each mutation field (a savepoint). The request's events
(``data.events``) follow the same boundary: a field that rolls back drops its
own, and a mutation sends the rest with its commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar, cast

from graphql import ExecutionResult, GraphQLError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gql_app.data.context import Context
from gql_app.data.db import GuardedDB, began
from gql_app.data.driver_reads import Connect, Lent, ReadDB, begin_read, kept
from gql_app.data.events import NOTIFY
from gql_app.errors import ErrorCode, UserError, UserFailure, database_fault
from gql_app.tracing import sql_origin

log = logging.getLogger(__name__)
P = TypeVar("P")


class Operation:
    """One operation's transaction: the fault that kept it from starting, or the
    result to commit (a failed commit rewrites it in place)."""

    __slots__ = ("fault", "result")

    def __init__(self) -> None:
        self.fault: Exception | None = None
        self.result: ExecutionResult | None = None

    def unavailable(self) -> ExecutionResult:
        """No connection (pool exhausted, database down): the operation fails like a
        root field, ``data: null`` and one error that format_error codes
        SERVICE_UNAVAILABLE / TIMEOUT. Raised instead, it would be a request error:
        no ``data``, and HTTP 400, the client's fault."""
        return ExecutionResult(
            data=None,
            errors=[GraphQLError("The database is unavailable.", original_error=self.fault)],
        )


@contextlib.asynccontextmanager
async def operation(ctx: Context, read_only: bool) -> AsyncIterator[Operation]:
    """Begin, authenticate, run the body, then roll back (query) or commit (mutation).

    Used by the ``Transaction`` extension and by the query lane, so both paths
    draw the boundary here and nowhere else. Queries read where ``begin_reads``
    says (the replica or the primary); mutations write the primary.
    """
    op = Operation()
    if read_only:
        async with read_operation(ctx, op):
            yield op
        return
    try:
        session = await begin(ctx.sessionmaker, read_only=False)
        try:
            db = ctx.open_db(session, fresh=True)
            if ctx.authenticate is not None:
                await authenticate(ctx)
        except BaseException:
            await session.close()
            raise
    except Exception as exc:
        if database_fault(exc) is None:
            raise
        op.fault = exc
        yield op
        return
    async with session:
        yield op
        async with settled(ctx, db):
            await commit(ctx, session, op)


async def commit(ctx: Context, session: AsyncSession, op: Operation) -> None:
    """Send the events and commit; a refused commit rewrites the result (no write
    is reported as done). A committed writer reads the primary until the replica
    shows its commit (``Replica.wrote``)."""
    try:  # before the response exists: a failed commit reports no write as done
        await notify(ctx, session)
        await session.commit()
    except Exception:  # the database refused: nothing of this operation persists
        log.exception("commit failed", extra={"request_id": ctx.request_id})
        await session.rollback()
        if op.result is not None:
            op.result.data = None
            op.result.errors = [
                GraphQLError(
                    "The operation could not be committed; none of its changes were saved.",
                    extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR.value},
                )
            ]
        return
    if ctx.replica is not None:
        ctx.replica.wrote(ctx.bearer_token)


async def authenticate(ctx: Context) -> None:
    """The viewer's lookup (its statements are "SQL viewer" in traces)."""
    assert ctx.authenticate is not None
    token = sql_origin.set("viewer")
    try:
        await ctx.authenticate(ctx)
    finally:
        sql_origin.reset(token)


async def notify(ctx: Context, session: AsyncSession) -> None:
    """The operation's events, in one statement just before COMMIT: NOTIFY is
    transactional, so they are delivered if and only if the commit succeeds, in
    commit order. Runs under ``settled``, which holds the request's guard."""
    if ctx.events:
        payloads = ctx.events.payloads()
        ctx.events.discard()
        token = sql_origin.set("notify")
        try:
            await session.execute(NOTIFY, {"payloads": payloads})
        finally:
            sql_origin.reset(token)


class Reads:
    """A query operation's read-only transaction: on the driver (``ReadDB``) or on
    an ORM session (``GQL_DRIVER_READS=false``)."""

    __slots__ = ("db", "session")

    def __init__(self, db: GuardedDB, session: AsyncSession | None = None) -> None:
        self.db = db
        self.session = session

    async def end(self, clean: bool) -> None:
        if self.session is not None:
            await self.session.close()  # rolls back
        else:
            await cast(ReadDB, self.db).release(clean)


@contextlib.asynccontextmanager
async def read_operation(ctx: Context, op: Operation) -> AsyncIterator[None]:
    """A query operation, from BEGIN to ROLLBACK (if it needs a transaction), where
    ``begin_reads`` chose."""
    reads = await begin_reads(ctx, op)
    if reads is None:
        yield
        return
    clean = False
    try:
        yield
        async with settled(ctx, reads.db):
            clean = op.fault is None
    finally:
        await reads.end(clean)


async def begin_reads(ctx: Context, op: Operation) -> Reads | None:
    """Begin on the replica when it serves this request (``Replica.serves``), else
    on the primary, and authenticate; None (``op.fault`` set) when neither answers.

    A replica that fails to begin is marked unavailable and the primary used. A
    bearer token the replica does not know may have been issued a moment ago (or
    be unknown anywhere): the operation reads the primary, where it is found if
    it exists, so a token is usable as soon as ``logIn``/``signUp`` answer.
    """
    replica = ctx.replica
    if replica is not None and replica.serves(ctx.bearer_token):
        try:
            reads = await begin_on(ctx, replica.engine, replica.sessionmaker, replica.failed)
        except Exception as exc:
            if database_fault(exc) is None:
                raise
            replica.failed()
        else:
            if ctx.bearer_token is None or ctx.viewer is not None:
                return reads
            await reads.end(clean=True)  # the token is looked up on the primary
    try:
        return await begin_on(ctx, ctx.read_engine, ctx.sessionmaker)  # the primary
    except Exception as exc:
        if database_fault(exc) is None:
            raise
        op.fault = exc
        return None


async def begin_on(
    ctx: Context,
    engine: AsyncEngine | None,
    maker: async_sessionmaker[AsyncSession],
    failed: Callable[[], None] | None = None,
) -> Reads:
    """A read-only transaction on ``engine``'s driver connection (``driver_reads``:
    ``ctx.read_engine`` is set) or on a session of ``maker``, open in ``ctx``, its
    viewer authenticated.

    On the driver, BEGIN waits for the first statement, and is never sent if the
    operation's plan sends at most one (``ReadDB.expect``). A connection found
    broken by its first command is replaced from ``engine``, or, if ``engine`` (a
    replica: ``failed`` marks it) does not answer, from the primary's.
    """
    reads: Reads
    if ctx.read_engine is not None:
        assert engine is not None
        db = await begin_read(connector(engine, ctx.read_engine, failed))
        ctx.open_read_db(db)
        reads = Reads(db)
    else:
        session = await begin(maker, read_only=True)
        reads = Reads(ctx.open_db(session), session)
    try:
        if ctx.authenticate is not None:
            await authenticate(ctx)
    except BaseException:
        await reads.end(clean=False)
        raise
    return reads


def connector(
    engine: AsyncEngine, primary: AsyncEngine, failed: Callable[[], None] | None
) -> Connect:
    """Where a query operation's connections come from (``driver_reads.Connect``):
    ``engine``'s, or the primary's when ``engine`` (a replica: ``failed`` marks it)
    does not answer."""

    async def connect() -> Lent:
        try:
            return await kept(engine).take()
        except Exception as exc:
            if failed is None or database_fault(exc) is None:
                raise
            failed()  # the replica does not answer: the primary does
            return await kept(primary).take()

    return connect


@contextlib.asynccontextmanager
async def settled(ctx: Context, db: GuardedDB) -> AsyncIterator[None]:
    """The operation's work is over: nothing of it may outlive the request.

    Work a failed field left behind (graphql-core stops awaiting siblings once
    data is nulled) is stopped: no more loader batches, no new statements, and
    the body runs once the statement in flight (if any) has finished.
    """
    ctx.loaders.close()
    db.close()
    async with db.lock:
        yield


READ_ONLY = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


async def begin(maker: async_sessionmaker[AsyncSession], read_only: bool) -> AsyncSession:
    """A session whose transaction has begun on a connection that answered (``began``)."""

    async def take() -> AsyncSession:
        session = maker()
        try:
            await session.connection(execution_options=READ_ONLY if read_only else None)
        except BaseException:
            await session.close()
            raise
        return session

    async def start(session: AsyncSession) -> None:
        raw = await (await session.connection()).get_raw_connection()
        await raw.dbapi_connection._start_transaction()  # type: ignore[union-attr]

    async def discard(session: AsyncSession) -> None:
        await (await session.connection()).invalidate()
        await session.close()

    return await began(take, start, discard)


RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure
ATTEMPTS = 4


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE or type(exc.orig).__name__.endswith(
        ("DeadlockDetectedError", "SerializationError")
    )


async def atomic(
    ctx: Context,
    body: Callable[[], Awaitable[P]],
    failed: Callable[[list[UserError]], P],
) -> P:
    """Run one mutation field in a savepoint: all of its writes, or none of them.

    A ``UserFailure`` raised by ``body`` rolls the savepoint back and becomes the
    payload's ``userErrors``. A deadlock or serialization failure rolls back and
    runs the body again (a bounded number of times). Anything else rolls back
    and propagates. Either way the request's loaders are cleared, so the
    payload is read fresh, after the write. The events the field added are kept
    only when its savepoint was released; each failed attempt's are dropped.
    """
    mark = ctx.events.mark()
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with ctx.db.session.begin_nested():
                    result = await body()
                mark = ctx.events.mark()  # released: the ``finally`` keeps its events
                return result
            except DBAPIError as exc:
                ctx.events.discard(mark)
                if attempt == ATTEMPTS or not _retryable(exc):
                    raise
                log.warning("retrying a mutation field after %s", type(exc.orig).__name__)
        raise AssertionError("unreachable")
    except UserFailure as failure:
        return failed(failure.errors)
    finally:
        ctx.events.discard(mark)
        ctx.loaders.clear_all()
