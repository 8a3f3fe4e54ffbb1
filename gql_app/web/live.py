"""The live fan-out, one per process: subscriptions in groups, event batches from
the LISTEN connection (``data.listener``), one execution per group and event.

Subscriptions with the same document, operation, variables and visibility
(``Context.visibility``: anonymous, one user, or admin) form a ``Group``: its
subscription resolver ran once (auth, arguments: ``engine.live``), and each event
is executed once for the group and encoded once; every member's socket gets those
bytes behind its own subscription id.

An event batch is one read transaction. Its objects are fetched by their Node
fetchers (the query rules' visibility) and executed by the planned executor,
every group at once: the loaders that do not read the viewer are the batch's,
shared by the per-viewer contexts, so the SQL statements of a batch depend on
the document's field paths, not on how many subscribers or viewers there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
import strawberry
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    create_source_event_stream,
    parse,
    specified_rules,
)
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import validate_document

from gql_app.data.context import Context
from gql_app.data.events import Topic
from gql_app.data.listener import Batch, EventListener, Interrupted
from gql_app.data.transaction import operation
from gql_app.engine.limits import QueryTooComplex, operation_shape, violations
from gql_app.engine.live import Feed, Watch
from gql_app.engine.planned_executor import PlannedExecutor
from gql_app.errors import ErrorCode, format_error
from gql_app.observability import LiveMetrics, RequestObservation, current_observation
from gql_app.settings import Settings
from gql_app.tracing import Tracer, end_operation, start_operation
from gql_app.users.auth import authenticate
from gql_app.web.trusted import TrustedDocuments, Untrusted, document_id_of
from gql_app.web.view import graphql_response

log = logging.getLogger(__name__)

Errors = list[dict[str, Any]]
"""Formatted GraphQL errors, as an ``error`` message carries them."""


def coded(message: str, code: ErrorCode) -> Errors:
    return [{"message": message, "extensions": {"code": code.value}}]


UNAVAILABLE = coded(
    "Live events were interrupted; subscribe again and refetch what you show.",
    ErrorCode.SERVICE_UNAVAILABLE,
)


class Peer(Protocol):
    """What the fan-out needs of a connection (``web.websocket.LiveConnection``)."""

    viewer: Any
    token: str | None
    token_id: int | None

    def deliver(self, frame: str) -> None:
        """Queue a ``next`` message (never blocks; a full queue ends the connection)."""

    def ended(self, subscription: Subscription, errors: Errors) -> None:
        """The server ended ``subscription``: send ``error`` and forget it."""

    def end_session(self) -> None:
        """The viewer's token was revoked or expired: end everything, close."""

    def ping(self) -> None: ...


@dataclass(eq=False, slots=True)
class Subscription:
    peer: Peer
    id: str
    group: Group
    prefix: str
    """``{"id":...,"type":"next","payload":`` for this subscription."""
    since: int
    """The first event batch it gets: those under way when it subscribed hold
    events committed before it did."""


@dataclass(eq=False)
class Group:
    """Subscriptions that share one execution per event."""

    key: Hashable
    executor: PlannedExecutor
    """Built once (document, operation, coerced variables); copied per event."""
    watch: Watch[Any]
    viewer: Any
    members: dict[Subscription, None] = field(default_factory=dict)


@dataclass(eq=False)
class Routes:
    """A topic's groups, by the keys their watch names (``every``: no keys)."""

    feed: Feed[Any]
    by_key: dict[Hashable, dict[Group, None]] = field(default_factory=dict)
    every: dict[Group, None] = field(default_factory=dict)

    def add(self, group: Group) -> None:
        keys = group.watch.keys
        if keys is None:
            self.every[group] = None
        for key in keys or ():
            self.by_key.setdefault(key, {})[group] = None

    def remove(self, group: Group) -> None:
        self.every.pop(group, None)
        for key in group.watch.keys or ():
            groups = self.by_key.get(key)
            if groups is not None:
                groups.pop(group, None)
                if not groups:
                    del self.by_key[key]

    def __bool__(self) -> bool:
        return bool(self.by_key or self.every)

    def groups_of(self, obj: Any) -> Iterable[Group]:
        found = dict(self.every)
        for key in self.feed.routes(obj):
            found.update(self.by_key.get(key, ()))
        return found


@dataclass(frozen=True, slots=True)
class Prepared:
    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]


