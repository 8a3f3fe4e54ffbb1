"""The transaction boundary, drawn once.

A query runs in one REPEATABLE READ, READ ONLY transaction (every number in a
response comes from one snapshot); a mutation in one read-write transaction,
each field inside its own savepoint (``atomic``). The commit happens here, inside
the operation and before the response exists: a failed commit turns the response
into an error that reports no write as done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, get_type_hints

import strawberry
from graphql import ExecutionResult, GraphQLError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gql_app.context import Context, Info
from gql_app.db import GuardedDB
from gql_app.driver import begin_read
from gql_app.errors import ErrorCode, UserError, UserFailure, _database_fault
from gql_app.users.auth import authenticate

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

    Used by the ``Transaction`` extension and by the query lane (``gql_app.lane``),
    so both paths draw the boundary here and nowhere else.
    """
    op = Operation()
    if read_only and ctx.read_engine is not None:
        async with read_operation(ctx, ctx.read_engine, op):
            yield op
        return
    maker = ctx.read_sessionmaker if read_only else ctx.sessionmaker
    try:
        session = await begin(maker, read_only)
        try:
            db = ctx.open_db(session, fresh=not read_only)
            await authenticate(ctx)
        except BaseException:
            await session.close()
            raise
    except Exception as exc:
        if _database_fault(exc) is None:
            raise
        op.fault = exc
        yield op
        return
    async with session:
        yield op
        async with settled(ctx, db):
            if read_only:
                await session.rollback()
                return
            try:
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


@contextlib.asynccontextmanager
async def read_operation(ctx: Context, engine: AsyncEngine, op: Operation) -> AsyncIterator[None]:
    """A query operation on the driver connection (``gql_app.driver``)."""
    try:
        db = await begin_read(engine)
    except Exception as exc:
        if _database_fault(exc) is None:
            raise
        op.fault = exc
        yield
        return
    clean = False
    try:
        ctx.open_read_db(db)
        try:
            await authenticate(ctx)
        except Exception as exc:
            if _database_fault(exc) is None:
                raise
            op.fault = exc
        yield
        async with settled(ctx, db):
            clean = op.fault is None
    finally:
        await db.release(clean)


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


class Transaction(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        execution = self.execution_context
        read_only = execution.operation_type is OperationType.QUERY
        async with operation(execution.context, read_only) as op:
            if op.fault is not None:
                execution.result = op.unavailable()
            yield
            op.result = execution.result  # type: ignore[assignment]


READ_ONLY = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
BEGIN_ATTEMPTS = 3


async def begin(maker: async_sessionmaker[AsyncSession], read_only: bool) -> AsyncSession:
    """A session whose transaction has begun on a connection that answered.

    BEGIN goes out here rather than with the first statement: a connection
    whose backend was just terminated can still look open at checkout (the
    server's farewell not yet read) and fails its first command. Failing here,
    before any resolver ran, the connection is discarded and another one
    taken, as the pool does with connections it sees closed. BEGIN is sent
    either way, so this costs a round trip only to operations running no
    statement.
    """
    for attempt in range(1, BEGIN_ATTEMPTS + 1):
        session = maker()
        try:
            connection = await session.connection(
                execution_options=READ_ONLY if read_only else None
            )
        except BaseException:
            await session.close()
            raise
        try:
            raw = await connection.get_raw_connection()
            await raw.dbapi_connection._start_transaction()  # type: ignore[union-attr]
        except Exception as exc:
            await connection.invalidate()
            await session.close()
            if attempt == BEGIN_ATTEMPTS or _database_fault(exc) is None:
                raise
            log.warning("discarded a broken connection at BEGIN: %s", type(exc).__name__)
        else:
            return session
    raise AssertionError("unreachable")


RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure
ATTEMPTS = 4


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE or type(exc.orig).__name__.endswith(
        ("DeadlockDetectedError", "SerializationError")
    )


async def atomic(
    info: Info,
    body: Callable[[], Awaitable[P]],
    failed: Callable[[list[UserError]], P],
) -> P:
    """Run one mutation field in a savepoint: all of its writes, or none of them.

    A ``UserFailure`` raised by ``body`` rolls the savepoint back and becomes the
    payload's ``userErrors``. A deadlock or serialization failure rolls back and
    runs the body again (a bounded number of times). Anything else rolls back
    and propagates. Either way the request's loaders are cleared, so the
    payload is read fresh, after the write.
    """
    ctx = info.context
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with ctx.db.session.begin_nested():
                    return await body()
            except DBAPIError as exc:
                if attempt == ATTEMPTS or not _retryable(exc):
                    raise
                log.warning("retrying a mutation field after %s", type(exc.orig).__name__)
        raise AssertionError("unreachable")
    except UserFailure as failure:
        return failed(failure.errors)
    finally:
        ctx.loaders.clear_all()


def atomic_mutation(
    body: Callable[[Info, Any], Awaitable[P]], payload: Callable[..., P], **options: Any
) -> Any:
    """The Mutation field for ``body(info, input)``, run by ``atomic``.

    ``body`` stays a plain function that reads top to bottom; its ``input``
    annotation is the field's input type and ``payload(user_errors=...)`` is what
    a ``UserFailure`` becomes.
    """
    input_type = get_type_hints(body)["input"]

    async def resolve(info: Info, input: Any) -> Any:
        return await atomic(
            info, lambda: body(info, input), lambda errors: payload(user_errors=errors)
        )

    resolve.__annotations__ = {"info": Info, "input": input_type, "return": payload}
    return strawberry.mutation(resolver=resolve, **options)
