"""Relay connections: the GraphQL types, orderings built from their enums, and
``connection()``, the field factory every connection field is declared with::

    posts: Connection[Post] = connection(PostPageByAuthorIdLoader, POST_ORDER, filter=PostFilter)
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)

from gql_app.data.context import Info
from gql_app.data.loaders import MISSING, PageLoader, PageRequest, RootPage
from gql_app.data.pages import Ordering, Page, PageArgs, SortKey
from gql_app.engine.fields import COLUMNS, Guard, Refused, columns_read_by, computed
from gql_app.errors import BadUserInput
from gql_app.relay.cursors import binding, decode_cursor, encode_cursor
from gql_app.settings import Settings
from gql_app.tracing import sql_origin

T = TypeVar("T")


# ---------------------------------------------------------------- orderings


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


class Sorting:
    """A connection's orderings, built from its order enum.

    Each member of ``fields`` names a sortable column of ``model`` by its value
    (``CREATED_AT = "created_at"``); the first member in ``direction`` is the
    default ordering, and the primary key breaks ties. ``input`` is the
    ``orderBy`` input type (``PostOrderField`` -> ``PostOrder``), made when a
    field first exposes it.
    """

    def __init__(self, fields: type[enum.Enum], model: Any, direction: OrderDirection) -> None:
        table = model.__table__
        self.keys = {
            member: SortKey(
                member.name, getattr(model, member.value), table.c[member.value].nullable
            )
            for member in fields
        }
        self.fields = fields
        self.tiebreak = model.id
        self.direction = direction
        self.default = Ordering(
            self.keys[next(iter(fields))], direction is OrderDirection.DESC, self.tiebreak
        )
        self._input: Any = None

    @property
    def input(self) -> Any:
        if self._input is None:
            name = self.fields.__name__.removesuffix("Field")
            namespace = {
                "__annotations__": {"field": self.fields, "direction": OrderDirection},
                "direction": self.direction,
            }
            self._input = strawberry.input(type(name, (), namespace))
        return self._input

    def ordering(self, order_by: Any = None) -> Ordering:
        """The Ordering an ``orderBy`` input asks for, or the default."""
        if order_by is None:
            return self.default
        direction = order_by.direction or self.direction
        return Ordering(self.keys[order_by.field], direction is OrderDirection.DESC, self.tiebreak)


def page_args(
    settings: Settings,
    scope: Hashable,
    parent: Hashable,
    ordering: Ordering,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> PageArgs:
    """first/after/last/before checked, and the cursors decoded against what they must
    be bound to (``scope``, ``parent`` and ``ordering``); BAD_USER_INPUT otherwise."""
    cap = settings.max_page_size
    if first is not None and last is not None:
        raise BadUserInput("Pass either `first` or `last`, not both.")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= cap:
            raise BadUserInput(f"`{name}` must be between 0 and {cap}; got {value}.")
    limit = last if last is not None else first if first is not None else settings.default_page_size
    after_row = before_row = None
    if after is not None or before is not None:
        key = settings.secret_key.encode()
        bound = binding(scope, parent, ordering)
        after_row = decode_cursor(after, bound, ordering, key) if after is not None else None
        before_row = decode_cursor(before, bound, ordering, key) if before is not None else None
    return PageArgs(
        scope=scope,
        ordering=ordering,
        limit=limit,
        backward=last is not None,
        after=after_row,
        before=before_row,
    )


# ---------------------------------------------------------------- the GraphQL types
# A connection field resolves to a ``Page`` (``gql_app.data.pages``); these types
# read it.


class PageCursors:
    """The cursors of one page: bound to its connection and filter (``args.scope``),
    its parent and its ordering. The binding is made once per page, when first asked."""

    __slots__ = ("_bound", "_key", "_page")

    def __init__(self, page: Page[Any], info: Info) -> None:
        self._page = page
        self._key = info.context.settings.secret_key.encode()
        self._bound: bytes | None = None

    def of(self, row: Any) -> str:
        args = self._page.args
        if self._bound is None:
            self._bound = binding(args.scope, self._page.parent, args.ordering)
        return encode_cursor(self._bound, args.ordering.values(row), self._key)


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    cursors: strawberry.Private[PageCursors]
    cursor: str = computed(lambda edge, info: edge.cursors.of(edge.node), str)


def _edges(page: Page[Any], info: Info) -> list[Edge[Any]]:
    cursors = PageCursors(page, info)
    return [Edge(node=item, cursors=cursors) for item in page.items]


def _page_info(page: Page[Any], info: Info) -> PageInfo:
    items = page.items
    cursors = PageCursors(page, info)
    return PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=cursors.of(items[0]) if items else None,
        end_cursor=cursors.of(items[-1]) if items else None,
    )


def _total_count(page: Page[Any], info: Info) -> int:
    if page.total is None:
        raise RuntimeError("totalCount was not loaded with the page")
    return page.total


@strawberry.type
class Connection(Generic[T]):
    """A Relay connection; ``Connection[Post]`` is exposed as ``PostConnection``."""

    edges: list[Edge[T]] = computed(_edges, list[Edge[T]])  # type: ignore[valid-type]
    nodes: list[T] = computed(lambda page, info: page.items, list[T])  # type: ignore[valid-type]
    page_info: PageInfo = computed(_page_info, PageInfo)
    total_count: int = computed(_total_count, int)


# ---------------------------------------------------------------- the field factory


def connection(
    source: type[PageLoader[Any]] | type[RootPage[Any]],
    sorting: Sorting,
    *,
    filter: type | None = None,
    criteria: Hashable = None,
    order_by: bool = True,
    key: str = "id",
    guard: Guard | None = None,
    total: MaintainedTotal | None = None,
    **field_options: Any,
) -> Any:
    """A connection field read by ``source``: a page loader (nested, keyed by the
    parent's ``key``; one statement per field path) or a root page reader (on Query).

    ``filter``: the filter input type exposed as ``filter``; its ``criteria()``
    is what ``source`` filters by (``criteria`` when the field has no filter
    argument). ``order_by``: whether ``orderBy`` is exposed. ``guard(ctx, parent)``
    runs first. ``total(ctx, parent, criteria)``: a nested page's ``totalCount`` read
    from the parent's row (its maintained counts), or None to count in the page
    statement. A root page reader gives its own (``RootPage.total``).
    """
    empty = filter().criteria() if filter is not None else criteria
    arguments = Arguments(sorting, empty, guard)
    total_count = TotalCountLookahead()

    if issubclass(source, PageLoader):

        def resolve(root: Any, info: Any, **kwargs: Any) -> Any:
            parent = getattr(root, key)
            args, where = arguments.read(root, info, kwargs, parent)
            wanted = total_count.wanted(info)
            known_total = total(info.context, root, where) if wanted and total else None
            request = PageRequest(args, where, wanted and known_total is None)
            pages = info.context.loaders.get(source, info)
            known = pages.peek(page_key := (parent, request))
            page = pages.load(page_key) if known is MISSING else known
            return page if known_total is None else with_total(page, known_total)

        # the planned executor's form: all the parents at a position at once
        resolve.batch = partial(  # type: ignore[attr-defined]
            _pages_of, source, arguments, total_count, total, key
        )

    else:

        async def resolve(root: Any, info: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            args, where = arguments.read(root, info, kwargs, None)
            token = sql_origin.set(info)  # names its statement in traces
            try:
                return await source(info.context).read(args, where, total_count.wanted(info))
            finally:
                sql_origin.reset(token)

    _declare(resolve, filter, sorting.input if order_by else None)
    field_options["metadata"] = _parent_columns(
        field_options.get("metadata", {}), key, guard, total
    )
    return strawberry.field(resolver=resolve, **field_options)


def _parent_columns(metadata: dict[str, Any], key: str, *helpers: Any) -> dict[str, Any]:
    """A connection field's metadata with the parent columns it reads (``COLUMNS``):
    its ``key`` and what its guard and total declare (``engine.fields.reading``);
    unchanged (any column) when one of them does not say."""
    names = {key}
    for helper in helpers:
        read = columns_read_by(helper)
        if read is None:
            return metadata
        names |= read
    return {**metadata, COLUMNS: frozenset(names)}


MaintainedTotal = Callable[[Any, Any, Any], int | None]
"""``(ctx, parent row, criteria) -> total or None``: see ``connection(total=)``."""


def _pages_of(
    source: type[PageLoader[Any]],
    arguments: Arguments,
    total_count: TotalCountLookahead,
    total: MaintainedTotal | None,
    key: str,
    roots: list[Any],
    info: Any,
    kwargs: dict[str, Any],
) -> tuple[type[PageLoader[Any]], list[Any], Callable[[PageLoader[Any], list[Any]], list[Any]]]:
    """A nested connection field for all the parents at a position (``Batched``):
    one page key per parent, its page request shared unless cursors bind it to
    the parent; ``finish`` reads the pages the loader read."""
    ctx = info.context
    wanted = total_count.wanted(info)
    cursors = kwargs.get("after") is not None or kwargs.get("before") is not None
    window: tuple[PageArgs, Hashable] | None = None
    requests: dict[bool, PageRequest] = {}
    keys: list[Any] = []
    totals: list[int | None] = []
    for root in roots:
        try:
            if arguments.guard is not None:
                arguments.guard(ctx, root)
            parent = getattr(root, key)
            if window is None or cursors:
                window = arguments.window(info, kwargs, parent)
            args, where = window
            known_total = total(ctx, root, where) if wanted and total else None
            counted = wanted and known_total is None
            request = requests.get(counted) if not cursors else None
            if request is None:
                request = requests[counted] = PageRequest(args, where, counted)
            keys.append((parent, request))
            totals.append(known_total)
        except Exception as error:
            keys.append(Refused(error))
            totals.append(None)

    def finish(pages: PageLoader[Any], keys: list[Any]) -> list[Any]:
        values: list[Any] = []
        for page_key, known_total in zip(keys, totals, strict=True):
            if type(page_key) is Refused:
                values.append(page_key.error)
                continue
            page = pages.loaded(page_key)  # a page, or the error that reading it raised
            if known_total is not None and not isinstance(page, Exception):
                page = dataclasses.replace(page, total=known_total)
            values.append(page)
        return values

    return source, keys, finish


def with_total(page: Page[Any] | Awaitable[Page[Any]], total: int) -> Any:
    """The page (or the page to come) with ``total`` as its totalCount."""
    if isinstance(page, Page):
        return dataclasses.replace(page, total=total)

    async def later() -> Page[Any]:
        return dataclasses.replace(await page, total=total)

    return later()


class Arguments:
    """A connection field's arguments, read for one parent: the page window (its
    cursors checked against what they are bound to) and the filter's criteria."""

    __slots__ = ("empty", "guard", "names", "sorting")

    def __init__(self, sorting: Sorting, empty: Hashable, guard: Guard | None) -> None:
        self.sorting = sorting
        self.empty = empty
        self.guard = guard
        self.names: dict[Any, str] = {}

    def read(
        self, root: Any, info: Any, kwargs: dict[str, Any], parent: Hashable
    ) -> tuple[PageArgs, Hashable]:
        """(page window, criteria); ``parent``: the parent's key, None at the root."""
        if self.guard is not None:
            self.guard(info.context, root)
        return self.window(info, kwargs, parent)

    def window(
        self, info: Any, kwargs: dict[str, Any], parent: Hashable
    ) -> tuple[PageArgs, Hashable]:
        """``read`` without the guard."""
        ctx = info.context
        given = kwargs.get("filter")
        where = given.criteria() if given is not None else self.empty
        args = page_args(
            ctx.settings,
            (self.name(info), where),  # cursors are bound to the connection, the filter,
            parent,  # the parent
            self.sorting.ordering(kwargs.get("order_by")),  # and the ordering
            kwargs.get("first"),
            kwargs.get("after"),
            kwargs.get("last"),
            kwargs.get("before"),
        )
        return args, where

    def name(self, info: Any) -> str:
        """``<ParentType>.<field>``, made once per parent type."""
        raw = info._raw_info
        name = self.names.get(raw.parent_type)
        if name is None:
            name = self.names[raw.parent_type] = f"{raw.parent_type.name}.{raw.field_name}"
        return name


