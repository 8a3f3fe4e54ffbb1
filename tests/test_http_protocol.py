"""The HTTP/1.1 protocol ``gql-app serve`` runs (``web.http.HeadWithBody``):
uvicorn's, with a response's head and first body chunk written in one write.
Driven byte by byte, as uvicorn drives it, on a transport that records writes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from gql_app.web.http import HeadWithBody


class Transport(asyncio.Transport):
    """Records what the protocol writes; the connection stays open until closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def serve(app: Any) -> tuple[HeadWithBody, Transport]:
    config = Config(app=app, http=HeadWithBody, lifespan="off", access_log=False)
    protocol = HeadWithBody(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def answered(transport: Transport, count: int = 1) -> None:
    for _ in range(200):
        if sum(w.startswith(b"HTTP/1.1 ") for w in transport.writes) >= count:
            await asyncio.sleep(0.01)  # and whatever follows
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no answer: {transport.writes}")


def body_app(*chunks: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        length = sum(map(len, chunks))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(length).encode())],
            }
        )
        for index, chunk in enumerate(chunks):
            more = index < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    return app


POST = b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


async def test_the_head_and_the_body_go_out_in_one_write():
    protocol, transport = serve(body_app(b'{"data":{}}'))
    protocol.data_received(POST)
    await answered(transport)
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
    assert body == b'{"data":{}}'


async def test_later_chunks_are_written_as_they_come():
    protocol, transport = serve(body_app(b"first,", b"second"))
    protocol.data_received(POST)
    await answered(transport)
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\nfirst,")
    assert transport.writes[1] == b"second"


async def test_pipelined_requests_get_one_write_each_in_order():
    protocol, transport = serve(body_app(b"ok"))
    protocol.data_received(POST * 3)
    await answered(transport, 3)
    assert len(transport.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"ok") for w in transport.writes)


async def test_a_head_request_is_answered_with_its_head():
    protocol, transport = serve(body_app(b"not sent"))
    protocol.data_received(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
    await answered(transport)
    assert b"".join(transport.writes).endswith(b"\r\n\r\n")
    assert b"not sent" not in b"".join(transport.writes)


async def test_100_continue_is_sent_before_the_client_sends_its_body():
    protocol, transport = serve(body_app(b"ok"))
    protocol.data_received(
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
    )
    for _ in range(100):
        if transport.writes:
            break
        await asyncio.sleep(0.005)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # not held
    protocol.data_received(b"{}")
    await answered(transport, 2)
    assert transport.writes[-1].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[-1].endswith(b"ok")


@pytest.mark.parametrize("failure", ["raises", "returns"])
async def test_an_app_that_fails_after_its_head_still_sends_it_then_closes(failure):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if failure == "raises":
            raise RuntimeError("broken")

    protocol, transport = serve(app)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    for _ in range(100):
        if transport.closed:
            break
        await asyncio.sleep(0.005)
    assert transport.closed
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 200 OK")
