"""Relay connections: orderings, opaque keyset cursors, and page queries.

A page is read with keyset conditions (never OFFSET), so cursors stay valid
while rows are inserted, and a page of ``n`` rows reads about ``n`` rows through
the index. Per-parent pages (``user.posts(first: 5)`` for 100 users) are one
statement: ``unnest(:parent_ids)`` LEFT JOIN LATERAL the page query, with the
optional ``totalCount`` as a correlated count in the same statement.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

import orjson
import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)
from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    and_,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import InstrumentedAttribute

from gql_app.db import keys_param
from gql_app.errors import BadUserInput
from gql_app.fastpath import computed
from gql_app.settings import Settings

M = TypeVar("M")


@dataclass(frozen=True)
class SortKey:
    """One orderable field: its enum name and the column behind it."""

    name: str
    column: InstrumentedAttribute[Any] = field(compare=False)
    nullable: bool = False

    @property
    def attr(self) -> str:
        return self.column.key


@dataclass(frozen=True)
class Ordering:
    """A sort key and direction, with the primary key as tiebreaker in the same direction.

    NULLs sort last in the forward direction (so drafts come after published
    posts when ordering by publishedAt either way).
    """

    key: SortKey
    descending: bool
    tiebreak: InstrumentedAttribute[Any] = field(compare=False)

    @property
    def token(self) -> str:
        return f"{self.key.name}:{'DESC' if self.descending else 'ASC'}"

    def order_by(self, entity: Any = None, *, reverse: bool = False) -> list[ColumnElement[Any]]:
        col, pk = self._columns(entity)
        desc = self.descending != reverse
        col_order = col.desc() if desc else col.asc()
        if self.key.nullable:
            col_order = col_order.nulls_first() if reverse else col_order.nulls_last()
        return [col_order, pk.desc() if desc else pk.asc()]

    def after(
        self, cursor: tuple[Any, int], entity: Any = None, *, reverse: bool = False
    ) -> ColumnElement[bool]:
        """Rows strictly after ``cursor`` in this order (or in the reversed order)."""
        col, pk = self._columns(entity)
        desc = self.descending != reverse
        nulls_last = not reverse
        value, ident = cursor

        def beyond(a: Any, b: Any) -> ColumnElement[bool]:
            return a < b if desc else a > b

        if value is None:
            same_null = and_(col.is_(None), beyond(pk, ident))
            return same_null if nulls_last else or_(col.is_not(None), same_null)
        keyset = beyond(tuple_(col, pk), tuple_(literal(value, col.type), literal(ident, pk.type)))
        if not self.key.nullable:
            return keyset
        return or_(keyset, col.is_(None)) if nulls_last else keyset

    def values(self, obj: Any) -> tuple[Any, int]:
        return getattr(obj, self.key.attr), obj.id

    def _columns(self, entity: Any) -> tuple[Any, Any]:
        if entity is None:
            return self.key.column, self.tiebreak
        return getattr(entity, self.key.attr), getattr(entity, self.tiebreak.key)


# ---------------------------------------------------------------- cursors


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode_value(raw: Any, key: SortKey) -> Any:
    if raw is None:
        if not key.nullable:
            raise ValueError("null value")
        return None
    py_type = key.column.type.python_type
    if py_type is datetime:
        if not isinstance(raw, str):
            raise ValueError("not a timestamp")
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
    if py_type is Decimal:
        if not isinstance(raw, str) or len(raw) > 40:
            raise ValueError("not a decimal")
        number = Decimal(raw)
        if not number.is_finite() or abs(number) >= 10**15:
            raise ValueError("decimal out of range")
        return number
    if py_type is int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("not an integer")
        return raw
    if not isinstance(raw, str) or "\x00" in raw:
        raise ValueError("not a string")
    return raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signature(key: bytes, payload: bytes) -> str:
    return _b64(hmac.new(key, payload, hashlib.sha256).digest()[:12])


def encode_cursor(scope: str, ordering: Ordering, values: tuple[Any, int], key: bytes) -> str:
    """``base64(payload).base64(hmac)``: opaque, and signed with the server's secret key."""
    payload = orjson.dumps([scope, ordering.token, _encode_value(values[0]), values[1]])
    return f"{_b64(payload)}.{_signature(key, payload)}"


