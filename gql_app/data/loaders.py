"""Dataloader machinery, written once; each relationship is a short declaration.

Loaders live for one request (``info.context.loaders.get(SomeLoader, info)``),
batch every ``load`` of a field path into one statement (the keys as one array
parameter), return results in key order and prime the by-id loaders.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from aiodataloader import DataLoader, dispatch_queue_batch
from aiodataloader import Loader as QueuedLoad
from cachetools import LRUCache
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    FromClause,
    Select,
    Table,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import BindParameter

from gql_app.data.db import NamedRow, keys_param
from gql_app.data.pages import (
    Page,
    PageArgs,
    group_pages,
    page_statement,
    pages_statement,
    root_page_of,
    table_columns,
)
from gql_app.tracing import sql_origin

if TYPE_CHECKING:
    from gql_app.data.context import Context

MISSING: Any = object()
"""``Loader.peek``: the value is not known yet."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
M = TypeVar("M")
L = TypeVar("L", bound="Loader[Any, Any]")

Columns = Mapping[type[Any], frozenset[str]]
"""Model -> the names of its table's columns an operation reads (``engine.columns``);
a model not in it is read whole."""


class Declared:
    """What a loader (or page reader) reads, declared as class keywords:
    ``model=``, the mapped class; ``column=``, the column its keys are matched
    against, whose class is the model unless ``model=`` says otherwise.

    ``class ProfileByUserIdLoader(ByColumnLoader[Profile], column=Profile.user_id): ...``
    """

    model: ClassVar[type[Any]]
    column: ClassVar[Any]

    def __init_subclass__(cls, model: Any = None, column: Any = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if column is not None:
            cls.column = column
        if model is not None or column is not None:
            cls.model = model if model is not None else column.class_


class Loader(Declared, DataLoader[K, V]):
    """Base of every loader: bound to one request's context."""

    reads_viewer: ClassVar[bool] = False
    """Whether the statement depends on the viewer (visibility conditions). Loaders
    that do not are shared by every viewer of a live event batch (``LoaderRegistry``)."""

    @staticmethod
    def get_cache_key(key: Any) -> Any:
        return key

    def __init__(self, ctx: Context) -> None:
        # aiodataloader's state, set here: its __init__ checks on every instance
        # (two per request at least) that ``batch_load_fn`` is a coroutine function.
        self.loop = asyncio.get_event_loop()
        self._cache: dict[Any, asyncio.Future[V]] = {}
        self._queue: list[QueuedLoad] = []
        self.ctx = ctx
        self.depth = 1 << 30  # shallowest GraphQL path depth among the queued loads
        self.origin: Any = None  # the ``info`` of the first queued load: names its statements
        # Known values, kept plain: primed rows (most are never asked for, and
        # aiodataloader would give each one a resolved future up front) and the
        # values of batched loads (``load_keys``).
        self.primed: dict[Any, V] = {}
        self._batched: list[tuple[list[K], asyncio.Future[None]]] = []
        self._loading: dict[Any, asyncio.Future[None]] = {}
        """Keys of ``load_keys`` calls queued or under way -> the batch's future."""

    def prime(self, key: K, value: V) -> Loader[K, V]:
        if key not in self._cache:
            self.primed.setdefault(key, value)
        return self

    def peek(self, key: K) -> Any:
        """The value for ``key`` if already known (primed or loaded), else ``MISSING``."""
        value = self.primed.get(key, MISSING)
        if value is MISSING:
            future = self._cache.get(key)
            if future is not None and future.done() and future.exception() is None:
                value = future.result()
        return value

    def loaded(self, key: K) -> Any:
        """A key's value after ``load_keys`` settled: known (``primed``), or read by a
        ``load`` of it that was under way (its value, or its error)."""
        value = self.primed.get(key, MISSING)
        if value is not MISSING:
            return value
        future = self._cache.get(key)
        if future is None or not future.done():
            raise RuntimeError(f"{type(self).__name__} has no value for {key!r}")
        error = future.exception()
        return error if error is not None else future.result()

    def load(self, key: K) -> asyncio.Future[V]:
        value = self.primed.get(key, MISSING)
        if value is MISSING:
            return super().load(key)
        future: asyncio.Future[V] = self.loop.create_future()
        future.set_result(value)
        return future

    def load_keys(self, keys: Iterable[K]) -> asyncio.Future[Any] | None:
        """Make these keys' values known (in ``primed``): None if they are already,
        else one future for the whole batch, set when they are (or failed with the
        batch's error). No future or callback per key: the planned executor reads
        the values when the batch's future is done."""
        known, cache, loading = self.primed, self._cache, self._loading
        missing: list[K] = []
        waits: list[asyncio.Future[Any]] = []
        future: asyncio.Future[None] | None = None
        for key in keys:
            if key in known:
                continue
            cached = cache.get(key)
            if cached is not None and cached.done() and cached.exception() is None:
                known[key] = cached.result()
                continue
            under_way = loading.get(key)
            if under_way is not None:  # queued or sent (by this call too: a repeated key)
                if under_way is not future and under_way not in waits:
                    waits.append(under_way)
                continue
            if cached is not None:  # a ``load`` of it is under way: it is waited for
                if cached not in waits:
                    waits.append(cached)
                continue
            if future is None:
                future = self.loop.create_future()
            loading[key] = future
            missing.append(key)
        if future is not None:
            self._batched.append((missing, future))
            if len(self._batched) == 1 and not self._queue:
                self.ctx.loaders.scheduler.schedule(self)
            waits.append(future)
        if not waits:
            return None
        if len(waits) == 1:
            return waits[0]
        return asyncio.gather(*waits, return_exceptions=False)

    def take_queues(self) -> tuple[list[QueuedLoad], list[tuple[list[K], asyncio.Future[None]]]]:
        """The queued loads and batches, handed to one dispatch."""
        queue, self._queue = self._queue, []
        batched, self._batched = self._batched, []
        return queue, batched

    def clear(self, key: K) -> Loader[K, V]:
        self.primed.pop(key, None)
        super().clear(key)
        return self

    def clear_all(self) -> Loader[K, V]:
        self.primed.clear()
        self._loading.clear()
        super().clear_all()
        return self

    def do_resolve_reject(self, key: K, future: asyncio.Future[V]) -> None:
        self._queue.append(QueuedLoad(key=key, future=future))
        if len(self._queue) == 1 and not self._batched:
            self.ctx.loaders.scheduler.schedule(self)

    async def batch_load_fn(self, keys: list[K]) -> list[V]:
        return await self.batch_load(keys)

    def statement(self) -> Executable:
        """The batch statement, built once per loader class and ``shape``: keys bind
        as ``:keys``.

        Only for loaders whose statement is fully declared by the class and its
        shape (no per-request conditions); reusing one statement object also reuses
        its SQLAlchemy cache key, which is otherwise recomputed on every execution.
        """
        key = (type(self), self.shape())
        statement = _STATEMENTS.get(key)
        if statement is None:
            statement = _STATEMENTS[key] = self.build_statement()
        return statement

    def shape(self) -> Hashable:
        """What decides the statement besides the class (e.g. the columns it reads)."""
        return None

    def selected(self, model: type[Any], *keys: str) -> frozenset[str] | None:
        """The columns of ``model``'s table to read (``selected``)."""
        return selected(self.ctx, model, *keys)

    def build_statement(self) -> Executable:
        raise NotImplementedError

    async def fetch(self, keys: Sequence[Any]) -> list[Any]:
        """The rows of the class's statement for these keys."""
        return await self.ctx.db.rows(self.statement(), {"keys": list(keys)})

    async def batch_load(self, keys: list[K]) -> list[V]:
        raise NotImplementedError


def selected(ctx: Context, model: type[Any], *keys: str) -> frozenset[str] | None:
    """The columns of ``model``'s table to read (None: all): the operation's
    (``LoaderRegistry.narrow``) and ``keys``, the ones the reader itself reads (the
    keys it matches, the page's ordering column)."""
    names = ctx.loaders.columns.get(model)
    if names is None or not keys:
        return names
    # One set object per (names, keys): statement keys hash it once, not per request.
    found = _UNIONS.get((names, keys))
    if found is None:
        if len(_UNIONS) >= 4096:
            _UNIONS.clear()
        found = _UNIONS[names, keys] = names.union(keys)
    return found


_UNIONS: dict[tuple[frozenset[str], tuple[str, ...]], frozenset[str]] = {}


_STATEMENTS: LRUCache[tuple[type[Any], Hashable], Executable] = LRUCache(maxsize=1024)


PAGE_STATEMENTS: LRUCache[Hashable, Executable] = LRUCache(maxsize=512)


def page_statement_for(key: Hashable, build: Callable[[], Executable]) -> Executable:
    """The page statement of a shape, built on first use (least recently used go first)."""
    statement = PAGE_STATEMENTS.get(key)
    if statement is None:
        statement = PAGE_STATEMENTS[key] = build()
    return statement


class BatchScheduler:
    """Dispatches loader batches one at a time, when the request's database work is idle.

    A loader that dispatched after a fixed number of event-loop ticks would
    split a batch whenever some of its keys arrive early (from cached or primed
    parents) and the rest arrive when another statement finishes. Statements of
    one request run one at a time anyway (one session), so dispatching the
    waiting batch only when no statement is under way costs no parallelism and
    gathers every key of a field path into one batch. Of several waiting
    batches the shallowest in the query goes first, since deeper ones may still
    gain keys from it.
    """

    SETTLE_TICKS = 1
    """Event-loop turns to let pass before a dispatch. The planned executor loads a
    field for all the objects at a position in one call, and completes a batch in
    the callback of its one future, so the keys of a position are all queued one
    turn after the statement before finished (it was 8 turns with a future and a
    callback per key)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx: Context | None = ctx
        self._pending: list[Loader[Any, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._held = False

    def close(self) -> None:
        """Cancel everything still waiting or running, and let go of the context: the
        request is over."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()  # and the batch it is sending, if any
        self._pending.clear()
        self._ctx = None

    @property
    def _db(self) -> Any:
        if self._ctx is None:
            raise RuntimeError("the request is over")
        return self._ctx.db

    def schedule(self, loader: Loader[Any, Any]) -> None:
        if self._closed:
            return
        self._pending.append(loader)
        if self._task is None and not self._held:
            self._task = asyncio.ensure_future(self._dispatch_when_idle())

    def hold(self) -> None:
        """Batches wait for ``send_held`` instead of a task of their own: the planned
        executor, about to queue the only batch of a plan that sends one statement
        (``ObjectPlan.statements``), sends it from its own task, with no task to
        create and no loop turn to wait (no other key can come: nothing else reads)."""
        self._held = True

    async def send_held(self) -> None:
        """Send what waits since ``hold`` from this task; whatever is queued later
        goes through the scheduler's task again."""
        self._held = False
        db = self._db
        token = sql_origin.set(None)
        try:
            while self._pending and self._task is None and not db.busy:
                await self._dispatch_next(db)
        finally:
            sql_origin.reset(token)
        if self._pending and self._task is None and not self._closed:
            self._task = asyncio.ensure_future(self._dispatch_when_idle())

    async def _dispatch_when_idle(self) -> None:
        db = self._db
        try:
            while self._pending:
                for _ in range(self.SETTLE_TICKS):
                    await asyncio.sleep(0)
                if db.busy:
                    await db.wait_idle()
                    continue
                await self._dispatch_next(db)
        finally:
            self._task = None

    async def _dispatch_next(self, db: Any) -> None:
        """The shallowest waiting loader's batch, sent from the calling task
        (statements run one at a time): no task per batch."""
        loader = min(self._pending, key=lambda waiting: waiting.depth)
        self._pending.remove(loader)
        queue, batched = loader.take_queues()
        loader.depth = 1 << 30
        origin, loader.origin = loader.origin, None
        if queue or batched:
            db.enter()
            await self._run(db, loader, queue, batched, origin)

    async def _run(
        self,
        db: Any,
        loader: Loader[Any, Any],
        queue: list[QueuedLoad],
        batched: list[tuple[list[Any], asyncio.Future[None]]],
        origin: Any,
    ) -> None:
        sql_origin.set(origin)  # this task's own context: traces name its statements by it
        try:
            if not batched:
                await dispatch_queue_batch(loader, queue)  # resolves the loads' futures
            else:
                await dispatch_batches(loader, queue, batched)
        finally:
            db.leave()


async def dispatch_batches(
    loader: Loader[Any, Any],
    queue: list[QueuedLoad],
    batched: list[tuple[list[Any], asyncio.Future[None]]],
) -> None:
    """One statement for the queued loads and the batches: the keys' values become
    known (``Loader.primed``), then every future is set. A failed statement fails
    every load and batch, and caches nothing (as aiodataloader does)."""
    keys = list(
        dict.fromkeys([*(load.key for load in queue), *(k for ks, _ in batched for k in ks)])
    )
    try:
        values = list(await loader.batch_load_fn(keys))
        if len(values) != len(keys):
            raise TypeError(
                f"{type(loader).__name__}.batch_load returned {len(values)} values"
                f" for {len(keys)} keys"
            )
    except Exception as error:
        for load in queue:
            loader.clear(load.key)
            if not load.future.done():
                load.future.set_exception(error)
        for batch_keys, future in batched:
            for key in batch_keys:
                loader._loading.pop(key, None)
            if not future.done():
                future.set_exception(error)
        return
    known = loader.primed
    found = dict(zip(keys, values, strict=True))
    for batch_keys, _ in batched:
        for key in batch_keys:
            known[key] = found[key]
            loader._loading.pop(key, None)
    for load in queue:
        if not load.future.done():
            value = found[load.key]
            if isinstance(value, Exception):
                load.future.set_exception(value)
            else:
                load.future.set_result(value)
    for _, future in batched:
        if not future.done():
            future.set_result(None)


class LoaderRegistry:
    """The request's loaders, one instance per class, created on first use.

    With ``shared``, loaders that do not read the viewer come from ``shared``: the
    live event batch gives each viewer a context of its own whose by-id, count
    and list loaders are the batch's, so their statements do not multiply with
    the viewers (``web.live``).
    """

    def __init__(self, ctx: Context, shared: LoaderRegistry | None = None) -> None:
        self._ctx: Context | None = ctx
        self._loaders: dict[type[Loader[Any, Any]], Loader[Any, Any]] = {}
        self.scheduler = BatchScheduler(ctx)
        self.shared = shared
        self.joins: dict[type[Any], tuple[Join, ...]] = {}
        """By-id loader class -> the to-one rows its statement reads beside each row
        (``ByIdLoader``), as the operation's plan asks (``want``)."""
        self.columns: Columns = {}
        """The columns the operation reads of each table (``narrow``); none: whole rows."""

    def narrow(self, columns: Columns) -> None:
        """Read only these columns of each table from now on (its plan's, set once per
        operation, before it reads: rows read earlier, e.g. the viewer's, are whole).
        Never for loaders shared across operations (a live batch's): one operation's
        set does not cover another's documents."""
        if self.shared is None:
            self.columns = columns

    def want(self, joins: dict[type[Any], tuple[Join, ...]]) -> None:
        """Read these to-one rows with their parents from now on (both sets kept)."""
        for registry in (self, self.shared):
            if registry is None or not joins:
                continue
            for cls, wanted in joins.items():
                had = registry.joins.get(cls, ())
                if had != wanted:
                    registry.joins[cls] = tuple(dict.fromkeys((*had, *wanted)))

    def get(self, cls: type[L], info: Any = None) -> L:
        """The request's ``cls`` loader; pass the resolver's ``info`` when about to load."""
        if self.shared is not None and not cls.reads_viewer:
            return self.shared.get(cls, info)
        loader = self._loaders.get(cls)
        if loader is None:
            if self._ctx is None:
                raise RuntimeError("the request is over: no more loading")
            loader = self._loaders[cls] = cls(self._ctx)
        if info is not None:
            depth = 0
            path = info.path
            while path is not None:
                depth += 1
                path = path.prev
            if not loader._queue:
                loader.depth, loader.origin = depth, info
            elif depth < loader.depth:
                loader.depth = depth
        return loader  # type: ignore[return-value]

    def prime(self, model: type[Any], obj: Any) -> None:
        """Make ``obj`` (an ORM object or a row of ``model``'s table) known to its by-id loader."""
        self.prime_all(model, (obj,))

    def prime_all(self, model: type[Any], objects: Iterable[Any]) -> None:
        """``prime`` for many objects of one model."""
        by_id = ByIdLoader.for_model.get(model)
        if by_id is not None:
            loader = self.get(by_id)
            cached, primed = loader._cache, loader.primed
            for obj in objects:
                key = obj.id
                if key not in cached and key not in primed:
                    primed[key] = obj

    def clear_all(self) -> None:
        for loader in self._loaders.values():
            loader.clear_all()

    def close(self) -> None:
        """The request is over: stop dispatching and let go of everything loaded.

        The context, this registry, its scheduler and its loaders refer to each
        other: the references back to the context go, so the request's objects
        are freed when it ends rather than at the next cyclic collection.
        """
        self.scheduler.close()
        for loader in self._loaders.values():
            loader.clear_all()
            loader._queue = []
            loader._batched = []
        self._loaders.clear()
        self._ctx = None


def values_array(values: Sequence[Any], element_type: Any) -> BindParameter[Any]:
    return bindparam("keys", list(values), type_=ARRAY(element_type), unique=True)


# ---------------------------------------------------------------- to-one


Join = tuple[str, type["ByIdLoader[Any]"]]
"""A to-one relationship read with its parent: (the parent's foreign-key column, the
by-id loader of the row it names)."""


class ByIdLoader(Loader[int, M | None], Generic[M]):
    """``<Model>ByIdLoader``: primary key -> object or None
    (``class PostByIdLoader(ByIdLoader[Post], model=Post): ...``).

    Its statement can read to-one rows with each parent (``joins``, which the
    planned executor asks for when the document reads them): a LEFT JOIN per
    relationship, whose row primes that relationship's by-id loader, so the
    field reading it sends no statement of its own.
    """

    for_model: ClassVar[dict[type[Any], type[ByIdLoader[Any]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" in cls.__dict__:
            ByIdLoader.for_model[cls.model] = cls

    @classmethod
    def joinable(cls) -> bool:
        """Whether the statement is the plain by-id one (no conditions of its own),
        so a row read by a join is the row this loader would read."""
        return (
            cls.build_statement is ByIdLoader.build_statement
            and cls.batch_load is ByIdLoader.batch_load
            and cls.statement is ByIdLoader.statement
        )

    def shape(self) -> frozenset[str] | None:
        return self.selected(self.model)

    def build_statement(self) -> Executable:
        table = self.model.__table__
        columns = table_columns(self.model, self.shape())
        return select(*columns).where(table.c.id == any_(keys_param()))

    def statement(self) -> Executable:
        joins = self.ctx.loaders.joins.get(type(self))
        if not joins:
            return super().statement()
        shapes = self.joined_shapes(joins)
        key = (type(self), joins, shapes)
        statement = _JOINED.get(key)
        if statement is None:
            statement = _JOINED[key] = joined_statement(self.model, joins, shapes)
        return statement

    def single_statement(self) -> Executable:
        """The statement for one key: ``id = :key``. PostgreSQL keeps one generic plan
        for it; with ``id = ANY(:keys)`` it plans every execution (a custom plan for
        one key costs less than the generic plan for an array of unknown length)."""
        joins = self.ctx.loaders.joins.get(type(self)) or ()
        shapes = self.joined_shapes(joins) if joins else (self.shape(),)
        key = (type(self), joins, shapes)
        statement = _SINGLE.get(key)
        if statement is None:
            statement = _SINGLE[key] = joined_statement(self.model, joins, shapes, single=True)
        return statement

    async def fetch(self, keys: Sequence[Any]) -> list[Any]:
        if len(keys) == 1 and self.joinable():
            return await self.ctx.db.rows(self.single_statement(), {"key": keys[0]})
        return await super().fetch(keys)

    def joined_shapes(self, joins: tuple[Join, ...]) -> tuple[frozenset[str] | None, ...]:
        """The columns read of the parent (with the joins' keys) and of each join's row."""
        parent = self.selected(self.model, *(key for key, _ in joins))
        return (parent, *(self.selected(target.model) for _, target in joins))

    async def batch_load(self, keys: list[int]) -> list[M | None]:
        rows = await self.fetch(keys)
        joins = self.ctx.loaders.joins.get(type(self))
        if joins:
            prime_joined(self.ctx, rows, joins, self.joined_shapes(joins)[1:])
        found: dict[Any, Any] = {row.id: row for row in rows}
        return [found.get(key) for key in keys]


_JOINED: LRUCache[Hashable, Executable] = LRUCache(maxsize=1024)


def joined_statement(
    model: type[Any],
    joins: tuple[Join, ...],
    shapes: Sequence[frozenset[str] | None],
    single: bool = False,
) -> Executable:
    """``model``'s by-id statement with each join's row beside the parent's, in
    columns ``j<n>_<name>`` (all NULL when the foreign key names no row).
    ``shapes``: the columns read of the parent, then of each join's row (None: all).
    ``single``: for one key (``:key``), else for an array of them (``:keys``)."""
    table = model.__table__
    columns: list[Any] = table_columns(model, shapes[0])
    source: Any = table
    for index, (key, target) in enumerate(joins):
        joined = target.model.__table__.alias(f"j{index}")
        source = source.outerjoin(joined, joined.c.id == table.c[key])
        columns.extend(
            joined.c[column.name].label(f"j{index}_{column.name}")
            for column in table_columns(target.model, shapes[index + 1])
        )
    by_id = (
        table.c.id == bindparam("key", type_=BigInteger)
        if single
        else table.c.id == any_(keys_param())
    )
    return select(*columns).select_from(source).where(by_id)


_SINGLE: LRUCache[Hashable, Executable] = LRUCache(maxsize=1024)


def prime_joined(
    ctx: Context,
    rows: Sequence[Any],
    joins: tuple[Join, ...],
    shapes: Sequence[frozenset[str] | None],
) -> None:
    """Prime each join's loader with the rows read beside the parents (None where the
    foreign key names no row: what that loader would answer). ``shapes``: the
    columns read of each join's row (None: all)."""
    for index, (key, target) in enumerate(joins):
        loader = ctx.loaders.get(target)
        row_class = joined_row_class(target.model, shapes[index])
        names = row_class._keys
        prefix = f"j{index}_"
        for row in rows:
            parent_key = getattr(row, key)
            if parent_key is None:
                continue
            if getattr(row, prefix + "id") is None:
                loader.prime(parent_key, None)
            else:
                loader.prime(parent_key, row_class([getattr(row, prefix + name) for name in names]))


class JoinedRow(NamedRow):
    """A row read by a join: by position, by column name and by attribute, like the
    rows the by-id loader reads itself."""

    __slots__ = ()


_ROW_CLASSES: LRUCache[tuple[type[Any], frozenset[str] | None], type[JoinedRow]] = LRUCache(
    maxsize=1024
)


def joined_row_class(model: type[Any], shape: frozenset[str] | None) -> type[JoinedRow]:
    """The row class of ``model``'s rows read by a join with the columns of ``shape``
    (None: all), in the table's order (its ``_keys``)."""
    found = _ROW_CLASSES.get((model, shape))
    if found is None:
        names = tuple(column.name for column in table_columns(model, shape))
        namespace: dict[str, Any] = {"__slots__": (), "_keys": names}
        for index, name in enumerate(names):
            namespace[name] = property(itemgetter(index))
        found = _ROW_CLASSES[model, shape] = type("Row", (JoinedRow,), namespace)
    return found


class ByColumnLoader(Loader[Any, M | None], Generic[M]):
    """A unique column -> object or None (e.g. ``ProfileByUserIdLoader``)."""

    def shape(self) -> frozenset[str] | None:
        return self.selected(self.model, type(self).column.key)

    def build_statement(self) -> Executable:
        column = type(self).column
        element = None if column.type.python_type is int else column.type
        columns = table_columns(self.model, self.shape())
        return select(*columns).where(column == any_(keys_param(element)))

    async def batch_load(self, keys: list[Any]) -> list[M | None]:
        column = type(self).column
        rows = await self.fetch(keys)
        found = {getattr(row, column.key): row for row in rows}
        self.ctx.loaders.prime_all(self.model, rows)
        return [found.get(key) for key in keys]


# ---------------------------------------------------------------- to-many


class ListByColumnLoader(Loader[int, list[M]], Generic[M]):
    """A foreign key -> all its children, in ``order_by`` (e.g. ``OrderItemsByOrderIdLoader``)."""

    order_by: ClassVar[Sequence[Any]] = ()

    def conditions(self) -> list[ColumnElement[bool]]:
        return []

    def shape(self) -> frozenset[str] | None:
        return self.selected(self.model, type(self).column.key)

    def build_statement(self) -> Executable:
        column = type(self).column
        return (
            select(*table_columns(self.model, self.shape()))
            .where(column == any_(keys_param()), *self.conditions())
            .order_by(*self.order_by, self.model.id)
        )

    async def batch_load(self, keys: list[int]) -> list[list[M]]:
        column = type(self).column
        rows = await self.fetch(keys)
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            grouped[getattr(row, column.key)].append(row)
        self.ctx.loaders.prime_all(self.model, rows)
        return [grouped.get(key, []) for key in keys]


class ManyToManyLoader(Loader[int, list[M]], Generic[M]):
    """Parent id -> related objects through a link table (e.g. ``TagsByPostIdLoader``)."""

    link: ClassVar[Table]
    link_parent: ClassVar[str]
    link_child: ClassVar[str]
    order_by: ClassVar[Sequence[Any]] = ()

    def shape(self) -> frozenset[str] | None:
        return self.selected(self.model)

    def build_statement(self) -> Executable:
        parent = self.link.c[self.link_parent]
        return (
            select(parent.label("gql_parent"), *table_columns(self.model, self.shape()))
            .join(self.link, self.link.c[self.link_child] == self.model.id)
            .where(parent == any_(keys_param()))
            .order_by(parent, *self.order_by, self.model.id)
        )

    async def batch_load(self, keys: list[int]) -> list[list[M]]:
        grouped: dict[int, list[Any]] = defaultdict(list)
        rows = await self.fetch(keys)
        for row in rows:
            grouped[row.gql_parent].append(row)
        self.ctx.loaders.prime_all(self.model, rows)
        return [grouped.get(key, []) for key in keys]


# ---------------------------------------------------------------- counts and aggregates


class CountLoader(Loader[int, int]):
    """A foreign key -> number of rows (e.g. ``CommentCountByPostIdLoader``), counted
    in ``source`` when the column is not ``model``'s."""

    source: ClassVar[FromClause | None] = None

    def conditions(self) -> list[ColumnElement[bool]]:
        return []

    def build_statement(self) -> Executable:
        column = type(self).column
        return (
            select(column, func.count())
            .select_from(self.source if self.source is not None else self.model)
            .where(column == any_(keys_param()), *self.conditions())
            .group_by(column)
        )

    async def batch_load(self, keys: list[int]) -> list[int]:
        counts = {row[0]: row[1] for row in await self.fetch(keys)}
        return [counts.get(key, 0) for key in keys]


class AggregateLoader(Loader[int, V]):
    """A key -> one aggregate row, from a grouped Core statement.

    Subclasses give ``aggregate(keys)`` selecting ``(key, ...)`` grouped by key,
    ``value(row)`` turning a row into the result, and ``empty(key)`` for keys
    without rows.
    """

    def aggregate(self, keys: BindParameter[Any]) -> Select[Any]:
        raise NotImplementedError

    def value(self, row: Any) -> V:
        raise NotImplementedError

    def empty(self, key: int) -> V:
        raise NotImplementedError

    def build_statement(self) -> Executable:
        return self.aggregate(keys_param())

    async def batch_load(self, keys: list[int]) -> list[V]:
        rows = await self.fetch(keys)
        found = {row[0]: self.value(row) for row in rows}
        return [found[key] if key in found else self.empty(key) for key in keys]


# ---------------------------------------------------------------- nested connections


@dataclass(frozen=True)
class PageRequest:
    """Everything but the parent that shapes a nested page; part of the loader key."""

    args: PageArgs
    filter: Hashable = None
    with_count: bool = False

    def __hash__(self) -> int:  # hashed on every load of every parent: computed once
        try:
            return self.__dict__["_hash"]  # type: ignore[no-any-return]
        except KeyError:
            value = hash((self.args, self.filter, self.with_count))
            object.__setattr__(self, "_hash", value)
            return value


class PageLoader(Loader[tuple[int, PageRequest], Page[M]], Generic[M]):
    """(parent id, PageRequest) -> that parent's page, one statement per distinct request.

    Subclasses declare ``column=`` (the children's column holding the parent's
    id), or ``model=`` and ``children(parent_id_column)`` for other joins.
    """

    reads_viewer = True  # filters carry visibility rules
    sort_keys: ClassVar[Any] = None
    """Where the page's ordering columns are read from, when not the model
    (attributes named as the model's, ``id`` included): e.g. copies in a link table."""

    def children(self, parent: ColumnElement[Any]) -> tuple[Any, list[ColumnElement[bool]]]:
        """The FROM and the join conditions of a parent's children."""
        return self.model, [type(self).column == parent]

    def branches(
        self, parent: ColumnElement[Any]
    ) -> list[tuple[Any, list[ColumnElement[bool]]]] | None:
        """The page's rows as disjoint parts, each read in order through its own
        index and merged (see ``pages_statement``); None: ``children`` alone."""
        return None

    def conditions(self, filter: Any) -> list[ColumnElement[bool]]:
        """Filter and visibility rules: the criteria's own (see ``RootPage.conditions``)."""
        return filter.conditions(self.ctx) if filter is not None else []

    def statement_for(self, request: PageRequest) -> Executable:
        """The page statement for a request shape, reused across requests (LRU).

        It is determined by the loader class, the request (ordering, limit,
        decoded cursors, filter, count), the columns read (with the ordering's) and
        who is asking: ``conditions`` may only read the context through
        ``ctx.visibility``.
        """
        columns = self.selected(self.model, request.args.ordering.key.attr)
        return page_statement_for(
            (type(self), request, self.ctx.visibility, columns),
            lambda: pages_statement(
                self.model,
                self.children,
                self.conditions(request.filter),
                request.args,
                request.with_count,
                branches=lambda parent: self.branches(parent) or [self.children(parent)],
                sort_keys=self.sort_keys,
                columns=columns,
            ),
        )

    async def batch_load(self, keys: list[tuple[int, PageRequest]]) -> list[Page[M]]:
        by_request: dict[PageRequest, list[int]] = defaultdict(list)
        for parent_id, request in keys:
            by_request[request].append(parent_id)
        pages: dict[tuple[int, PageRequest], Page[M]] = {}
        for request, parent_ids in by_request.items():
            ids = list(dict.fromkeys(parent_ids))
            rows = await self.ctx.db.rows(self.statement_for(request), {"keys": ids})
            found = group_pages(rows, ids, request.args, request.with_count)
            for parent_id, page in found.items():
                self.ctx.loaders.prime_all(self.model, page.items)
                pages[parent_id, request] = page
        return [pages[key] for key in keys]


class RootPage(Declared, Generic[M]):
    """A root connection's page reader (e.g. ``PostPage`` for ``Query.posts``): one
    statement, the total included when asked. Subclasses declare ``model=``.
    """

    reads_viewer: ClassVar[bool] = True  # criteria carry visibility rules

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def conditions(self, criteria: Any) -> list[ColumnElement[bool]]:
        """Filter and visibility rules: ``criteria.conditions(ctx)``, which may only
        read the context through ``ctx.visibility`` (the statement is built once per
        criteria, page window and visibility)."""
        return criteria.conditions(self.ctx) if criteria is not None else []

    def total(self, criteria: Any) -> ColumnElement[Any] | None:
        """The total as a small SQL expression over maintained counts, which may only
        read the context through ``ctx.visibility``; None (the default): count the rows."""
        return None

    async def read(self, args: PageArgs, criteria: Hashable, with_count: bool) -> Page[M]:
        ctx = self.ctx
        columns = selected(ctx, self.model, args.ordering.key.attr)
        statement = page_statement_for(
            (type(self), criteria, args, with_count, ctx.visibility, columns),
            lambda: page_statement(
                self.model,
                self.conditions(criteria),
                args,
                with_count,
                self.total(criteria) if with_count else None,
                columns,
            ),
        )
        page = root_page_of(await ctx.db.rows(statement), args, with_count)
        ctx.loaders.prime_all(self.model, page.items)
        return page