class Documents:
    """Parsed and validated documents by (text, operationName), LRU: a thousand
    subscribers sending one document parse it once."""

    def __init__(self, settings: Settings, schema: Any, maxsize: int = 512) -> None:
        self.settings = settings
        self.schema = schema
        self._entries: LRUCache[tuple[str, str | None], Prepared | list[GraphQLError]] = LRUCache(
            maxsize
        )

    def get(self, query: str, operation_name: str | None) -> Prepared | list[GraphQLError]:
        key = (query, operation_name)
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = self._prepare(query, operation_name)
        return found

    def _prepare(self, query: str, operation_name: str | None) -> Prepared | list[GraphQLError]:
        settings = self.settings
        if len(query) > settings.max_document_chars:
            return [
                QueryTooComplex(
                    f"The document is {len(query)} characters long; "
                    f"the maximum is {settings.max_document_chars}."
                )
            ]
        try:
            document = parse(query, max_tokens=settings.max_tokens)
        except GraphQLError as error:
            return [error]
        errors = validate_document(self.schema, document, tuple(specified_rules))
        if errors:
            return list(errors)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        found = [o for o in operations if operation_name in (None, o.name and o.name.value)]
        if len(found) != 1:
            return [GraphQLError("Say which operation to run with `operationName`.")]
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        return Prepared(document, found[0], fragments)


def visibility(viewer: Any) -> Hashable:
    """What the visibility rules read of a viewer (``Context.visibility``): anonymous,
    one user, or admin."""
    return None if viewer is None else ("admin" if viewer.is_admin else viewer.id)


@dataclass(frozen=True, slots=True)
class FetchInfo:
    """What a Node fetcher reads of a resolver's info, for the fan-out's own fetches."""

    context: Context
    path: None = None
    trace_name: ClassVar[str] = "event objects"  # its statements' name in traces


class _Router:
    """The viewer that finds out where an event goes: it sees every row. Nothing it
    fetches is delivered; each group fetches again under its own visibility."""

    id = 0
    is_admin = True


ROUTER = _Router()