def decode_cursor(cursor: str, scope: str, ordering: Ordering, key: bytes) -> tuple[Any, int]:
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        body, _, signature = cursor.partition(".")
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(signature, _signature(key, payload)):
            raise ValueError("not a cursor this server issued")
        raw = orjson.loads(payload)
        if not isinstance(raw, list) or len(raw) != 4:
            raise ValueError("shape")
        got_scope, token, value, ident = raw
        if got_scope != scope or token != ordering.token:
            raise ValueError("cursor of another connection or ordering")
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 < ident < 2**63:
            raise ValueError("id")
        return _decode_value(value, ordering.key), ident
    except (ValueError, TypeError, binascii.Error, InvalidOperation, orjson.JSONDecodeError):
        raise BadUserInput(
            f"Invalid cursor {cursor[:80]!r}: it does not belong to this connection and ordering."
        ) from None


# ---------------------------------------------------------------- page arguments


@dataclass(frozen=True)
class PageArgs:
    """Validated first/after/last/before, cursors decoded against their ordering."""

    scope: str
    ordering: Ordering
    limit: int
    backward: bool
    after: tuple[Any, int] | None
    before: tuple[Any, int] | None
    key: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def parse(
        cls,
        settings: Settings,
        scope: str,
        ordering: Ordering,
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
    ) -> PageArgs:
        cap = settings.max_page_size
        key = settings.secret_key.encode()
        if first is not None and last is not None:
            raise BadUserInput("Pass either `first` or `last`, not both.")
        for name, value in (("first", first), ("last", last)):
            if value is not None and not 0 <= value <= cap:
                raise BadUserInput(f"`{name}` must be between 0 and {cap}; got {value}.")
        backward = last is not None
        limit = (
            last if last is not None else first if first is not None else settings.default_page_size
        )
        return cls(
            scope=scope,
            ordering=ordering,
            limit=limit,
            backward=backward,
            after=decode_cursor(after, scope, ordering, key) if after is not None else None,
            before=decode_cursor(before, scope, ordering, key) if before is not None else None,
            key=key,
        )

    def cursor_conditions(self, entity: Any = None) -> list[ColumnElement[bool]]:
        conds = []
        if self.after is not None:
            conds.append(self.ordering.after(self.after, entity))
        if self.before is not None:
            conds.append(self.ordering.after(self.before, entity, reverse=True))
        return conds

    def cursor_for(self, obj: Any) -> str:
        return encode_cursor(self.scope, self.ordering, self.ordering.values(obj), self.key)


@dataclass
class Page(Generic[M]):
    """One page of rows, ready to become a Connection."""

    items: list[M]
    has_next: bool
    has_previous: bool
    total: int | None
    args: PageArgs

    @classmethod
    def build(cls, rows: list[M], args: PageArgs, total: int | None) -> Page[M]:
        more = len(rows) > args.limit
        items = rows[: args.limit]
        if args.backward:
            items.reverse()
            return cls(items, args.before is not None, more, total, args)
        return cls(items, more, args.after is not None, total, args)


# ---------------------------------------------------------------- queries

Children = Callable[[ColumnElement[Any]], tuple[FromClause | type[Any], list[ColumnElement[bool]]]]
"""Given the parent-id column, the FROM of the children and the join conditions."""


def pages_statement(
    model: type[Any],
    children: Children,
    where: Sequence[ColumnElement[bool]],
    args: PageArgs,
    with_count: bool,
) -> Select[Any]:
    """One statement: a page of children for every parent id in ``:keys``, each
    read through the index (a LATERAL subquery per parent)."""
    parents = func.unnest(keys_param()).table_valued("pid").render_derived("p")
    from_, join = children(parents.c.pid)
    inner = (
        select(*_table(model).c)
        .select_from(from_)
        .where(*join, *where, *args.cursor_conditions())
        .order_by(*args.ordering.order_by(reverse=args.backward))
        .limit(args.limit + 1)
        .lateral("page")
    )
    columns: list[Any] = [parents.c.pid.label("gql_parent"), *inner.c]
    if with_count:
        count = select(func.count()).select_from(from_).where(*join, *where).scalar_subquery()
        columns.append(count.label("gql_total"))
    return (
        select(*columns)
        .select_from(parents)
        .outerjoin(inner, true())
        .order_by(parents.c.pid, *args.ordering.order_by(inner.c, reverse=args.backward))
    )


def group_pages(
    rows: Sequence[Any], parent_ids: Sequence[int], args: PageArgs, with_count: bool
) -> dict[int, Page[Any]]:
    """The rows of ``pages_statement`` as one Page per parent."""
    grouped: dict[int, list[Any]] = {pid: [] for pid in parent_ids}
    totals: dict[int, int] = {}
    for row in rows:
        if row.id is not None:
            grouped[row.gql_parent].append(row)
        if with_count:
            totals[row.gql_parent] = row.gql_total
    return {
        pid: Page.build(items, args, totals.get(pid, 0) if with_count else None)
        for pid, items in grouped.items()
    }


