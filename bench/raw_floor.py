"""The raw floor: gql_app's own batched SQL, run with asyncpg, answers built with orjson.

A bare ASGI callable (:func:`app`, no framework: uvicorn calls it directly) that
recognizes the three read documents (W1-W3) by their exact text and answers each
with the statements gql_app issues for it, one per field path, in the same order,
in the same kind of transaction (REPEATABLE READ, READ ONLY; none for W3, whose one
statement reads the post with its author, as gql_app sends it). The statements
below were captured from gql_app (SQLAlchemy's ``before_cursor_execute``) for an
anonymous viewer and are only re-wrapped here. The JSON is byte-equal to gql_app's
``data``. It is the floor for that statement budget: no GraphQL parsing,
validation, resolvers, ORM or web framework, only HTTP (uvicorn's), SQL and JSON.

Routes: ``POST /graphql`` (a body that is not one of the documents as a JSON object
is a 400 with a GraphQL-style error), ``GET /ready``, 404 and 405 otherwise. The
asyncpg pool is created and closed in the ASGI lifespan and kept in its state.

    uvicorn bench.raw_floor:app --port 8102      # DATABASE_URL names the database
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import asyncpg
import orjson

from bench.workloads import W1_FEED, W2_PEOPLE, W3_NODE
from gql_app.content.loaders import PostCriteria
from gql_app.content.types import POST_ORDER, PostOrderField
from gql_app.data.db import asyncpg_dsn
from gql_app.errors import BadUserInput
from gql_app.relay.cursors import binding
from gql_app.relay.ids import decode_id, encode_id
from gql_app.settings import Settings

POOL_SIZE = 20  # connections: gql_app's default pool (GQL_POOL_SIZE), which naive shares
CURSOR_KEY = Settings().secret_key.encode()  # the same key as the gql_app contender
# What W1's cursors are bound to (Query.posts, filter {published: true}, no parent,
# PUBLISHED_AT DESC), as gql_app.relay.cursors.binding makes it
W1_BOUND = binding(
    ("Query.posts", PostCriteria(published=True)),
    None,
    POST_ORDER.ordering(POST_ORDER.input(field=PostOrderField.PUBLISHED_AT)),
)

USERS_BY_ID = "SELECT users.id, users.username \nFROM users \nWHERE users.id = ANY ($1::BIGINT[])"
PROFILES_BY_USER_ID = (
    "SELECT profiles.id, profiles.user_id, profiles.display_name \n"
    "FROM profiles \nWHERE profiles.user_id = ANY ($1::BIGINT[])"
)
TAGS_BY_POST_ID = (
    "SELECT post_tags.post_id AS gql_parent, tags.id, tags.name \n"
    "FROM tags JOIN post_tags ON post_tags.tag_id = tags.id \n"
    "WHERE post_tags.post_id = ANY ($1::BIGINT[]) ORDER BY post_tags.post_id, tags.name, tags.id"
)
# W3: the post by id, its author read beside it (gql_app.data.loaders.joined_statement)
POSTS_BY_ID_WITH_AUTHOR = (
    "SELECT posts.id, posts.author_id, posts.title, posts.published_at, "
    "j0.id AS j0_id, j0.username AS j0_username \n"
    "FROM posts LEFT OUTER JOIN users AS j0 ON j0.id = posts.author_id \n"
    "WHERE posts.id = $1::BIGINT"
)

# W1 (the total: the striped published-post counts, summed; migration 0006)
FEED_PAGE = (
    "SELECT t.gql_total, page.id, page.author_id, page.title, page.published_at, "
    "page.comment_count \n"
    "FROM (SELECT (SELECT CAST(coalesce(sum(post_totals.published), $1::INTEGER) AS BIGINT) "
    "AS coalesce_1 \nFROM post_totals) AS gql_total) AS t "
    "LEFT OUTER JOIN (SELECT posts.id AS id, posts.author_id AS author_id, "
    "posts.title AS title, posts.published_at AS published_at, "
    "posts.comment_count AS comment_count \nFROM posts \n"
    "WHERE posts.published_at IS NOT NULL AND posts.published_at IS NOT NULL "
    "ORDER BY posts.published_at DESC NULLS LAST, posts.id DESC \n LIMIT $2::INTEGER) AS page "
    "ON true ORDER BY page.published_at DESC NULLS LAST, page.id DESC"
)
COMMENT_PAGES = (
    "SELECT p.pid AS gql_parent, page.id, page.post_id, page.author_id, page.body, "
    "page.created_at \n"
    "FROM unnest($1::BIGINT[]) AS p(pid) LEFT OUTER JOIN LATERAL (SELECT comments.id AS id, "
    "comments.post_id AS post_id, comments.author_id AS author_id, comments.body AS body, "
    "comments.created_at AS created_at \nFROM comments \n"
    "WHERE comments.post_id = p.pid ORDER BY comments.created_at ASC, comments.id ASC \n"
    " LIMIT $2::INTEGER) AS page ON true ORDER BY p.pid, page.created_at ASC, page.id ASC"
)

# W2
USERS_PAGE = (
    "SELECT users.id, users.username, users.created_at, users.post_count, "
    "users.published_post_count \nFROM users ORDER BY users.created_at ASC, users.id ASC \n"
    " LIMIT $1::INTEGER"
)
POST_PAGES_BY_AUTHOR = (
    "SELECT p.pid AS gql_parent, page.id, page.author_id, page.title, page.published_at, "
    "page.created_at, page.comment_count \n"
    "FROM unnest($1::BIGINT[]) AS p(pid) LEFT OUTER JOIN LATERAL (SELECT posts.id AS id, "
    "posts.author_id AS author_id, posts.title AS title, posts.published_at AS published_at, "
    "posts.created_at AS created_at, posts.comment_count AS comment_count \n"
    "FROM posts \nWHERE posts.author_id = p.pid AND posts.published_at IS NOT NULL "
    "ORDER BY posts.created_at DESC, posts.id DESC \n LIMIT $2::INTEGER) AS page ON true "
    "ORDER BY p.pid, page.created_at DESC, page.id DESC"
)

Handler = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[Any]]


def unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))


def tag_lists(rows: list[asyncpg.Record]) -> dict[int, list[dict[str, str]]]:
    tags: dict[int, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        tags[row["gql_parent"]].append({"name": row["name"]})
    return tags


def cursor(value: Any, ident: int) -> str:
    """gql_app.relay.cursors.encode_cursor, inlined (payload and HMAC signature), for
    W1's connection: signed over its binding (``W1_BOUND``) and the payload."""
    payload = orjson.dumps([value.isoformat() if value is not None else None, ident])
    signature = hmac.new(CURSOR_KEY, W1_BOUND + payload, hashlib.sha256).digest()[:12]
    return f"{b64(payload)}.{b64(signature)}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def feed(conn: asyncpg.Connection, variables: dict[str, Any]) -> Any:
    rows = await conn.fetch(FEED_PAGE, 0, 51)
    total = rows[0]["gql_total"] if rows else 0
    posts = [r for r in rows if r["id"] is not None][:50]
    post_ids = [p["id"] for p in posts]
    author_ids = unique(p["author_id"] for p in posts)
    users = {u["id"]: u for u in await conn.fetch(USERS_BY_ID, author_ids)}
    tags = tag_lists(await conn.fetch(TAGS_BY_POST_ID, post_ids))
    comments: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in await conn.fetch(COMMENT_PAGES, post_ids, 4):
        if row["id"] is not None:
            comments[row["gql_parent"]].append(row)
    profiles = {p["user_id"]: p for p in await conn.fetch(PROFILES_BY_USER_ID, author_ids)}
    missing = unique(
        c["author_id"] for page in comments.values() for c in page if c["author_id"] not in users
    )
    if missing:
        users.update((u["id"], u) for u in await conn.fetch(USERS_BY_ID, missing))
    edges = []
    for post in posts:
        author = users[post["author_id"]]
        profile = profiles.get(author["id"])
        edges.append(
            {
                "cursor": cursor(post["published_at"], post["id"]),
                "node": {
                    "id": encode_id("Post", post["id"]),
                    "title": post["title"],
                    "publishedAt": post["published_at"].isoformat(),
                    "author": {
                        "username": author["username"],
                        "profile": (
                            {"displayName": profile["display_name"]}
                            if profile is not None
                            else None
                        ),
                    },
                    "tags": tags.get(post["id"], []),
                    "commentCount": post["comment_count"],
                    "comments": {
                        "nodes": [
                            {
                                "body": c["body"],
                                "author": {"username": users[c["author_id"]]["username"]},
                            }
                            for c in comments[post["id"]][:3]
                        ]
                    },
                },
            }
        )
    return {"posts": {"totalCount": total, "edges": edges}}


