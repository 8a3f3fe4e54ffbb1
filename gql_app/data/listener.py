"""The per-process LISTEN connection: hears every committed event (``data.events``)
and hands it to this process's consumers in batches.

One asyncpg connection of its own, outside SQLAlchemy's pool and not through
PgBouncer's transaction mode (``GQL_LISTEN_URL``). A lost connection is an
``Interrupted`` signal to every consumer, then reconnects with bounded
exponential backoff until it succeeds or the listener is closed. From a lifespan:
``async with EventListener.from_settings(settings) as listener: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import asyncpg

from gql_app.data.db import asyncpg_dsn
from gql_app.data.events import CHANNEL, MalformedPayload, Topic, decode
from gql_app.settings import Settings

log = logging.getLogger(__name__)

Event = tuple[Topic, list[int]]
Batch = list[Event]
"""Events that arrived together, in arrival (= commit) order; shared by every consumer:
read it, do not change it."""


class Interrupted(Exception):
    """The stream broke: events committed meanwhile may have been missed, so whatever
    a consumer derived from earlier events must be refetched (a subscription ends
    with SERVICE_UNAVAILABLE). Later batches keep coming."""


class _Closed:
    """The end of a consumer's stream (the consumer or the listener was closed)."""


CLOSED = _Closed()


class Consumer:
    """One consumer's stream: ``await get()`` (or ``async for``) gives the batches in
    arrival order, raises ``Interrupted`` where the stream broke, and ends (None,
    or the end of ``async for``) once closed. At most ``max_batches`` wait unread:
    a consumer further behind loses them and is told ``Interrupted`` instead."""

    def __init__(self, listener: EventListener, max_batches: int) -> None:
        self._listener = listener
        self._max_batches = max_batches
        self._items: deque[Batch | Interrupted | _Closed] = deque()
        self._ready = asyncio.Event()

    def put(self, item: Batch | Interrupted | _Closed) -> None:
        if self._items and self._items[-1] is CLOSED:
            return
        if len(self._items) >= self._max_batches and isinstance(item, list):
            self._items.clear()
            item = Interrupted("the consumer fell behind")
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Batch | None:
        """The next batch; None once closed. Raises ``Interrupted`` (once per break)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items[0]
        if isinstance(item, _Closed):
            return None
        self._items.popleft()
        if isinstance(item, Interrupted):
            raise item
        return item

    async def get_all(self) -> Batch | None:
        """``get()``, joined with the batches that are already waiting behind it (up
        to a break or the end): a consumer that fell behind catches up in one step."""
        batch = await self.get()
        if batch is None:
            return None
        joined: Batch | None = None
        while self._items and isinstance(self._items[0], list):
            if joined is None:
                joined = list(batch)
            joined.extend(self._items.popleft())  # type: ignore[arg-type]
        return batch if joined is None else joined

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self

    async def __anext__(self) -> Batch:
        batch = await self.get()
        if batch is None:
            raise StopAsyncIteration
        return batch

    def close(self) -> None:
        self._listener.remove(self)
        self.put(CLOSED)


class EventListener:
    """LISTENs on ``data.events.CHANNEL`` and feeds every ``consume()``-r."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        keepalive: float = 30.0,
        max_batches: int = 10_000,
    ) -> None:
        self.url = asyncpg_dsn(url)
        self.connect_timeout = connect_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.keepalive = keepalive
        self.max_batches = max_batches
        self._consumers: dict[Consumer, None] = {}
        self._pending: Batch = []
        self._connection: Any = None
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connections = 0
        """LISTEN connections made so far: a change means the stream broke in between."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EventListener:
        url = settings.listen_url or settings.database_url
        if not url:
            raise RuntimeError("no database URL to LISTEN on: set GQL_LISTEN_URL or DATABASE_URL")
        return cls(url, connect_timeout=settings.connect_timeout_s)

    # ------------------------------------------------------------ consumers

    def consume(self) -> Consumer:
        """A new consumer: every batch that arrives from now on."""
        consumer = Consumer(self, self.max_batches)
        self._consumers[consumer] = None
        return consumer

    def remove(self, consumer: Consumer) -> None:
        self._consumers.pop(consumer, None)

    # ------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def server_pid(self) -> int | None:
        """The LISTEN connection's backend pid (for diagnostics and tests)."""
        connection = self._connection
        return None if connection is None else int(connection.get_server_pid())

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def start(self) -> None:
        """Start listening; returns after the first attempt to connect, whether it
        succeeded (then every later commit is heard) or not (then it retries)."""
        if self._task is not None:
            raise RuntimeError("the listener is already started")
        self._attempted.clear()
        self._task = asyncio.create_task(self._run(), name="gql_app event listener")
        await self._attempted.wait()

    async def close(self) -> None:
        """Stop listening and end every consumer's stream; no task is left running."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in list(self._consumers):
            consumer.close()

    async def __aenter__(self) -> EventListener:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ the connection

    async def _run(self) -> None:
        """Connect, listen until the connection is lost, tell the consumers, again."""
        delay = self.min_backoff
        while True:
            try:
                connection, lost = await self._connect()
            except Exception as exc:  # refused, timed out, auth, server starting up...
                self._attempted.set()
                log.warning("cannot LISTEN (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            delay = self.min_backoff
            self._attempted.set()
            await self._hold(connection, lost)
            log.warning("the LISTEN connection was lost; reconnecting")
            self._interrupt()

    async def _connect(self) -> tuple[Any, asyncio.Event]:
        connection = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout,
            statement_cache_size=0,
            server_settings={"application_name": "gql_app_listener"},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._on_notification)
        except BaseException:
            connection.terminate()
            raise
        return connection, lost

    async def _hold(self, connection: Any, lost: asyncio.Event) -> None:
        """Returns once ``connection`` is lost: closed by the server, or silent for
        ``keepalive`` seconds and then unanswered for as long."""
        self._connection = connection
        self.connections += 1
        self._connected.set()
        try:
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                    continue
                try:
                    await connection.execute("SELECT 1", timeout=self.keepalive)
                except Exception:
                    return
        finally:
            self._connected.clear()
            self._connection = None
            await close_quietly(connection)

    def _on_notification(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        """asyncpg calls this once per notification, in arrival order; those of one
        read from the socket are queued together, so they leave as one batch."""
        try:
            event = decode(payload)
        except MalformedPayload as exc:
            log.warning("ignored an event payload: %s", exc)
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(event)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            for consumer in list(self._consumers):
                consumer.put(batch)

    def _interrupt(self) -> None:
        """What arrived before the loss first, then the break."""
        self._flush()
        for consumer in list(self._consumers):
            consumer.put(Interrupted("the LISTEN connection was lost"))


async def close_quietly(connection: Any) -> None:
    """Close gracefully if the connection still answers, else drop it."""
    if connection.is_closed():
        return
    try:
        await connection.close(timeout=1.0)
    except Exception:
        connection.terminate()
