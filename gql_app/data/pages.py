"""Keyset pages in SQL: orderings, page windows, and the statements that read them.

A page is read with keyset conditions (never OFFSET), so a page of ``n`` rows
reads about ``n`` rows through an index. Per-parent pages (``user.posts(first:
5)`` for 100 users) are one statement: ``unnest(:keys)`` LEFT JOIN LATERAL the
page query, with the optional total as a correlated count in the same statement.
Children that no one index reads in order (an OR of two foreign keys, rules that
differ by parent) are read as disjoint parts, each LIMITed in index order, merged.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    and_,
    false,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.orm import InstrumentedAttribute

from gql_app.data.db import keys_param
from gql_app.errors import BadUserInput

M = TypeVar("M")


@dataclass(frozen=True)
class SortKey:
    """One orderable field: its name (as clients spell it) and the column behind it."""

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
        self,
        cursor: tuple[Any, int],
        entity: Any = None,
        *,
        reverse: bool = False,
        nulls: bool = True,
    ) -> ColumnElement[bool]:
        """Rows strictly after ``cursor`` in this order (or in the reversed order).

        ``nulls=False``: the rows read exclude a NULL key, so no ``OR key IS NULL``
        (which no index range serves) is added."""
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
        if not (self.key.nullable and nulls):
            return keyset
        return or_(keyset, col.is_(None)) if nulls_last else keyset

    def column(self, entity: Any = None) -> Any:
        """The sort key's column (of ``entity`` when given)."""
        return self._columns(entity)[0]

    def excludes_nulls(self, conditions: Sequence[ColumnElement[bool]], entity: Any = None) -> bool:
        """Whether ``conditions`` include ``key IS NOT NULL`` (e.g. published posts only)."""
        if not self.key.nullable:
            return False
        not_null = self.column(entity).is_not(None)
        return any(not_null.compare(cond) for cond in conditions)

    def values(self, obj: Any) -> tuple[Any, int]:
        return getattr(obj, self.key.attr), obj.id

    def after_split(
        self, cursor: tuple[Any, int], entity: Any = None, *, reverse: bool = False
    ) -> tuple[list[ColumnElement[bool]] | None, list[ColumnElement[bool]] | None]:
        """``after`` as (bounds of the rows with a key, bounds of the rows with a NULL
        key), each an index range of its own; None: no such row is after ``cursor``."""
        pk = self._columns(entity)[1]
        desc = self.descending != reverse
        nulls_last = not reverse
        value, ident = cursor
        if value is None:
            return (None if nulls_last else []), [pk < ident if desc else pk > ident]
        keyed = [self.after(cursor, entity, reverse=reverse, nulls=False)]
        return keyed, ([] if nulls_last else None)

    def _columns(self, entity: Any) -> tuple[Any, Any]:
        if entity is None:
            return self.key.column, self.tiebreak
        return getattr(entity, self.key.attr), getattr(entity, self.tiebreak.key)


@dataclass(frozen=True)
class PageArgs:
    """A validated page window: ordering, size, direction and the keyset bounds.

    ``scope`` is opaque here: the caller's name for the connection the window
    belongs to, the same for every parent (cursors are bound to it and to the
    parent, ``Page.parent``).
    """

    scope: Hashable
    ordering: Ordering
    limit: int
    backward: bool
    after: tuple[Any, int] | None
    before: tuple[Any, int] | None

    def cursor_conditions(
        self, entity: Any = None, within: Sequence[ColumnElement[bool]] = ()
    ) -> list[ColumnElement[bool]]:
        """The keyset bounds; ``within``: the other conditions of the rows read (a
        NULL key they exclude needs no ``OR key IS NULL``)."""
        nulls = not self.ordering.excludes_nulls(within, entity)
        conds = []
        if self.after is not None:
            conds.append(self.ordering.after(self.after, entity, nulls=nulls))
        if self.before is not None:
            conds.append(self.ordering.after(self.before, entity, reverse=True, nulls=nulls))
        return conds

    def ranges(
        self, entity: Any = None, within: Sequence[ColumnElement[bool]] = ()
    ) -> list[list[ColumnElement[bool]]]:
        """The keyset bounds as index ranges: ``[cursor_conditions]``, except past a
        cursor on a nullable key when ``within`` lets NULL keys in. There ``OR key IS
        NULL`` would leave the bound to a filter (every row before the cursor read), so
        the rows with a key and the rows without are two ranges (an empty one left out)."""
        cursors = [(c, r) for c, r in ((self.after, False), (self.before, True)) if c is not None]
        ordering = self.ordering
        if not (cursors and ordering.key.nullable) or ordering.excludes_nulls(within, entity):
            return [self.cursor_conditions(entity, within)]
        col = ordering.column(entity)
        keyed: list[ColumnElement[bool]] | None = [col.is_not(None)]
        nulls: list[ColumnElement[bool]] | None = [col.is_(None)]
        for cursor, reverse in cursors:
            with_key, without = ordering.after_split(cursor, entity, reverse=reverse)
            keyed = None if keyed is None or with_key is None else [*keyed, *with_key]
            nulls = None if nulls is None or without is None else [*nulls, *without]
        return [r for r in (keyed, nulls) if r is not None]


