"""The HTTP/1.1 protocol ``gql-app serve`` runs: uvicorn's httptools protocol,
writing a response's head together with its first body chunk.

uvicorn writes the status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two
``write()`` calls, so two system calls and two wake-ups of the client for every
response, where one carries both (about 4% of a one-statement query's CPU, and
a wake-up of the client saved). ``gql-app serve`` passes it to uvicorn
(``http="gql_app.web.http:HeadWithBody"``; with uvicorn's own command line,
``--http gql_app.web.http:HeadWithBody``).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadWithBody(HttpToolsProtocol):
    """uvicorn's httptools protocol; each response's writes go through ``Joined``."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle is previous:
            return  # an upgrade (WebSocket): not a request of this protocol's
        joined = Joined(cycle.transport)
        send = cycle.send

        async def send_joined(message: Any) -> None:
            start = message["type"] == "http.response.start"
            if start:
                joined.hold_next()
            await send(message)
            if not start:
                joined.flush()  # a body chunk went out with the head, or none did (HEAD)

        cycle.transport = joined  # type: ignore[assignment]
        cycle.send = send_joined  # type: ignore[method-assign]


class Joined:
    """A response's transport: the write after ``hold_next`` (the head) waits and
    goes out with the next one (the first body chunk), or alone once the first
    body message is sent (a HEAD request's has no write), or before the transport
    closes. Everything else is the transport's."""

    __slots__ = ("_held", "_holding", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._held: bytes | None = None
        self._holding = False

    def hold_next(self) -> None:
        self._holding = True

    def write(self, data: bytes) -> None:
        if self._holding:
            self._holding = False
            self._held = data if self._held is None else self._held + data
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self.transport.write(data)

    def flush(self) -> None:
        self._holding = False
        if self._held is not None:
            data, self._held = self._held, None
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
