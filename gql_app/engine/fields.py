"""Replaces Strawberry's resolver wrapper for attribute, loader-backed and computed
fields: the converted schema gets a direct ``(source, info)`` resolver for each
field declared with ``loaded(...)`` or ``computed(...)``, and for plain attributes.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLObjectType, GraphQLSchema

from gql_app.data.loaders import MISSING, Join

DIRECT = "gql_app.direct_resolver"
READS = "gql_app.reads"
COLUMNS = "gql_app.columns"
"""Field metadata: the names of the parent row's columns the resolver reads
(``engine.columns``); a field without it may read any column of its parent."""


def _nothing(type_name: str) -> Any:
    return None


def _no_joins() -> dict[type[Any], tuple[Join, ...]]:
    return {}


@dataclass(frozen=True, slots=True)
class Reads:
    """What a field's resolver reads (field metadata ``READS``), for the planned
    executor's count of an operation's statements (``engine.statements``). A field
    without it may send any number of statements.

    ``statements``: at most this many per position of the field in a document
    (loads batch into one statement per position); a callable is asked when a
    document is planned. ``source(type_name)``: the by-id loader whose rows the
    field returns for that type, if any. ``loads``: (by-id loader, the parent's key
    attribute) for a field that is that loader's value for the key (``loaded``).
    ``joins()``: to-one rows the resolver's own loaders must read with their rows.
    """

    statements: int | Callable[[], int]
    source: Callable[[str], Any] = _nothing
    loads: tuple[type[Any], str] | None = None
    joins: Callable[[], dict[type[Any], tuple[Join, ...]]] = _no_joins

    def bound(self) -> int:
        return self.statements() if callable(self.statements) else self.statements


def reads(
    statements: int | Callable[[], int],
    source: Callable[[str], Any] = _nothing,
    joins: Callable[[], dict[type[Any], tuple[Join, ...]]] = _no_joins,
) -> dict[str, Any]:
    """Field metadata declaring a resolver's reads (``Reads``):
    ``@strawberry.field(metadata=reads(1, ...))``."""
    return {READS: Reads(statements, source, joins=joins)}


class Refused:
    """A batched field's value for one object that could not be loaded (its guard
    refused the viewer, or its key could not be read): the error."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


Batched = Callable[[list[Any], Any, dict[str, Any]], tuple[type[Any], list[Any], Any] | None]
"""A resolver's batch form (its ``batch`` attribute), which the planned executor
calls once for all the objects at a position: ``batch(sources, info, kwargs)`` ->
(loader class, one key per source (or a ``Refused``), ``finish``), where
``finish(loader, keys)`` gives the values once the loader knows the keys
(``Loader.load_keys``); or None: the resolver runs per object instead."""


def columns(*names: str) -> dict[str, Any]:
    """Field metadata declaring the parent row's columns a resolver reads (``COLUMNS``):
    ``@strawberry.field(metadata=columns("owner_id", "balance"))``."""
    return {COLUMNS: frozenset(names)}


F = TypeVar("F", bound=Callable[..., Any])


def reading(*names: str) -> Callable[[F], F]:
    """Declare the parent row's columns a helper of a field reads (a guard, a
    connection's maintained total): ``@reading("owner_id")``."""

    def declare(function: F) -> F:
        function.columns = frozenset(names)  # type: ignore[attr-defined]
        return function

    return declare


def columns_read_by(helper: Callable[..., Any] | None) -> frozenset[str] | None:
    """The parent columns ``helper`` reads (``reading``): none without one, None when
    it does not say (it may read any)."""
    if helper is None:
        return frozenset()
    found = getattr(helper, "columns", None)
    return found if isinstance(found, frozenset) else None


Guard = Callable[[Any, Any], object]
"""``guard(ctx, parent)``: raises (an AppError) when the viewer may not see the field;
declared with ``reading`` when it reads the parent's columns."""