@dataclass
class Page(Generic[M]):
    """One page of rows: what a connection shows. ``parent``: the key of the parent
    whose page it is (None for a root connection); cursors are bound to it too."""

    items: list[M]
    has_next: bool
    has_previous: bool
    total: int | None
    args: PageArgs
    parent: Hashable = None

    @classmethod
    def build(
        cls, rows: list[M], args: PageArgs, total: int | None, parent: Hashable = None
    ) -> Page[M]:
        more = len(rows) > args.limit
        items = rows[: args.limit]
        if args.backward:
            items.reverse()
            return cls(items, args.before is not None, more, total, args, parent)
        return cls(items, more, args.after is not None, total, args, parent)


Children = Callable[[ColumnElement[Any]], tuple[FromClause | type[Any], list[ColumnElement[bool]]]]
"""Given the parent-id column, the FROM of the children and the join conditions."""

Branches = Callable[
    [ColumnElement[Any]], list[tuple[FromClause | type[Any], list[ColumnElement[bool]]]]
]
"""Given the parent-id column, the children as disjoint parts (FROM and conditions),
each of which one index reads in page order."""


def pages_statement(
    model: type[Any],
    children: Children,
    where: Sequence[ColumnElement[bool]],
    args: PageArgs,
    with_count: bool,
    *,
    branches: Branches | None = None,
    sort_keys: Any = None,
    columns: frozenset[str] | None = None,
) -> Select[Any]:
    """One statement: a page of children for every parent id in ``:keys``, each
    read through the index (a LATERAL subquery per parent).

    ``branches``: the page's rows as disjoint parts (default: ``children``), each
    read in order and LIMITed on its own, merged and LIMITed again (an OR of two
    foreign keys, or rules that differ by parent). ``sort_keys``: where the ordering
    columns are read from, when not ``model`` (attributes named as the model's).
    ``columns``: the children's columns read (``table_columns``). The total counts
    ``children`` under ``where``."""
    parents = func.unnest(keys_param()).table_valued("pid").render_derived("p")
    from_, join = children(parents.c.pid)
    parts = branches(parents.c.pid) if branches is not None else [(from_, join)]
    selected = table_columns(model, columns)
    inner = _page_of_parts(selected, parts, where, args, sort_keys, parents).lateral("page")
    read: list[Any] = [parents.c.pid.label("gql_parent"), *inner.c]
    if with_count:
        count = select(func.count()).select_from(from_).where(*join, *where).scalar_subquery()
        read.append(count.label("gql_total"))
    return (
        select(*read)
        .select_from(parents)
        .outerjoin(inner, true())
        .order_by(parents.c.pid, *args.ordering.order_by(inner.c, reverse=args.backward))
    )


