"""The Node interface and ``node``/``nodes``: global IDs resolved through by-id loaders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from gql_app.context import Info
from gql_app.errors import BadUserInput
from gql_app.fastpath import computed
from gql_app.ids import decode_id, encode_id


@strawberry.interface(
    description="An object with a globally unique, opaque ID (Relay Object Identification)."
)
class Node:
    id: strawberry.ID


NodeResolver = Callable[[Info, int], Awaitable[Any]]
_resolvers: dict[str, NodeResolver] = {}


def node_type(type_name: str) -> Callable[[NodeResolver], NodeResolver]:
    """Register how a Node type is fetched by primary key (visibility rules included)."""

    def register(fetch: NodeResolver) -> NodeResolver:
        _resolvers[type_name] = fetch
        return fetch

    return register


def global_id(type_name: str) -> Any:
    """The ``id`` field of a Node type backed by a model with an integer ``id``."""
    return computed(
        lambda root, info: encode_id(type_name, root.id),
        strawberry.ID,
        description="Opaque global ID.",
    )


async def resolve_node(info: Info, gid: str) -> Any:
    type_name, pk = decode_id(gid)
    fetch = _resolvers.get(type_name)
    if fetch is None:
        raise BadUserInput(f"Invalid ID: {gid[:64]!r}.")
    return await fetch(info, pk)


@strawberry.type
class NodeQuery:
    @strawberry.field(
        description="Fetches any object by its global ID; null when not found or not visible."
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)

    @strawberry.field(
        description="At most 100 ids; the result has one entry per id, "
        "null where not found or not visible."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        limit = info.context.settings.max_ids
        if len(ids) > limit:
            raise BadUserInput(f"`ids` takes at most {limit} IDs; got {len(ids)}.")
        for gid in ids:  # refuse malformed IDs and unknown types before any SQL runs
            if decode_id(gid)[0] not in _resolvers:
                raise BadUserInput(f"Invalid ID: {gid[:64]!r}.")
        return list(await asyncio.gather(*(resolve_node(info, gid) for gid in ids)))
