"""The raw floor: gql_app's own batched SQL, run with asyncpg, answers built with orjson.

A Starlette app that recognizes the three read documents (W1-W3) by their exact
text and answers each with the statements gql_app issues for it, one per field
path, in the same order, in the same kind of transaction (REPEATABLE READ, READ
ONLY; none for W3, whose one statement reads the post with its author, as
gql_app sends it). The statements below were captured from gql_app (SQLAlchemy's
``before_cursor_execute``) for an anonymous viewer and are only re-wrapped here.
The JSON is byte-equal to gql_app's ``data``. It is the floor for that statement
budget: no GraphQL parsing, validation, resolvers or ORM, only SQL and JSON.

    uvicorn bench.raw_floor:app --port 8102      # DATABASE_URL names the database
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.workloads import W1_FEED, W2_PEOPLE, W3_NODE
from gql_app.content.loaders import PostCriteria
from gql_app.content.types import POST_ORDER, PostOrderField
from gql_app.data.db import asyncpg_dsn
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

USER_COLUMNS = (
    "users.id, users.username, users.email, users.password_hash, users.is_active, "
    "users.is_admin, users.age, users.created_at, users.updated_at, users.last_login_at, "
    "users.post_count, users.published_post_count"
)
POST_COLUMNS = (
    "posts.id AS id, posts.author_id AS author_id, posts.title AS title, "
    "posts.content AS content, posts.published_at AS published_at, "
    "posts.created_at AS created_at, posts.updated_at AS updated_at, "
    "posts.comment_count AS comment_count"
)
PAGE_POST_COLUMNS = (
    "page.id, page.author_id, page.title, page.content, page.published_at, "
    "page.created_at, page.updated_at, page.comment_count"
)

USERS_BY_ID = f"SELECT {USER_COLUMNS} \nFROM users \nWHERE users.id = ANY ($1::BIGINT[])"
PROFILES_BY_USER_ID = (
    "SELECT profiles.id, profiles.user_id, profiles.display_name, profiles.bio \n"
    "FROM profiles \nWHERE profiles.user_id = ANY ($1::BIGINT[])"
)
TAGS_BY_POST_ID = (
    "SELECT post_tags.post_id, tags.id, tags.name, tags.published_post_count \n"
    "FROM tags JOIN post_tags ON post_tags.tag_id = tags.id \n"
    "WHERE post_tags.post_id = ANY ($1::BIGINT[]) ORDER BY post_tags.post_id, tags.name, tags.id"
)
JOINED_USER_COLUMNS = (
    "j0.id AS j0_id, j0.username AS j0_username, j0.email AS j0_email, "
    "j0.password_hash AS j0_password_hash, j0.is_active AS j0_is_active, "
    "j0.is_admin AS j0_is_admin, j0.age AS j0_age, j0.created_at AS j0_created_at, "
    "j0.updated_at AS j0_updated_at, j0.last_login_at AS j0_last_login_at, "
    "j0.post_count AS j0_post_count, j0.published_post_count AS j0_published_post_count"
)
# W3: the post by id, its author read beside it (gql_app.data.loaders.joined_statement)
POSTS_BY_ID_WITH_AUTHOR = (
    "SELECT posts.id, posts.author_id, posts.title, posts.content, posts.published_at, "
    f"posts.created_at, posts.updated_at, posts.comment_count, {JOINED_USER_COLUMNS} \n"
    "FROM posts LEFT OUTER JOIN users AS j0 ON j0.id = posts.author_id \n"
    "WHERE posts.id = ANY ($1::BIGINT[])"
)

# W1 (the total: the striped published-post counts, summed; migration 0006)
FEED_PAGE = (
    f"SELECT t.gql_total, {PAGE_POST_COLUMNS} \n"
    "FROM (SELECT (SELECT CAST(coalesce(sum(post_totals.published), $1::INTEGER) AS BIGINT) "
    "AS coalesce_1 \nFROM post_totals) AS gql_total) AS t "
    f"LEFT OUTER JOIN (SELECT {POST_COLUMNS} \nFROM posts \n"
    "WHERE posts.published_at IS NOT NULL AND posts.published_at IS NOT NULL "
    "ORDER BY posts.published_at DESC NULLS LAST, posts.id DESC \n LIMIT $2::INTEGER) AS page "
    "ON true ORDER BY page.published_at DESC NULLS LAST, page.id DESC"
)
COMMENT_PAGES = (
    "SELECT p.pid, page.id, page.post_id, page.author_id, page.body, page.created_at \n"
    "FROM unnest($1::BIGINT[]) AS p(pid) LEFT OUTER JOIN LATERAL (SELECT comments.id AS id, "
    "comments.post_id AS post_id, comments.author_id AS author_id, comments.body AS body, "
    "comments.created_at AS created_at \nFROM comments \n"
    "WHERE comments.post_id = p.pid ORDER BY comments.created_at ASC, comments.id ASC \n"
    " LIMIT $2::INTEGER) AS page ON true ORDER BY p.pid, page.created_at ASC, page.id ASC"
)

# W2
USERS_PAGE = (
    f"SELECT {USER_COLUMNS} \nFROM users ORDER BY users.created_at ASC, users.id ASC \n"
    " LIMIT $1::INTEGER"
)
POST_PAGES_BY_AUTHOR = (
    f"SELECT p.pid, {PAGE_POST_COLUMNS} \n"
    f"FROM unnest($1::BIGINT[]) AS p(pid) LEFT OUTER JOIN LATERAL (SELECT {POST_COLUMNS} \n"
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
        tags[row["post_id"]].append({"name": row["name"]})
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
            comments[row["pid"]].append(row)
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
            pages[row["pid"]].append(row)
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
    posts = await conn.fetch(POSTS_BY_ID_WITH_AUTHOR, [pk])
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


async def graphql(request: Request) -> Response:
    body = orjson.loads(await request.body())
    query = body.get("query")
    if query not in HANDLERS:
        error = {"errors": [{"message": "The raw floor answers only the benchmark documents."}]}
        return Response(orjson.dumps(error), status_code=400, media_type="application/json")
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        data = await answer(conn, query, body.get("variables") or {})
    return Response(orjson.dumps({"data": data}), media_type="application/json")


async def ready(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return Response(b'{"status":"ready"}', media_type="application/json")


async def no_reset(conn: asyncpg.Connection) -> None:
    """Nothing to undo: no session state is changed (asyncpg would send RESET ALL etc.)."""


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        asyncpg_dsn(os.environ["DATABASE_URL"]),
        min_size=1,
        max_size=POOL_SIZE,
        reset=no_reset,
        server_settings={"jit": "off", "application_name": "bench raw floor"},
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[Route("/graphql", graphql, methods=["POST"]), Route("/ready", ready)],
    lifespan=lifespan,
)