def page_statement(
    model: type[Any],
    where: Sequence[ColumnElement[bool]],
    args: PageArgs,
    with_count: bool,
) -> Select[Any]:
    """A root connection's page, and its total in the same statement when asked."""
    page = (
        select(*_table(model).c)
        .where(*where, *args.cursor_conditions())
        .order_by(*args.ordering.order_by(reverse=args.backward))
        .limit(args.limit + 1)
    )
    if not with_count:
        return page
    inner = page.subquery("page")
    total = select(func.count().label("gql_total")).select_from(model).where(*where).subquery("t")
    return (
        select(total.c.gql_total, *inner.c)
        .select_from(total)
        .outerjoin(inner, true())
        .order_by(*args.ordering.order_by(inner.c, reverse=args.backward))
    )


def root_page_of(rows: Sequence[Any], args: PageArgs, with_count: bool) -> Page[Any]:
    """The rows of ``page_statement`` as a Page."""
    if not with_count:
        return Page.build(list(rows), args, None)
    total = rows[0].gql_total if rows else 0
    return Page.build([row for row in rows if row.id is not None], args, total)


def _table(model: Any) -> Any:
    """The model's table: pages are read as Core rows (attribute access, no ORM state)."""
    return model.__table__


# ---------------------------------------------------------------- GraphQL types

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    args: strawberry.Private[PageArgs]
    cursor: str = computed(lambda edge, info: edge.args.cursor_for(edge.node), str)


def _page_info(connection: Connection[Any], info: Any) -> PageInfo:
    page = connection.page
    items = page.items
    return PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=page.args.cursor_for(items[0]) if items else None,
        end_cursor=page.args.cursor_for(items[-1]) if items else None,
    )


def _total_count(connection: Connection[Any], info: Any) -> int:
    if connection.page.total is None:
        raise RuntimeError("totalCount was not loaded with the page")
    return connection.page.total


@strawberry.type
class Connection(Generic[T]):
    """A Relay connection; ``Connection[Post]`` is exposed as ``PostConnection``."""

    page: strawberry.Private[Page[Any]]
    edges: list[Edge[T]] = computed(
        lambda connection, info: [
            Edge(node=item, args=connection.page.args) for item in connection.page.items
        ],
        list[Edge[T]],  # type: ignore[valid-type]
    )
    nodes: list[T] = computed(lambda connection, info: connection.page.items, list[T])  # type: ignore[valid-type]
    page_info: PageInfo = computed(_page_info, PageInfo)
    total_count: int = computed(_total_count, int)


def wants_total_count(info: Any) -> bool:
    """Does the connection field being resolved select ``totalCount`` (through fragments too)?

    Reads graphql-core's AST directly (cheaper than Strawberry's
    ``selected_fields``), once per field of a planned document: the planned
    executor passes the same ``field_nodes`` list for every parent.
    """
    raw = info._raw_info
    nodes = raw.field_nodes
    known = _SELECTS_TOTAL.get(id(nodes))
    if known is not None and known[0] is nodes:
        return known[1]
    answer = any(_selects(node.selection_set, "totalCount", raw.fragments, set()) for node in nodes)
    if len(_SELECTS_TOTAL) >= 1024:
        _SELECTS_TOTAL.clear()
    _SELECTS_TOTAL[id(nodes)] = (nodes, answer)
    return answer


_SELECTS_TOTAL: dict[int, tuple[list[Any], bool]] = {}


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


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass(frozen=True)
class Sorting:
    """A connection's sort keys and default order, declared once per connection type."""

    keys: dict[str, SortKey] = field(compare=False)
    tiebreak: InstrumentedAttribute[Any] = field(compare=False)
    default: tuple[str, OrderDirection]

    def ordering(self, order_by: Any = None) -> Ordering:
        """The Ordering an ``orderBy`` input asks for, or the default."""
        name, direction = self.default
        if order_by is not None:
            name, direction = order_by.field.value, order_by.direction or direction
        return Ordering(self.keys[name], direction is OrderDirection.DESC, self.tiebreak)

    def page_args(
        self,
        info: Any,
        scope: str,
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
        order_by: Any = None,
    ) -> PageArgs:
        return PageArgs.parse(
            info.context.settings, scope, self.ordering(order_by), first, after, last, before
        )


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, with LIKE wildcards in ``text`` taken literally."""
    if "\x00" in text:
        raise BadUserInput("Search strings must not contain NUL characters.")
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")  # type: ignore[no-any-return]