async def people(conn: asyncpg.Connection, variables: dict[str, Any]) -> Any:
    users = (await conn.fetch(USERS_PAGE, 21))[:20]
    user_ids = [u["id"] for u in users]
    pages: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in await conn.fetch(POST_PAGES_BY_AUTHOR, user_ids, 6):
        if row["id"] is not None:
            pages[row["gql_parent"]].append(row)
    post_ids = [p["id"] for uid in user_ids for p in pages[uid][:5]]
    tags = tag_lists(await conn.fetch(TAGS_BY_POST_ID, post_ids))
    nodes = [
        {
            "username": u["username"],
            "postCount": u["published_post_count"],  # anonymous: published posts only
            "posts": {
                "totalCount": u["published_post_count"],
                "nodes": [
                    {
                        "title": p["title"],
                        "tags": tags.get(p["id"], []),
                        "commentCount": p["comment_count"],
                    }
                    for p in pages[u["id"]][:5]
                ],
            },
        }
        for u in users
    ]
    return {"users": {"nodes": nodes}}


async def node(conn: asyncpg.Connection, variables: dict[str, Any]) -> Any:
    type_name, pk = decode_id(variables["postId"])
    if type_name != "Post":
        return {"node": None}
    posts = await conn.fetch(POSTS_BY_ID_WITH_AUTHOR, pk)
    if not posts or posts[0]["published_at"] is None:
        return {"node": None}
    post = posts[0]
    return {"node": {"title": post["title"], "author": {"username": post["j0_username"]}}}