class Hub:
    """This process's live subscriptions and the task that feeds them."""

    def __init__(
        self,
        settings: Settings,
        schema: strawberry.Schema,
        listener: EventListener,
        metrics: LiveMetrics,
        new_context: Callable[..., Context],
        trusted: TrustedDocuments | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.trusted = trusted
        """Trusted-documents mode (``web.trusted``): only those documents are run."""
        self.tracer = tracer
        self.app_schema = schema
        self.schema = schema._schema
        self.listener = listener
        self.metrics = metrics
        self.new_context = new_context
        """``new_context(viewer=, bearer_token=)``: a Context of this app, no request."""
        self.documents = Documents(settings, self.schema)
        self.peers: dict[Peer, None] = {}
        self.count = 0
        self._groups: dict[Hashable, Group] = {}
        self._routes: dict[Topic, Routes] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        """Event batches taken so far (the one under way included)."""

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.listener.start()
        consumer = self.listener.consume()
        self._tasks = [asyncio.create_task(self._run(consumer), name="gql_app live fan-out")]
        if self.settings.ws_keepalive_s > 0:
            self._tasks.append(asyncio.create_task(self._keepalive(), name="gql_app keepalive"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.listener.close()

    @property
    def available(self) -> bool:
        return self.listener.connected

    # ------------------------------------------------------------ subscribing

    async def document(self, payload: dict[str, Any]) -> str | Errors:
        """The document of a subscribe message: its ``query``; in trusted-documents
        mode the trusted document it names (``documentId``, ``extensions.persistedQuery``)
        or sends, else the UNTRUSTED_DOCUMENT refusal."""
        query = payload.get("query")
        if self.trusted is None:
            return str(query)  # a string: the socket checked
        try:
            return await self.trusted.resolve(
                query, payload.get("extensions"), document_id_of(payload)
            )
        except Untrusted as error:
            return coded(str(error), ErrorCode.UNTRUSTED_DOCUMENT)

    async def subscribe(
        self, peer: Peer, id: str, query: str, variables: dict[str, Any] | None, name: str | None
    ) -> Subscription | Errors | Prepared:
        """Join ``peer``'s subscription ``id`` to its group (made on first use), or
        the errors that refuse it. A document whose operation is not a
        subscription comes back ``Prepared``, for the caller to run once."""
        viewer = peer.viewer
        variables_key = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
        key = (query, name, variables_key, visibility(viewer))
        group = self._groups.get(key)
        if group is None:
            prepared = self.documents.get(query, name)
            if isinstance(prepared, list):
                return self.format(prepared)
            if prepared.operation.operation is not OperationType.SUBSCRIPTION:
                return prepared  # a query or mutation: the listener and caps do not matter
            opened = self._refusal() or await self._open(key, viewer, prepared, variables, name)
            if not isinstance(opened, Group):
                return opened
            group = opened
        elif refused := self._refusal():
            return refused
        prefix = '{"id":' + orjson.dumps(id).decode() + ',"type":"next","payload":'
        subscription = Subscription(peer, id, group, prefix, self.batches + 1)
        group.members[subscription] = None
        self.count += 1
        self.metrics.subscriptions.inc()
        return subscription

    def _refusal(self) -> Errors | None:
        if not self.available:
            return UNAVAILABLE
        if self.count >= self.settings.ws_max_subscriptions:
            return coded(
                "This server holds its maximum of live subscriptions; try again later.",
                ErrorCode.SERVICE_UNAVAILABLE,
            )
        return None

    def unsubscribe(self, subscription: Subscription) -> None:
        group = subscription.group
        if subscription not in group.members:
            return  # already gone
        del group.members[subscription]
        self.count -= 1
        self.metrics.subscriptions.dec()
        if not group.members and self._groups.get(group.key) is group:
            del self._groups[group.key]
            routes = self._routes.get(group.watch.feed.topic)
            if routes is not None:
                routes.remove(group)

    def _routes_of(self, feed: Feed[Any]) -> Routes:
        routes = self._routes.get(feed.topic)
        if routes is None:
            routes = self._routes[feed.topic] = Routes(feed)
        return routes

    async def _open(
        self,
        key: Hashable,
        viewer: Any,
        prepared: Prepared,
        variables: dict[str, Any] | None,
        name: str | None,
    ) -> Group | Errors:
        """Check the limits, run the subscription resolver, register the group."""
        connections = self.listener.connections
        shape = operation_shape(
            self.settings, self.schema, prepared.operation, prepared.fragments, variables or {}
        )
        refused = [QueryTooComplex(message) for message in violations(self.settings, shape)]
        if refused:
            return self.format(refused[:1])
        ctx = self.new_context(viewer=viewer)
        async with operation(ctx, read_only=True) as op:
            if op.fault is not None:
                return self.format(op.unavailable().errors or [])
            stream = await self._source_stream(ctx, prepared, variables, name)
        if not isinstance(stream, tuple):
            return stream
        if not self.available or self.listener.connections != connections:
            return UNAVAILABLE  # the stream broke meanwhile: the group would miss events
        group = self._groups.get(key)  # another subscriber may have made it meanwhile
        if group is None:
            executor, watch = stream
            executor.context_value = None  # each event brings its own
            group = self._groups[key] = Group(key, executor, watch, viewer)
            self._routes_of(watch.feed).add(group)
        return group

    async def _source_stream(
        self, ctx: Context, prepared: Prepared, variables: dict[str, Any] | None, name: str | None
    ) -> tuple[PlannedExecutor, Watch[Any]] | Errors:
        executor = PlannedExecutor.build(
            self.schema,
            prepared.document,
            context_value=ctx,
            raw_variable_values=variables,
            operation_name=name,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        )
        if isinstance(executor, list):
            return self.format(executor)
        stream = create_source_event_stream(executor)
        if optimized_is_awaitable(stream):
            stream = await stream  # type: ignore[misc]
        if isinstance(stream, ExecutionResult):
            return self.format(stream.errors or [])
        if not isinstance(stream, Watch):
            raise TypeError(f"a subscription resolver returned {type(stream).__name__}")
        return executor, stream  # type: ignore[return-value]

    async def execute(
        self, peer: Peer, query: str, variables: dict[str, Any] | None, name: str | None
    ) -> dict[str, Any]:
        """A query or mutation sent over the socket, run as over HTTP (the schema's
        extensions: limits, transaction, the connection's token)."""
        ctx = self.new_context(bearer_token=peer.token, authenticate=authenticate)
        result = await self.app_schema.execute(
            query, variable_values=variables, context_value=ctx, operation_name=name
        )
        return dict(graphql_response(result, ctx))

    def format(self, errors: Iterable[GraphQLError]) -> Errors:
        suggestions = self.settings.introspection
        return [format_error(error, "", suggestions=suggestions) for error in errors]

    # ------------------------------------------------------------ events

    async def _run(self, consumer: Any) -> None:
        """Deliver each batch in arrival (= commit) order; a break ends everything."""
        while True:
            try:
                batch = await consumer.get_all()
            except Interrupted:
                self.end_all("interrupted")
                continue
            if batch is None:
                return
            try:
                await self.deliver(batch)
            except Exception:  # the database failed mid-batch: events were lost
                log.exception("a live event batch failed")
                self.end_all("database")

    async def deliver(self, batch: Batch) -> None:
        arrived = time.perf_counter()
        self.batches += 1
        number = self.batches
        events = self._events_of(batch)
        if not events:
            return
        observation = RequestObservation("live")
        start_operation(self.tracer, observation, "live batch")
        token = current_observation.set(observation)
        try:
            shared = self.new_context()
            async with operation(shared, read_only=True) as op:
                if op.fault is not None:
                    raise ConnectionError("no database connection for an event batch")
                deliveries = await EventBatch(self, shared, events).run()
        finally:
            current_observation.reset(token)
            end_operation(observation)
            self.metrics.batch_statements.observe(observation.sql_statements)
        await self._send(deliveries, number, arrived)

    def _events_of(self, batch: Batch) -> list[tuple[Routes, int]]:
        """The batch's events that some group listens to; session ends acted on."""
        events: list[tuple[Routes, int]] = []
        for topic, ids in batch:
            self.metrics.events.labels(topic.value).inc(len(ids))
            if topic is Topic.TOKEN or topic is Topic.USER:
                self._end_sessions(topic, set(ids))
                continue
            routes = self._routes.get(topic)
            if routes:
                events.extend((routes, pk) for pk in ids)
        return events

    async def _send(self, deliveries: list[tuple[Group, str]], number: int, arrived: float) -> None:
        """Queue each payload to its group's sockets, in event order. The writers run
        between payloads, so a send buffer holds what its socket could not take,
        not a whole bulk update's results."""
        for group, payload in deliveries:
            members = [s for s in group.members if s.since <= number]
            for subscription in members:
                subscription.peer.deliver(subscription.prefix + payload + "}")
            self.metrics.deliveries.inc(len(members))
            self.metrics.latency.observe(time.perf_counter() - arrived)
            await asyncio.sleep(0)

    def _end_sessions(self, topic: Topic, ids: set[int]) -> None:
        for peer in list(self.peers):
            viewer = peer.viewer
            if viewer is None:
                continue
            if (topic is Topic.TOKEN and peer.token_id in ids) or (
                topic is Topic.USER and viewer.id in ids
            ):
                peer.end_session()

    def end_all(self, reason: str, errors: Errors = UNAVAILABLE) -> None:
        """End every subscription with ``errors`` (the stream broke: clients refetch)."""
        ended = 0
        for group in list(self._groups.values()):
            for subscription in list(group.members):
                subscription.peer.ended(subscription, errors)
                ended += 1
        if ended:
            log.warning("ended %d subscriptions (%s)", ended, reason)
            self.metrics.drops.labels(reason).inc(ended)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ws_keepalive_s)
            for peer in list(self.peers):
                peer.ping()


class EventBatch:
    """One batch's work, in one read transaction: fetch each event's object as the
    router sees it, find its groups, fetch it again under each group's visibility
    and execute the group's document on it; all of it concurrently, so every
    loader sees all of its keys at once."""

    def __init__(self, hub: Hub, shared: Context, events: list[tuple[Routes, int]]) -> None:
        self.hub = hub
        self.shared = shared
        self.events = events
        self.contexts: dict[Any, Context] = {}

    def context(self, viewer: Any) -> Context:
        key = ROUTER if viewer is ROUTER else visibility(viewer)
        ctx = self.contexts.get(key)
        if ctx is None:
            ctx = self.contexts[key] = self.hub.new_context(viewer=viewer)
            ctx.join(self.shared)
        return ctx

    async def run(self) -> list[tuple[Group, str]]:
        """(group, encoded payload) in event order: what to send to whom."""
        try:
            router = FetchInfo(self.context(ROUTER))
            found = await asyncio.gather(
                *(routes.feed.fetch(router, pk) for routes, pk in self.events)  # type: ignore[arg-type]
            )
            jobs: dict[tuple[Group, int], Any] = {}
            order: list[tuple[Group, int]] = []
            for (routes, pk), obj in zip(self.events, found, strict=True):
                if obj is None:
                    continue  # deleted since, or never there
                for group in routes.groups_of(obj):
                    if (group, pk) not in jobs:
                        jobs[group, pk] = self.execute(group, routes.feed, pk)
                    order.append((group, pk))
            payloads = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        finally:
            for ctx in self.contexts.values():
                ctx.loaders.close()
        return [(group, payloads[group, pk]) for group, pk in order if payloads[group, pk]]

    async def execute(self, group: Group, feed: Feed[Any], pk: int) -> str | None:
        """The group's payload for one event, or None when its viewer may not see it."""
        ctx = self.context(group.viewer)
        obj = await feed.fetch(FetchInfo(ctx), pk)  # type: ignore[arg-type]
        if obj is None:
            return None
        executor = group.executor.build_per_event_executor(obj)
        executor.context_value = ctx
        result: Any = executor.execute_operation(False)
        if optimized_is_awaitable(result):
            result = await result
        return orjson.dumps(graphql_response(result, ctx)).decode()
