"""GraphQL over WebSocket at ``/graphql``: the graphql-transport-ws protocol (the
``graphql-ws`` client's, which Apollo Client, urql, Relay and GraphiQL use).

Replaces Strawberry's WebSocket handler, which runs each subscription as its own
async generator and executes every event once per subscriber: here subscriptions
join the process's fan-out (``web.live``), which executes each event once per
group of subscribers and hands every socket the same encoded payload.

Each connection has a bounded send queue drained by one writer task: the
fan-out never waits for a socket, and a client that stops reading is
disconnected once ``ws_send_buffer_bytes`` of results pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from gql_app.data.transaction import operation
from gql_app.errors import ErrorCode
from gql_app.users.auth import Session, session_of
from gql_app.web.live import Errors, Hub, Prepared, Subscription, coded
from gql_app.web.view import bearer_token

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"


class Close(IntEnum):
    """Close codes: the protocol's, and RFC 6455's for the server's own reasons."""

    GOING_AWAY = 1001  # the server is shutting down
    TRY_AGAIN_LATER = 1013  # too many connections, or the database is unavailable
    BAD_REQUEST = 4400  # a message the protocol does not allow
    UNAUTHORIZED = 4401  # subscribe before connection_ack
    FORBIDDEN = 4403  # a token that opens no session, or whose session ended
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    INIT_TIMEOUT = 4408  # no connection_init in time
    SUBSCRIBER_EXISTS = 4409  # a subscribe with an id already in use
    TOO_MANY_INITIALISATIONS = 4429
    SLOW_CONSUMER = 4413  # results piled up past the send buffer (not the protocol's)


class Refused(Exception):
    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


PENDING: Any = object()
"""A subscription id whose subscribe is still being set up."""