def _page_of_parts(
    selected: list[Any],
    parts: list[tuple[FromClause | type[Any], list[ColumnElement[bool]]]],
    where: Sequence[ColumnElement[bool]],
    args: PageArgs,
    sort_keys: Any,
    parents: FromClause,
) -> Select[Any]:
    """The first ``limit + 1`` rows of each part (of each of its ranges, see
    ``PageArgs.ranges``) in page order; of several, the first ``limit + 1`` of their
    UNION ALL (PostgreSQL merges the ordered parts; each names ``parents``
    explicitly as the enclosing FROM it correlates to)."""
    order = args.ordering.order_by(sort_keys, reverse=args.backward)

    def part(from_: Any, within: list[ColumnElement[bool]]) -> Select[Any]:
        return (
            select(*selected)
            .select_from(from_)
            .where(*within)
            .order_by(*order)
            .limit(args.limit + 1)
        )

    ranges = [
        (from_, [*within, *bounds])
        for from_, conds in parts
        for within in ([*conds, *where],)
        for bounds in args.ranges(sort_keys, within)
    ] or [(parts[0][0], [false()])]
    if len(ranges) == 1:
        return part(*ranges[0])
    merged = union_all(*(part(*r).correlate(parents) for r in ranges)).subquery("parts")
    return (
        select(*merged.c)
        .order_by(*args.ordering.order_by(merged.c, reverse=args.backward))
        .limit(args.limit + 1)
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
        pid: Page.build(items, args, totals.get(pid, 0) if with_count else None, pid)
        for pid, items in grouped.items()
    }


def page_statement(
    model: type[Any],
    where: Sequence[ColumnElement[bool]],
    args: PageArgs,
    with_count: bool,
    total: ColumnElement[Any] | None = None,
    columns: frozenset[str] | None = None,
) -> Select[Any]:
    """A root connection's page, and its total in the same statement when asked:
    ``total`` (an expression over maintained counts) when given, else a count.
    ``columns``: the columns read (``table_columns``)."""
    page = (
        select(*table_columns(model, columns))
        .where(*where, *args.cursor_conditions(None, where))
        .order_by(*args.ordering.order_by(reverse=args.backward))
        .limit(args.limit + 1)
    )
    if not with_count:
        return page
    inner = page.subquery("page")
    counted = (
        select(func.count().label("gql_total")).select_from(model).where(*where)
        if total is None
        else select(total.label("gql_total"))
    )
    totals = counted.subquery("t")
    return (
        select(totals.c.gql_total, *inner.c)
        .select_from(totals)
        .outerjoin(inner, true())
        .order_by(*args.ordering.order_by(inner.c, reverse=args.backward))
    )


def root_page_of(rows: Sequence[Any], args: PageArgs, with_count: bool) -> Page[Any]:
    """The rows of ``page_statement`` as a Page."""
    if not with_count:
        return Page.build(list(rows), args, None)
    total = rows[0].gql_total if rows else 0
    return Page.build([row for row in rows if row.id is not None], args, total)


def table_columns(model: Any, names: frozenset[str] | None) -> list[Any]:
    """The columns of ``model``'s table named in ``names`` (every column when None), in
    the table's order, so one set of names always makes the same statement. Rows are
    read as Core rows (attribute access, no ORM state)."""
    columns = model.__table__.c
    if names is None:
        return list(columns)
    return [column for column in columns if column.name in names]


# ---------------------------------------------------------------- text search


def like_pattern(text: str, *, prefix: bool = False) -> str:
    """A LIKE pattern matching ``text`` literally (``%``, ``_`` and ``\\`` escaped),
    as a substring, or as a prefix; use it with ``escape="\\"``."""
    if "\x00" in text:
        raise BadUserInput("Search strings must not contain NUL characters.")
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, with LIKE wildcards in ``text`` taken literally.

    ``column ILIKE :pattern``: a trigram index on the column (``db.trigram_index``)
    serves it when ``text`` has three characters or more; give every column searched
    this way one."""
    return column.ilike(like_pattern(text), escape="\\")  # type: ignore[no-any-return]


def starts_with(column: Any, text: str) -> ColumnElement[bool]:
    """Case-sensitive prefix match, with LIKE wildcards in ``text`` taken literally."""
    return column.like(like_pattern(text, prefix=True), escape="\\")  # type: ignore[no-any-return]


def in_range(column: Any, start: Any, end: Any) -> list[ColumnElement[bool]]:
    """``start <= column < end``, for the bounds given (None: no bound)."""
    conds = []
    if start is not None:
        conds.append(column >= start)
    if end is not None:
        conds.append(column < end)
    return conds
