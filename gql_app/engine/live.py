"""Subscription fields, declared once per domain: which events a field listens to
(a ``data.events`` topic), how an event's object is fetched under the query
rules' visibility, and the keys it is delivered under. The fan-out
(``web.live``) does the rest, for every field alike.

A subscription resolver refuses what the viewer may not subscribe to (raising an
``AppError``, as a query field would) and returns its ``Feed``'s ``watch``::

    COMMENTS = Feed(Topic.COMMENT, fetch_comment, lambda comment: (comment.post_id,))

    @strawberry.subscription
    async def comment_added(self, info: Info, post_id: strawberry.ID) -> AsyncIterator[Comment]:
        post = await fetch_post(info, decode_id_of(post_id, "Post", "postId"))
        if post is None:
            raise NotFound(...)
        return COMMENTS.watch([post.id])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gql_app.data.context import Info
from gql_app.data.events import Topic

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Feed(Generic[T]):
    """One kind of live event, as subscription fields see it."""

    topic: Topic
    fetch: Callable[[Info, int], Awaitable[T | None]]
    """The event's object by primary key, or None when the viewer may not see it:
    the Node fetcher of its type, so visibility is the query rules'."""
    routes: Callable[[T], Iterable[Hashable]]
    """The keys an object is delivered under (a comment: its post's id)."""

    def watch(self, keys: Iterable[Hashable] | None = None) -> Watch[T]:
        """A subscription to the events whose object routes to one of ``keys``
        (every event of the topic when None)."""
        return Watch(self, None if keys is None else frozenset(keys))


class Watch(AsyncIterator[T]):
    """What a subscription resolver returns: graphql-core's source event stream
    (``create_source_event_stream`` checks for an async iterable), read by the
    fan-out for its feed and keys. Events are not pulled from it one subscriber
    at a time: ``web.live`` executes each batch once per group of subscribers."""

    __slots__ = ("feed", "keys")

    def __init__(self, feed: Feed[T], keys: frozenset[Hashable] | None) -> None:
        self.feed = feed
        self.keys = keys

    async def __anext__(self) -> T:
        raise RuntimeError(
            "live events are delivered by the WebSocket endpoint's fan-out (gql_app.web.live)"
        )

    def __repr__(self) -> str:
        keys: Any = "all" if self.keys is None else sorted(self.keys, key=repr)
        return f"Watch({self.feed.topic.value}, {keys})"