HANDLERS: dict[str, Handler] = {W1_FEED: feed, W2_PEOPLE: people, W3_NODE: node}
SINGLE_STATEMENT = frozenset({W3_NODE})
"""Documents gql_app answers with one statement, sent without BEGIN/ROLLBACK."""


async def answer(conn: asyncpg.Connection, query: str, variables: dict[str, Any]) -> Any:
    """The handler's answer, in the transaction gql_app would open (or none)."""
    handler = HANDLERS[query]
    if query in SINGLE_STATEMENT:
        return await handler(conn, variables)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await handler(conn, variables)


# ---------------------------------------------------------------- serving: a bare ASGI callable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")


class BadRequest(Exception):
    """A body the floor cannot answer: a 400 with a GraphQL-style error, not a crash."""


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """The benchmark document and its variables from a POST body, or :class:`BadRequest`."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("The body is not JSON.") from exc
    if not isinstance(payload, dict):
        raise BadRequest("The body is not a JSON object.")
    query = payload.get("query")
    if not isinstance(query, str) or query not in HANDLERS:
        raise BadRequest("The raw floor answers only the benchmark documents.")
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict):
        raise BadRequest("`variables` must be a JSON object.")
    if query == W3_NODE and not isinstance(variables.get("postId"), str):
        raise BadRequest("W3 needs the `postId` variable, a string.")
    return query, variables


async def respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [JSON_TYPE]})
    await send({"type": "http.response.body", "body": body})


def error(message: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message}]})


async def read_body(receive: Receive) -> bytes | None:
    """The request's body, or None when the client went away before sending it all."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def graphql(pool: asyncpg.Pool, receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    if body is None:
        return
    try:
        query, variables = parse(body)
        async with pool.acquire() as conn:
            data = await answer(conn, query, variables)
    except (BadRequest, BadUserInput) as exc:
        await respond(send, 400, error(str(exc)))
        return
    await respond(send, 200, orjson.dumps({"data": data}))


async def ready(pool: asyncpg.Pool, send: Send) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    await respond(send, 200, b'{"status":"ready"}')


async def no_reset(conn: asyncpg.Connection) -> None:
    """Nothing to undo: no session state is changed (asyncpg would send RESET ALL etc.)."""


async def create_pool() -> asyncpg.Pool:
    return await asyncpg.create_pool(
        asyncpg_dsn(os.environ["DATABASE_URL"]),
        min_size=1,
        max_size=POOL_SIZE,
        reset=no_reset,
        server_settings={"jit": "off", "application_name": "bench raw floor"},
    )


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """The pool lives in the lifespan state (ASGI's ``scope["state"]``, which the server
    copies into every request's scope): created at startup, closed at shutdown."""
    pool: asyncpg.Pool | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                pool = scope["state"]["pool"] = await create_pool()
            except (KeyError, OSError, asyncpg.PostgresError) as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


ROUTES = {"/graphql": "POST", "/ready": "GET"}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The floor as uvicorn runs it: POST /graphql, GET /ready, 404 and 405 otherwise."""
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        raise RuntimeError(f"the raw floor serves HTTP only, not {scope['type']}")
    method = ROUTES.get(scope["path"])
    if method is None:
        await respond(send, 404, error("Not found."))
    elif scope["method"] != method:
        await respond(send, 405, error(f"{scope['path']} takes {method} only."))
    elif method == "GET":
        await ready(scope["state"]["pool"], send)
    else:
        await graphql(scope["state"]["pool"], receive, send)