class LiveConnection:
    """One WebSocket: the protocol's state machine and the send queue."""

    def __init__(self, hub: Hub, scope: Scope, receive: Receive, send: Send) -> None:
        self.hub = hub
        self.settings = hub.settings
        self.scope = scope
        self.receive = receive
        self.send = send
        self.viewer: Any = None
        self.token: str | None = None
        self.token_id: int | None = None
        self.initialised = False
        self.acknowledged = False
        self.subscriptions: dict[str, Subscription | Any] = {}
        self._frames: deque[str] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry: asyncio.TimerHandle | None = None
        self._init_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ the socket

    async def serve(self) -> None:
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        if PROTOCOL not in self.scope.get("subprotocols", ()):
            await self.send({"type": "websocket.accept"})
            await self._close(Close.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        await self.send({"type": "websocket.accept", "subprotocol": PROTOCOL})
        if len(self.hub.peers) >= self.settings.ws_max_connections:
            await self._close(Close.TRY_AGAIN_LATER, "Too many connections")
            return
        self.hub.peers[self] = None
        self.hub.metrics.connections.inc()
        writer = asyncio.create_task(self._write())
        self._init_timer = asyncio.get_running_loop().call_later(
            self.settings.ws_init_timeout_s,
            self.close,
            Close.INIT_TIMEOUT,
            "Connection initialisation timeout",
        )
        try:
            await self._read()
        finally:
            self._init_timer.cancel()
            self._forget()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            del self.hub.peers[self]
            self.hub.metrics.connections.dec()

    async def _read(self) -> None:
        """Messages until the client disconnects or the connection is closed."""
        while self._closing is None:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self._handle(message)
            except Refused as refused:
                self.close(refused.code, refused.reason)
        while (await self.receive())["type"] != "websocket.disconnect":
            pass  # closing: the writer sends the close frame; wait for the client's

    async def _write(self) -> None:
        """Drain the queue to the socket; send the close frame once asked to."""
        try:
            while True:
                while self._frames:
                    frame = self._frames.popleft()
                    self._queued_bytes -= len(frame)
                    await self.send({"type": "websocket.send", "text": frame})
                if self._closing is not None:
                    await self._close(*self._closing)
                    return
                self._wake.clear()
                await self._wake.wait()
        except OSError:
            return  # the client is gone; the reader hears the disconnect

    async def _close(self, code: int, reason: str) -> None:
        await self.send({"type": "websocket.close", "code": code, "reason": reason})

    def close(self, code: int, reason: str) -> None:
        """Close once what is queued is sent; the reader stops handling messages."""
        if self._closing is None:
            self._closing = (code, reason)
            self._forget()
            self._wake.set()

    def _queue(self, frame: str) -> None:
        if self._closing is not None:
            return
        if self._queued_bytes + len(frame) > self.settings.ws_send_buffer_bytes:
            self._overflow()
            return
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()

    def _overflow(self) -> None:
        """The client stopped reading: drop what is queued and the connection. Its
        socket buffer is full, so no close frame could reach it; the transport is
        aborted (uvicorn's, reached through its ``send``), else only left."""
        self.hub.metrics.drops.labels("slow_consumer").inc(len(self.live()))
        self._frames.clear()
        self._queued_bytes = 0
        self.close(Close.SLOW_CONSUMER, "Send buffer full: the client is not reading")
        transport = getattr(getattr(self.send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()

    def _message(self, message: dict[str, Any]) -> None:
        self._queue(orjson.dumps(message).decode())

    # ------------------------------------------------------------ what the fan-out calls

    def deliver(self, frame: str) -> None:
        self._queue(frame)

    def ended(self, subscription: Subscription, errors: Errors) -> None:
        if self.subscriptions.get(subscription.id) is subscription:
            del self.subscriptions[subscription.id]
            self.hub.unsubscribe(subscription)
            self._message({"id": subscription.id, "type": "error", "payload": errors})

    def end_session(self) -> None:
        errors = coded("Your session ended; sign in again.", ErrorCode.UNAUTHENTICATED)
        for subscription in self.live():
            self.ended(subscription, errors)
        self.hub.metrics.drops.labels("session_ended").inc()
        self.close(Close.FORBIDDEN, "Forbidden: the session ended")

    def ping(self) -> None:
        if self.acknowledged:
            self._queue('{"type":"ping"}')

    def live(self) -> list[Subscription]:
        return [s for s in self.subscriptions.values() if isinstance(s, Subscription)]

    def _forget(self) -> None:
        """Leave the fan-out: no more results for this connection."""
        for subscription in self.live():
            self.hub.unsubscribe(subscription)
        self.subscriptions.clear()
        for task in self._tasks:
            task.cancel()
        if self._expiry is not None:
            self._expiry.cancel()

    # ------------------------------------------------------------ the protocol

    async def _handle(self, message: Any) -> None:
        text = message.get("text")
        if text is None:
            raise Refused(Close.BAD_REQUEST, "Messages must be JSON text")
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Refused(Close.BAD_REQUEST, "Invalid message received") from None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "connection_init":
            await self._init(data.get("payload"))
        elif kind == "ping":
            self._message({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            self._subscribe(data)
        elif kind == "complete":
            self._complete(data.get("id"))
        else:
            raise Refused(Close.BAD_REQUEST, f"Invalid message type {str(kind)[:40]!r}")

    async def _init(self, payload: Any) -> None:
        if self.initialised:
            raise Refused(Close.TOO_MANY_INITIALISATIONS, "Too many initialisation requests")
        self.initialised = True
        if self._init_timer is not None:
            self._init_timer.cancel()
        if payload is not None and not isinstance(payload, dict):
            raise Refused(Close.BAD_REQUEST, "The connection_init payload must be an object")
        self.token = bearer_token(authorization(payload or {}, self.scope))
        if self.token is not None:
            self._start_session(await self._session(self.token))
        self.acknowledged = True
        self._message({"type": "connection_ack"})

    async def _session(self, token: str) -> Session:
        ctx = self.hub.new_context()
        try:
            async with operation(ctx, read_only=True) as op:
                session = None if op.fault is not None else await session_of(ctx, token)
                if op.fault is not None:
                    raise Refused(Close.TRY_AGAIN_LATER, "The database is unavailable")
        except Refused:
            raise
        except Exception as exc:
            log.warning("cannot check a WebSocket token: %r", exc)
            raise Refused(Close.TRY_AGAIN_LATER, "The database is unavailable") from None
        if session is None:
            raise Refused(Close.FORBIDDEN, "Forbidden: the token opens no session")
        return session

    def _start_session(self, session: Session) -> None:
        self.viewer = session.viewer
        self.token_id = session.token_id
        seconds = (session.expires_at - datetime.now(UTC)).total_seconds()
        self._expiry = asyncio.get_running_loop().call_later(max(seconds, 0), self.end_session)

    def _subscribe(self, data: dict[str, Any]) -> None:
        if not self.acknowledged:
            raise Refused(Close.UNAUTHORIZED, "Unauthorized")
        id, payload = data.get("id"), data.get("payload")
        if not isinstance(id, str) or not id or len(id) > 128 or not isinstance(payload, dict):
            raise Refused(Close.BAD_REQUEST, "subscribe needs an id and a payload")
        query, variables = payload.get("query"), payload.get("variables")
        name = payload.get("operationName")
        if (
            (not isinstance(query, str) and self.hub.trusted is None)  # else: an id may name it
            or not isinstance(variables, dict | None)
            or not isinstance(name, str | None)
        ):
            raise Refused(Close.BAD_REQUEST, "The subscribe payload needs a query string")
        if id in self.subscriptions:
            raise Refused(Close.SUBSCRIBER_EXISTS, f"Subscriber for {id} already exists")
        limit = self.settings.ws_max_subscriptions_per_connection
        if len(self.subscriptions) >= limit:
            self._message(
                {
                    "id": id,
                    "type": "error",
                    "payload": coded(
                        f"A connection may hold {limit} subscriptions; complete one first.",
                        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    ),
                }
            )
            return
        self.subscriptions[id] = PENDING
        task = asyncio.create_task(self._start(id, payload, variables, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(
        self, id: str, payload: dict[str, Any], variables: dict[str, Any] | None, name: str | None
    ) -> None:
        try:
            query = await self.hub.document(payload)
            outcome: Subscription | Errors | Prepared
            if isinstance(query, str):
                outcome = await self.hub.subscribe(self, id, query, variables, name)
            else:
                outcome = query  # refused
            if isinstance(outcome, Prepared) and isinstance(query, str):
                response = await self.hub.execute(self, query, variables, name)
                if self.subscriptions.pop(id, None) is PENDING:
                    self._answer(id, response)
                return
        except Exception:
            log.exception("subscribe failed")
            outcome = coded("Internal server error.", ErrorCode.INTERNAL_SERVER_ERROR)
        if self.subscriptions.get(id) is not PENDING:  # completed (or closed) meanwhile
            if isinstance(outcome, Subscription):
                self.hub.unsubscribe(outcome)
            return
        if isinstance(outcome, Subscription):
            self.subscriptions[id] = outcome
        else:
            del self.subscriptions[id]
            self._message({"id": id, "type": "error", "payload": outcome})

    def _answer(self, id: str, response: dict[str, Any]) -> None:
        """A query or mutation sent over the socket: its result, then complete; a
        request error (no ``data``) is an ``error`` message."""
        if "data" not in response:
            self._message({"id": id, "type": "error", "payload": response.get("errors", [])})
            return
        self._message({"id": id, "type": "next", "payload": response})
        self._message({"id": id, "type": "complete"})

    def _complete(self, id: Any) -> None:
        if not isinstance(id, str):
            raise Refused(Close.BAD_REQUEST, "complete needs an id")
        found = self.subscriptions.pop(id, None)
        if isinstance(found, Subscription):
            self.hub.unsubscribe(found)


def authorization(payload: dict[str, Any], scope: Scope) -> str | None:
    """The ``Authorization`` value of the connection_init payload (any case), else
    the upgrade request's header (clients that can set one)."""
    for key, value in payload.items():
        if isinstance(key, str) and key.lower() == "authorization" and isinstance(value, str):
            return value
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


class GraphQLWebSocket:
    """The ASGI endpoint for WebSocket scopes at /graphql."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub(scope)
        await LiveConnection(hub, scope, receive, send).serve()