def private_to(owner: str) -> Guard:
    """The field is private to the user whose id is the parent's ``owner`` attribute
    (and to admins); FORBIDDEN for everyone else."""

    @reading(owner)
    def guard(ctx: Any, parent: Any) -> None:
        ctx.require_private(getattr(parent, owner))

    return guard


@reading()
def viewer_required(ctx: Any, parent: Any) -> None:
    """The field needs a signed-in viewer; UNAUTHENTICATED otherwise."""
    ctx.require_viewer()


def loaded(
    loader: type[Any],
    key: str,
    graphql_type: Any,
    *,
    guard: Guard | None = None,
    **field_options: Any,
) -> Any:
    """A field whose value is ``loader.load(source.<key>)``: the value itself when the
    loader already has it (primed or loaded), else the loader's future, which the
    executor awaits (no coroutine or task of its own). ``guard(ctx, source)``, when
    given, runs first (and raises when the viewer may not see the field)."""

    def resolve(root: Any, info: Any) -> Any:
        if guard is not None:
            guard(info.context, root)
        batch = info.context.loaders.get(loader, info)
        value = batch.peek(source_key := getattr(root, key))
        return batch.load(source_key) if value is MISSING else value

    resolve.loads = (loader, key, guard)  # type: ignore[attr-defined]  # executed per batch
    declared = Reads(1, lambda type_name: loader, loads=(loader, key))
    metadata = {**field_options.get("metadata", {}), READS: declared}
    guarded = columns_read_by(guard)
    if guarded is not None:
        metadata[COLUMNS] = guarded | {key}
    field_options["metadata"] = metadata
    return _field(resolve, graphql_type, field_options)


def computed(
    function: Callable[[Any, Any], Any],
    graphql_type: Any,
    *,
    columns: tuple[str, ...] | None = None,
    **field_options: Any,
) -> Any:
    """A field computed from the source (and info) alone: ``function(source, info)``,
    which sends no statement. ``columns``: the source row's columns it reads (None:
    any, so its rows are read whole)."""
    metadata = {**field_options.get("metadata", {}), READS: Reads(0)}
    if columns is not None:
        metadata[COLUMNS] = frozenset(columns)
    field_options["metadata"] = metadata
    function.computed = True  # type: ignore[attr-defined]  # read inline by compiled plans
    return _field(function, graphql_type, field_options)


def _field(resolve: Callable[[Any, Any], Any], graphql_type: Any, options: dict[str, Any]) -> Any:
    def resolver(root: strawberry.Parent[Any], info: strawberry.Info) -> Any:
        return resolve(root, info)

    resolver.__annotations__["return"] = graphql_type
    metadata = {**options.pop("metadata", {}), DIRECT: resolve}
    return strawberry.field(resolver=resolver, metadata=metadata, **options)


def _attribute(name: str) -> Callable[[Any, Any], Any]:
    def resolve(source: Any, info: Any) -> Any:
        return getattr(source, name)

    resolve.attribute = name  # type: ignore[attr-defined]  # read by gql_app.engine.planned_executor
    return resolve


def install(schema: strawberry.Schema) -> None:
    """Swap in the direct resolvers on the converted schema (once, at import)."""
    graphql_schema: GraphQLSchema = schema._schema
    names = schema.config.name_converter
    for graphql_type in graphql_schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        definition = (graphql_type.extensions or {}).get("strawberry-definition")
        if definition is None or graphql_type.name in ("Query", "Mutation"):
            continue
        for field in definition.fields:
            graphql_field = graphql_type.fields.get(names.get_graphql_name(field))
            if graphql_field is None or field.extensions or field.permission_classes:
                continue
            direct = (field.metadata or {}).get(DIRECT)
            if direct is not None:
                # The planned executor gives such a resolver one info per position of
                # the plan: its context and path depth are right, but the path names
                # the first object resolved there (direct resolvers only read context).
                direct.shares_info = True
                graphql_field.resolve = direct
            elif field.base_resolver is None and not field.arguments:
                graphql_field.resolve = _attribute(field.python_name)