def _declare(resolve: Callable[..., Any], filter: type | None, order: type | None) -> None:
    """Give ``resolve`` the signature Strawberry reads the field's arguments from:
    ``first``/``after``/``last``/``before``, then ``filter`` and ``orderBy``."""
    parameter = inspect.Parameter
    params = [
        parameter("root", parameter.POSITIONAL_OR_KEYWORD),
        parameter("info", parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
    ]
    arguments: dict[str, Any] = {"first": int, "after": str, "last": int, "before": str}
    if filter is not None:
        arguments["filter"] = filter
    if order is not None:
        arguments["order_by"] = order
    for name, kind in arguments.items():
        params.append(parameter(name, parameter.KEYWORD_ONLY, default=None, annotation=kind | None))
    resolve.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    resolve.__annotations__ = {p.name: p.annotation for p in params[1:]}


# ---------------------------------------------------------------- selection lookahead


class TotalCountLookahead:
    """Does the connection field being resolved select ``totalCount`` (through
    fragments too)? Asked once per parent, answered once per document: the
    planned executor passes the same ``field_nodes`` list for every parent of a
    field, so the last answer is kept with the list it was read from."""

    __slots__ = ("_answer", "_nodes")

    def __init__(self) -> None:
        self._nodes: Any = None
        self._answer = False

    def wanted(self, info: Any) -> bool:
        raw = info._raw_info  # graphql-core's AST: cheaper than Strawberry's selected_fields
        nodes = raw.field_nodes
        if nodes is not self._nodes:
            self._answer = any(
                _selects(node.selection_set, "totalCount", raw.fragments, set()) for node in nodes
            )
            self._nodes = nodes
        return self._answer


def _selects(
    selection_set: SelectionSetNode | None,
    name: str,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
) -> bool:
    if selection_set is None:
        return False
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value == name:
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _selects(selection.selection_set, name, fragments, seen):
                return True
        elif isinstance(selection, FragmentSpreadNode):
            spread = selection.name.value
            if spread not in seen and spread in fragments:
                seen.add(spread)
                if _selects(fragments[spread].selection_set, name, fragments, seen):
                    return True
    return False
