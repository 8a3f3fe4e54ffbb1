"""Times ``posts(filter: {search: ...})`` over a million posts, without and with the
trigram indexes (alembic/versions/*_0003_trigram_search_indexes.py).

    .venv/bin/python scripts/search_timing.py [--posts 1000000] [--runs 7]

A scratch database on DATABASE_URL's server (else the embedded one in
GQL_DATA_DIR), dropped at the end. The posts are the benchmark seed's
(``gql_app.tools.seed``: titles and sentences from a small vocabulary), plus rare
words: "zanzibar" in every 100 000th title, "quasar" in every 1 000th content (all
published posts: the id is 1 modulo 5).
Each search is the GraphQL request through the real app (in process, no HTTP
socket): the median of ``--runs`` after two warm-up requests, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from gql_app.data.db import asyncpg_dsn
from gql_app.settings import Settings
from gql_app.tools.cli import run_migrations
from gql_app.tools.embedded import database_url
from gql_app.tools.seed import COLUMNS, connect, copy_rows
from gql_app.tools.seed_rows import posts as post_rows
from gql_app.web.app import create_app

TRIGRAM_INDEXES = {
    f"ix_posts_{column}_trgm": (
        f"CREATE INDEX ix_posts_{column}_trgm ON posts USING gin ({column} gin_trgm_ops)"
    )
    for column in ("title", "content")
}
SEARCHES = ["zanzibar", "quasar", "no such words", "coffee bicycle", "kitchen"]
PAGE = "query($s: String!) { posts(first: 20, filter: {search: $s}) { %s nodes { id } } }"
WITH_TOTAL, PAGE_ONLY = PAGE % "totalCount", PAGE % ""


async def load(url: str, posts: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for name in TRIGRAM_INDEXES:
            await conn.execute(f"DROP INDEX {name}")
        authors = max(1, posts // 10)
        await conn.execute(
            "INSERT INTO users (id, username, email, password_hash) OVERRIDING SYSTEM VALUE"
            " SELECT i, 'user' || i, 'user' || i || '@example.com', 'x'"
            f" FROM generate_series(1, {authors}) AS i"
        )
        started = time.monotonic()
        rows = post_rows(random.Random("gql_app:42:posts"), authors)
        loader = await connect(url)  # sends the rows' timestamps as they are (microseconds)
        try:
            await copy_rows(loader, "posts", COLUMNS["posts"], rows)
        finally:
            await loader.close()
        await conn.execute("UPDATE posts SET title = title || ' zanzibar' WHERE id % 100000 = 1")
        await conn.execute("UPDATE posts SET content = content || ' quasar' WHERE id % 1000 = 1")
        await conn.execute("VACUUM ANALYZE posts")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_table_size('posts'))")
        print(f"loaded {posts:,} posts ({size}) in {time.monotonic() - started:.1f} s")
    finally:
        await conn.close()


async def build_indexes(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"statement_timeout": "0"})
    try:
        for name, ddl in TRIGRAM_INDEXES.items():
            started = time.monotonic()
            await conn.execute(ddl)
            size = await conn.fetchval(f"SELECT pg_size_pretty(pg_relation_size('{name}'))")
            print(f"built {name} ({size}) in {time.monotonic() - started:.1f} s")
        await conn.execute("VACUUM ANALYZE posts")
    finally:
        await conn.close()


async def time_searches(url: str, runs: int) -> dict[tuple[str, str], tuple[float, int]]:
    """(search, shape) -> (median ms, totalCount or page size)."""
    app = create_app(
        Settings(
            DATABASE_URL=url, secret_key="search-timing", log_level="ERROR", slow_query_ms=60_000
        )
    )
    results: dict[tuple[str, str], tuple[float, int]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            for search in SEARCHES:
                for shape, query in (("totalCount + page", WITH_TOTAL), ("page only", PAGE_ONLY)):
                    times, body = [], {}
                    for attempt in range(runs + 2):
                        started = time.perf_counter()
                        response = await http.post(
                            "/graphql", json={"query": query, "variables": {"s": search}}
                        )
                        if attempt >= 2:
                            times.append((time.perf_counter() - started) * 1000)
                        body = response.json()
                    assert "errors" not in body, body
                    page: Any = body["data"]["posts"]
                    results[search, shape] = (
                        statistics.median(times),
                        page.get("totalCount", len(page["nodes"])),
                    )
    return results


async def main(posts: int, runs: int) -> None:
    server = database_url(Settings())
    name = f"gql_search_timing_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(asyncpg_dsn(server)).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(run_migrations, url)
        await load(url, posts)
        without = await time_searches(url, runs)
        await build_indexes(url)
        with_index = await time_searches(url, runs)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    print("\n| search | shape | matches | no trigram index (ms) | trigram indexes (ms) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (search, shape), (ms, count) in with_index.items():
        before = without[search, shape][0]
        shown = count if shape == "totalCount + page" else f"{count} (page)"
        print(f"| {search} | {shape} | {shown} | {before:.1f} | {ms:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.posts, args.runs))
