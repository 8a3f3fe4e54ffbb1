"""Server CPU per request, W1-W3, one request at a time: no load, so it can run on a
shared machine.

    .venv/bin/python -m bench.cpu_per_request                 # in-process, the ASGI app
    .venv/bin/python -m bench.cpu_per_request --server        # `gql-app serve`, over HTTP
    .venv/bin/python -m bench.cpu_per_request --profile W3    # cProfile of W3, in-process

In-process, the app (``create_app()`` on the environment's settings, as ``gql-app serve``
builds it) is called as an ASGI callable with the request already in memory: the CPU
is the process's (``time.process_time``) over the requests, PostgreSQL's excluded (it
is another process). With ``--server`` the app runs as ``gql-app serve --workers 1``
starts it (uvicorn, its HTTP parser and its logs included) and the CPU is the server
process's, read from ``/proc``. Uses ``DATABASE_URL``, seeded at any scale
(``gql-app seed``), else the embedded server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop

from bench.workloads import READ_WORKLOADS, W3_NODE
from gql_app.relay.ids import encode_id
from gql_app.settings import Settings
from gql_app.tools.embedded import database_url

HEADERS = [(b"content-type", b"application/json"), (b"accept", b"application/json")]


async def bodies(url: str) -> dict[str, bytes]:
    """W1-W3's request bodies; W3's post is the bench's (the first published post)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        post = await conn.fetchval(
            "SELECT id FROM posts WHERE published_at IS NOT NULL ORDER BY id LIMIT 1"
        )
    finally:
        await conn.close()
    out = {}
    for name, document in READ_WORKLOADS.items():
        body: dict[str, Any] = {"query": document}
        if document == W3_NODE:
            body["variables"] = {"postId": encode_id("Post", post)}
        out[name.split()[0]] = orjson.dumps(body)
    return out


def caller(
    app: Any, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> Callable[[], Awaitable[int]]:
    """One POST /graphql through ``app``, as uvicorn would call it (``extra``: more
    headers); returns the status."""
    headers = [*HEADERS, (b"content-length", str(len(body)).encode()), *extra]

    async def call() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "state": {},
        }
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return call


async def in_process(requests: int, profile: str | None, only: list[str]) -> dict[str, float]:
    from gql_app.web.app import create_app

    app = create_app(Settings())
    out: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        for name, body in (await bodies(str(Settings().database_url))).items():
            if only and name not in only:
                continue
            call = caller(app, body)
            for _ in range(200):  # warm: plans, prepared statements, the pool
                assert await call() == 200
            if profile == name:
                profiler = cProfile.Profile()
                profiler.enable()
            started, wall = time.process_time(), time.perf_counter()
            for _ in range(requests):
                await call()
            out[name] = (time.process_time() - started) / requests * 1e6
            out[f"{name} wall"] = (time.perf_counter() - wall) / requests * 1e6
            if profile == name:
                profiler.disable()
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats(
                    os.environ.get("PROFILE_SORT", "tottime")
                ).print_stats(45)
                if os.environ.get("PROFILE_CALLERS"):
                    pstats.Stats(profiler, stream=text).print_callers(os.environ["PROFILE_CALLERS"])
                if os.environ.get("PROFILE_CALLEES"):
                    pstats.Stats(profiler, stream=text).print_callees(os.environ["PROFILE_CALLEES"])
                print(text.getvalue())
    return out


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def served() -> Iterator[tuple[int, str]]:
    """``gql-app serve --workers 1`` on a free port, its output discarded."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gql = os.path.join(os.path.dirname(sys.executable), "gql-app")
    process = subprocess.Popen(
        [gql, "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process.pid, f"http://127.0.0.1:{port}/graphql"
    finally:
        process.terminate()
        process.wait(10)


async def over_http(requests: int, only: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    with served() as (pid, url):
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(url.replace("/graphql", "/health"))).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            headers = {"content-type": "application/json"}
            for name, body in (await bodies(str(Settings().database_url))).items():
                if only and name not in only:
                    continue
                for _ in range(200):
                    (await http.post(url, content=body, headers=headers)).raise_for_status()
                started = process_cpu(pid)
                for _ in range(requests):
                    await http.post(url, content=body, headers=headers)
                out[name] = (process_cpu(pid) - started) / requests * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per workload")
    parser.add_argument("--server", action="store_true", help="gql-app serve, over HTTP")
    parser.add_argument("--profile", choices=["W1", "W2", "W3"], help="cProfile one workload")
    parser.add_argument("--only", nargs="*", default=[], help="these workloads (W1 W2 W3)")
    args = parser.parse_args()
    database_url(Settings())  # DATABASE_URL, or the embedded server's (exported)
    os.environ.setdefault("GQL_SECRET_KEY", "cpu-per-request")
    if args.server:
        result = asyncio.run(over_http(args.requests, args.only))
    else:
        # uvloop, as uvicorn runs the app when it is installed (gql_app depends on it)
        result = uvloop.run(in_process(args.requests, args.profile, args.only))
    where = "gql-app serve" if args.server else "in-process"
    print(" | ".join(f"{name} {us:.0f} µs" for name, us in result.items()), f"({where})")


if __name__ == "__main__":
    main()
