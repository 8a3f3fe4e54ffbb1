"""The Node interface and ``node``/``nodes``: global IDs resolved through by-id loaders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from graphql import GraphQLObjectType

from gql_app.data.context import Context, Info
from gql_app.data.loaders import Join, Loader
from gql_app.engine.fields import computed, reads
from gql_app.engine.statements import MANY
from gql_app.errors import BadUserInput
from gql_app.relay.ids import decode_id_of, encode_id, is_pk, parse_id


@strawberry.interface(
    description="An object with a globally unique, opaque ID (Relay Object Identification)."
)
class Node:
    id: strawberry.ID


NodeResolver = Callable[[Info, int], Awaitable[Any]]
_resolvers: dict[str, NodeResolver] = {}
_loaded: dict[str, tuple[type[Loader[int, Any]], Callable[[Context, Any], bool] | None]] = {}
"""Type name -> (by-id loader, visibility) of the types ``loaded_node`` registered."""
_reads: dict[str, tuple[int, Any, dict[type[Any], tuple[Join, ...]]]] = {}
"""Type name -> (statements, the by-id loader of its rows, joins) of its fetch."""


def node_type(
    type_name: str,
    statements: int = MANY,
    loader: Any = None,
    joins: dict[type[Any], tuple[Join, ...]] | None = None,
) -> Callable[[NodeResolver], NodeResolver]:
    """Register how a Node type is fetched by primary key (visibility rules included):
    at most ``statements`` statements when its loaders read ``joins`` (``Reads``),
    returning rows of ``loader``."""

    def register(fetch: NodeResolver) -> NodeResolver:
        _resolvers[type_name] = fetch
        _reads[type_name] = (statements, loader, joins or {})
        return fetch

    return register


def loaded_node(
    type_name: str,
    loader: type[Loader[int, Any]],
    visible: Callable[[Context, Any], bool] | None = None,
) -> NodeResolver:
    """Register a Node type fetched through its by-id ``loader``: None when not found,
    or when ``visible(ctx, row)`` says the viewer may not see it."""

    async def fetch(info: Info, pk: int) -> Any:
        found = await info.context.loaders.get(loader, info).load(pk)
        if found is None or (visible is not None and not visible(info.context, found)):
            return None
        return found

    _loaded[type_name] = (loader, visible)
    return node_type(type_name, 1, loader)(fetch)


def _node_statements() -> int:
    """``node``: the most any type's fetch sends (the ID's type is the client's)."""
    return max((statements for statements, _, _ in _reads.values()), default=0)


def _node_source(type_name: str) -> Any:
    found = _reads.get(type_name)
    return found[1] if found is not None else None


def _node_joins() -> dict[type[Any], tuple[Join, ...]]:
    joins: dict[type[Any], tuple[Join, ...]] = {}
    for _, _, wanted in _reads.values():
        for cls, each in wanted.items():
            joins[cls] = tuple(dict.fromkeys((*joins.get(cls, ()), *each)))
    return joins


NODE_READS = reads(_node_statements, _node_source, _node_joins)


async def by_id_or_key(
    info: Info,
    type_name: str,
    id: str | None,
    key_name: str,
    key: Any,
    by_key: type[Loader[Any, Any]],
) -> Any:
    """A root field taking exactly one of a global ``id`` (fetched as ``node`` fetches
    it) or a unique key (loaded by ``by_key``)."""
    if (id is None) == (key is None):
        raise BadUserInput(f"Pass exactly one of `id` or `{key_name}`.")
    if id is not None:
        return await _resolvers[type_name](info, decode_id_of(id, type_name))
    return await info.context.loaders.get(by_key, info).load(key)


def global_id(type_name: str) -> Any:
    """The ``id`` field of a Node type backed by a model with an integer ``id``."""
    return computed(
        lambda root, info: encode_id(type_name, root.id),
        strawberry.ID,
        columns=("id",),
        description="Opaque global ID.",
    )


class Typed:
    """A fetched row tagged with its GraphQL type, for resolving the Node interface."""

    __slots__ = ("row", "type_name")

    def __init__(self, type_name: str, row: Any) -> None:
        self.type_name = type_name
        self.row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


def install(schema: Any) -> None:
    """Resolve the Node interface from the ``Typed`` tag ``node``/``nodes`` put on rows.

    Values are ORM objects or Core rows, not instances of the Strawberry types, so
    the Node types get no ``is_type_of`` (graphql-core would otherwise call it on
    every object it completes).
    """
    graphql_schema = schema._schema
    node = graphql_schema.get_type("Node")
    node.resolve_type = lambda obj, info, abstract_type: obj.type_name
    for graphql_type in graphql_schema.type_map.values():
        if isinstance(graphql_type, GraphQLObjectType) and node in graphql_type.interfaces:
            graphql_type.is_type_of = None


async def resolve_node(info: Info, gid: str) -> Any:
    """The object a global ID names, if the viewer may see it; None when it names
    nothing (an unknown type, a number no primary key has, no such row) or something
    hidden. Only an undecodable ID is BAD_USER_INPUT."""
    return await fetch_node(info, *parse_id(gid))


async def fetch_node(info: Info, type_name: str, pk: int) -> Any:
    fetch = _resolvers.get(type_name)
    if fetch is None or not is_pk(pk):
        return None  # no object could have this ID: no SQL to ask
    found = await fetch(info, pk)
    return None if found is None else Typed(type_name, found)


def _node_batch(roots: list[Any], info: Info, kwargs: dict[str, Any]) -> Any:
    """``node``'s batch form (``engine.fields.Batched``) for a type ``loaded_node``
    registered: its by-id loader's key, no coroutine; None (the resolver runs) for
    any other ID. An undecodable ID raises BAD_USER_INPUT, as the resolver does."""
    type_name, pk = parse_id(kwargs["id"])
    found = _loaded.get(type_name)
    if found is None or not is_pk(pk):
        return None
    loader, visible = found
    ctx = info.context

    def finish(by_id: Loader[int, Any], keys: list[Any]) -> list[Any]:
        row = by_id.loaded(pk)
        if isinstance(row, Exception):
            return [row] * len(keys)
        if row is None or (visible is not None and not visible(ctx, row)):
            return [None] * len(keys)
        return [Typed(type_name, row)] * len(keys)

    return loader, [pk] * len(roots), finish


@strawberry.type
class NodeQuery:
    @strawberry.field(
        description="Fetches any object by its global ID; null when not found or not visible.",
        metadata=NODE_READS,
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)

    node.base_resolver.wrapped_func.batch = _node_batch  # type: ignore[union-attr]

    @strawberry.field(
        description="At most 100 ids; the result has one entry per id, "
        "null where not found or not visible."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        """The limit on ``ids`` is checked with the other limits, before the operation
        begins (``gql_app.engine.limits``); an undecodable ID refuses the whole list
        before any object is fetched."""
        wanted = [parse_id(gid) for gid in ids]
        return list(await asyncio.gather(*(fetch_node(info, *each) for each in wanted)))
