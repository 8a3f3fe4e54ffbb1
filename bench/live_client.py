"""A subscriber process for ``bench/live.py``: many graphql-transport-ws connections,
one subscription each, and the bookkeeping that checks what they receive.

    python -m bench.live_client CONFIG.json      (started by bench/live.py)

Each connection is an ``asyncio.Protocol`` driving websockets' sans-I/O
``ClientProtocol`` (the library's own framing, handshake and ping answers, without
a coroutine per message: about 5 µs per received frame, so a couple of these
processes keep up with tens of thousands of deliveries per second on the
machine the server shares). connection_init → connection_ack → subscribe, as
the graphql-ws client does; the protocol's own ``ping`` messages are answered.

Per received ``next``:

- ``commentAdded``: the body is ``"<seq> <unix time the writer sent it>"``; the
  receive time minus that goes into a 0.1 ms histogram, and per subscription the
  sequence numbers must arrive once each and in increasing order.
- ``productChanged``: the product's rank in the writer's rotation (from the
  config) must arrive once each and in increasing order per subscription; receive
  times are kept per rank and turned into latencies at ``report``, when the
  writer's send times are known.

Commands on stdin, one JSON line answered on stdout each: ``status``,
``report <send-times.json>``, ``quit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from bench.workloads import W6_COMMENT_ADDED, W6_PRODUCT_CHANGED

PROTOCOL = Subprotocol("graphql-transport-ws")
OPEN_CONCURRENCY = 50  # handshakes in flight per process
OPEN_TIMEOUT_S = 30.0
BUCKET_PER_MS = 10  # latency histogram resolution: 0.1 ms


class Tally:
    """What every connection of this process received, kept per kind."""

    def __init__(self, ranks: dict[str, int]) -> None:
        self.ranks = ranks  # product global id -> rank in the writer's rotation
        self.received: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.out_of_order: Counter[str] = Counter()
        self.comment_latency: Counter[int] = Counter()  # 0.1 ms buckets
        self.commit_latency: Counter[int] = Counter()  # from the comment's createdAt
        self.worst: dict[int, float] = {}  # second of the run -> worst comment latency, s
        self.product_times: dict[int, list[float]] = {}  # rank -> receive times
        self.errors: list[Any] = []
        self.unexpected_closes = 0


class Subscriber(asyncio.Protocol):
    """One WebSocket connection holding one subscription."""

    def __init__(
        self, kind: str, uri: str, init: dict[str, Any], subscribe: bytes, tally: Tally
    ) -> None:
        self.kind = kind
        self.ws = ClientProtocol(parse_uri(uri), subprotocols=[PROTOCOL], max_size=None)
        self.init = init
        self.subscribe = subscribe
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False
        self.last = -1
        self.seen = bytearray()

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ws.send_request(self.ws.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.on_message(event.data)
            elif isinstance(event, Response):
                self.on_handshake(event)
        self.flush()  # pongs, close frames

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.tally.unexpected_closes += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake: {exc}"))

    def flush(self) -> None:
        out = self.ws.data_to_send()
        if self.transport is not None and out:
            data = b"".join(out)
            if data:
                self.transport.write(data)
            else:  # the sans-I/O protocol asks for EOF
                self.transport.close()

    def send(self, message: bytes) -> None:
        self.ws.send_text(message)
        self.flush()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.ws.send_close()
            self.flush()
            self.transport.close()

    # ------------------------------------------------------------ the protocol

    def on_handshake(self, response: Response) -> None:
        if response.status_code != 101:
            self.ready.set_exception(ConnectionError(f"handshake: HTTP {response.status_code}"))
            return
        self.send(orjson.dumps({"type": "connection_init", "payload": self.init}))

    def on_message(self, raw: bytes | bytearray | memoryview) -> None:
        message = orjson.loads(raw)
        kind = message.get("type")
        if kind == "next":
            self.on_next(message["payload"])
        elif kind == "connection_ack":
            self.send(self.subscribe)
            self.ready.set_result(None)
        elif kind == "ping":
            self.send(b'{"type":"pong"}')
        elif kind in ("error", "complete"):
            self.tally.errors.append(message)

    def on_next(self, payload: dict[str, Any]) -> None:
        now = time.time()
        tally = self.tally
        if payload.get("errors") or not payload.get("data"):
            tally.errors.append(payload)
            return
        if self.kind == "comment":
            seq_text, sent_text = payload["data"]["commentAdded"]["body"].split()
            seq, sent = int(seq_text), float(sent_text)
            tally.comment_latency[int((now - sent) * 1000 * BUCKET_PER_MS)] += 1
            # createdAt is the writing transaction's start (now()): committed a few
            # ms later, so this is a tight upper bound of commit-to-delivery
            created = datetime.fromisoformat(payload["data"]["commentAdded"]["createdAt"])
            tally.commit_latency[int((now - created.timestamp()) * 1000 * BUCKET_PER_MS)] += 1
            second = int(sent)
            if now - sent > tally.worst.get(second, 0.0):
                tally.worst[second] = now - sent
        else:
            seq = tally.ranks[payload["data"]["productChanged"]["id"]]
            tally.product_times.setdefault(seq, []).append(now)
        tally.received[self.kind] += 1
        self.check_order(seq)

    def check_order(self, seq: int) -> None:
        if seq >= len(self.seen):
            self.seen.extend(bytes(seq + 64 - len(self.seen)))
        if self.seen[seq]:
            self.tally.duplicates[self.kind] += 1
        elif seq < self.last:
            self.tally.out_of_order[self.kind] += 1
        self.seen[seq] = 1
        self.last = max(self.last, seq)


class Client:
    """This process's subscribers, opened with bounded concurrency."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.tally = Tally(config["product_ranks"])
        self.subscribers: list[Subscriber] = []
        self.failed: list[str] = []
        self.opened = 0

    def documents(self) -> dict[str, bytes]:
        def message(query: str, variables: dict[str, Any] | None) -> bytes:
            payload = {"query": query, "variables": variables}
            return orjson.dumps({"id": "1", "type": "subscribe", "payload": payload})

        return {
            "comment": message(W6_COMMENT_ADDED, {"postId": self.config["post_id"]}),
            "product": message(W6_PRODUCT_CHANGED, None),
        }

    async def open_all(self) -> None:
        loop = asyncio.get_running_loop()
        url = self.config["url"]
        parts = urlsplit(url)
        documents = self.documents()
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def one(kind: str, token: str | None) -> None:
            init = {"Authorization": f"Bearer {token}"} if token else {}
            async with gate:
                try:
                    _, sub = await loop.create_connection(
                        lambda: Subscriber(kind, url, init, documents[kind], self.tally),
                        parts.hostname,
                        parts.port,
                    )
                    self.subscribers.append(sub)
                    await asyncio.wait_for(sub.ready, OPEN_TIMEOUT_S)
                    self.opened += 1
                except (OSError, TimeoutError) as exc:
                    self.failed.append(f"{kind}: {exc!r}")

        await asyncio.gather(*(one(kind, token) for kind, token in self.config["connections"]))

    def status(self) -> dict[str, Any]:
        tally = self.tally
        return {
            "opened": self.opened,
            "failed": len(self.failed),
            "received": dict(tally.received),
            "errors": len(tally.errors),
            "unexpected_closes": tally.unexpected_closes,
        }

    def report(self, send_times_path: str) -> dict[str, Any]:
        tally = self.tally
        sent = {int(k): v for k, v in orjson.loads(Path(send_times_path).read_bytes()).items()}
        product_latency: Counter[int] = Counter()
        for rank, times in tally.product_times.items():
            for t in times:
                product_latency[int((t - sent[rank]) * 1000 * BUCKET_PER_MS)] += 1
        return {
            **self.status(),
            "duplicates": dict(tally.duplicates),
            "out_of_order": dict(tally.out_of_order),
            "latency": {
                "comment": dict(tally.comment_latency),
                "commit": dict(tally.commit_latency),
                "product": dict(product_latency),
            },
            "worst": tally.worst,
            "first_errors": tally.errors[:5],
            "first_failures": self.failed[:5],
        }

    def close(self) -> None:
        for sub in self.subscribers:
            sub.close()


async def serve_commands(client: Client) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    opening = asyncio.create_task(client.open_all())
    while line := (await reader.readline()).decode().strip():
        command, _, argument = line.partition(" ")
        if command == "status":
            answer: dict[str, Any] = {**client.status(), "opening": not opening.done()}
        elif command == "report":
            answer = client.report(argument)
        elif command == "quit":
            break
        else:
            answer = {"error": f"unknown command {command!r}"}
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
        sys.stdout.flush()
    opening.cancel()
    client.close()
    await asyncio.sleep(0.5)  # let the close frames go out


def main() -> None:
    config = orjson.loads(Path(sys.argv[1]).read_bytes())
    client = Client(config)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_commands(client))
    else:
        uvloop.run(serve_commands(client))
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
