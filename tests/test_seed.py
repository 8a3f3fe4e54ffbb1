"""The benchmark data set loader and the `gql-app migrate` / `gql-app seed` commands.

Each test makes its own scratch database on the suite's server (DATABASE_URL's,
else the embedded one) and drops it afterwards, so it leaves no data.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from gql_app.content.models import Post
from gql_app.data.db import asyncpg_dsn, create_engine, create_sessionmaker
from gql_app.settings import Settings
from gql_app.tools import seed_rows
from gql_app.tools.cli import app
from gql_app.tools.embedded import DEVELOPMENT_SETTINGS
from gql_app.tools.seed import (
    DEMO_SCALE,
    SEEDED_TABLES,
    database_is_empty,
    seed,
    seed_demo,
)
from gql_app.users.models import User
from gql_app.users.passwords import verify_password
from tests.conftest import scratch_database

SCALE = 20
EXPECTED_ROWS = {
    "users": SCALE,
    "profiles": SCALE,
    "accounts": SCALE,
    "posts": 10 * SCALE,
    "comments": 50 * SCALE,
    "tags": 200,
    "products": 500,
    "orders": 3 * SCALE,
}

INVARIANTS = {
    # what the data set promises: the number of rows breaking each promise (must be 0)
    "posts without 1-4 tags": """
        SELECT count(*) FROM posts p
        WHERE (SELECT count(*) FROM post_tags t WHERE t.post_id = p.id) NOT BETWEEN 1 AND 4""",
    "post_tags whose copies of the post's ordering columns differ": """
        SELECT count(*) FROM post_tags t JOIN posts p ON p.id = t.post_id
        WHERE (t.published_at, t.created_at, t.title)
              IS DISTINCT FROM (p.published_at, p.created_at, p.title)""",
    "orders without 1-4 items": """
        SELECT count(*) FROM orders o
        WHERE (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) NOT BETWEEN 1 AND 4""",
    "negative balances": "SELECT count(*) FROM accounts WHERE balance < 0",
    "accounts not in USD": "SELECT count(*) FROM accounts WHERE currency <> 'USD'",
    "users without one account": """
        SELECT count(*) FROM users u
        WHERE (SELECT count(*) FROM accounts a WHERE a.owner_id = u.id) <> 1""",
    "users without a profile": """
        SELECT count(*) FROM users u
        WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.user_id = u.id)""",
    "items not at the product's price": """
        SELECT count(*) FROM order_items i JOIN products p ON p.id = i.product_id
        WHERE i.unit_price <> p.price""",
    "comments on drafts or before publication": """
        SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id
        WHERE p.published_at IS NULL OR c.created_at < p.published_at""",
    "comments after the epoch": "SELECT count(*) FROM comments WHERE created_at > '2026-01-01Z'",
}

SCHEMA_SHAPE = """
SELECT array_agg(x ORDER BY x) FROM (
  SELECT indexdef AS x FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL
  SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
) shape
"""


async def checksums(conn: asyncpg.Connection) -> dict[str, str]:
    return {
        table: await conn.fetchval(
            f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
        )
        for table in SEEDED_TABLES
    }


async def test_seed_loads_a_deterministic_data_set(server_url: str) -> None:
    async with (
        scratch_database(server_url, "seedtest") as first,
        scratch_database(server_url, "seedtest") as second,
    ):
        conn = await asyncpg.connect(asyncpg_dsn(first))
        try:
            shape_before = await conn.fetchval(SCHEMA_SHAPE)

            report = await seed(first, SCALE, progress=False)
            await seed(second, SCALE, progress=False)

            counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in SEEDED_TABLES}
            assert {t: counts[t] for t in EXPECTED_ROWS} == EXPECTED_ROWS
            assert report.rows == counts
            assert report.total_rows == sum(counts.values())
            assert report.rows_per_second > 0
            violations = {name: await conn.fetchval(sql) for name, sql in INVARIANTS.items()}
            assert violations == dict.fromkeys(INVARIANTS, 0)
            published = await conn.fetchval(
                "SELECT count(*) FROM posts WHERE published_at IS NOT NULL"
            )
            assert published == 160
            admins = await conn.fetch("SELECT username, email FROM users WHERE is_admin")
            assert [tuple(r) for r in admins] == [("user00001", "user00001@example.com")]
            statuses = {r[0] for r in await conn.fetch("SELECT DISTINCT status::text FROM orders")}
            assert {"PAID", "SHIPPED", "PENDING"} <= statuses
            password_hash = await conn.fetchval("SELECT password_hash FROM users WHERE id = 7")
            assert verify_password(password_hash, "password")
            # Indexes and foreign keys were rebuilt exactly as the migration made them.
            assert await conn.fetchval(SCHEMA_SHAPE) == shape_before
            disabled = "SELECT count(*) FROM pg_trigger WHERE tgenabled = 'D' AND NOT tgisinternal"
            assert await conn.fetchval(disabled) == 0  # the counting triggers are on again
            # Every page all-visible (index-only scans need no heap visit), every
            # table analyzed: the seed vacuumed them.
            pages = await conn.fetch(
                "SELECT relname, relpages, relallvisible, last_analyze IS NOT NULL AS analyzed"
                " FROM pg_class JOIN pg_stat_user_tables USING (relname)"
                " WHERE relname = ANY($1::text[]) AND relpages > 0 ORDER BY relname",
                list(SEEDED_TABLES),
            )
            assert {r["relname"] for r in pages} >= {"posts", "comments", "users"}
            assert [(r["relname"], r["relallvisible"], r["analyzed"]) for r in pages] == [
                (r["relname"], r["relpages"], True) for r in pages
            ]
            assert set(report.phases) == {
                "COPY (indexes, keys beside it)",
                "indexes, keys after the COPY",
                "finish",
                "VACUUM (ANALYZE)",
            }

            other = await asyncpg.connect(asyncpg_dsn(second))
            try:
                assert await checksums(conn) == await checksums(other)
            finally:
                await other.close()

            with pytest.raises(RuntimeError, match="already have rows"):
                await seed(first, SCALE, progress=False)
        finally:
            await conn.close()

        # The identity sequences were moved past the seeded ids.
        engine = create_engine(Settings(), first)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                user = User(username="newcomer", email="newcomer@example.com", password_hash="x")
                session.add(user)
                await session.flush()
                assert user.id > SCALE
                post_id = await session.scalar(
                    insert(Post)
                    .values(author_id=user.id, title="Hello", content="First")
                    .returning(Post.id)
                )
                assert post_id is not None and post_id > 10 * SCALE
        finally:
            await engine.dispose()


async def test_a_failed_load_leaves_empty_tables_with_their_indexes_and_keys(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_comments(rng: object, scale: int, posts: object) -> Iterator[tuple[object, ...]]:
        yield (1, 1, 1, "a comment", 0)
        raise RuntimeError("generator broke")

    monkeypatch.setattr(seed_rows, "comments", failing_comments)
    async with scratch_database(server_url, "seedtest") as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            shape_before = await conn.fetchval(SCHEMA_SHAPE)

            with pytest.raises(RuntimeError, match="generator broke"):
                await seed(url, SCALE, progress=False)

            assert await conn.fetchval(SCHEMA_SHAPE) == shape_before
            counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in SEEDED_TABLES}
            assert counts == dict.fromkeys(SEEDED_TABLES, 0)
        finally:
            await conn.close()
        assert await database_is_empty(url)


@pytest.fixture
async def scratch_url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """An empty database (not migrated: the test runs `gql-app migrate`)."""
    async with scratch_database(server_url, "seedtest", migrate=False) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        yield url


async def count_rows(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in SEEDED_TABLES}
    finally:
        await conn.close()


def test_cli_migrate_then_seed(scratch_url: str) -> None:
    runner = CliRunner()

    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output

    seeded = runner.invoke(app, ["seed", "--scale", "5", "--no-progress"])
    assert seeded.exit_code == 0, seeded.output
    assert re.search(r"^users\s+5$", seeded.stdout, re.MULTILINE)
    assert re.search(r"^posts\s+50$", seeded.stdout, re.MULTILINE)
    assert re.search(r"^[\d.]+ s, [\d,]+ rows/s$", seeded.stdout, re.MULTILINE)
    counts = asyncio.run(count_rows(scratch_url))
    assert (counts["users"], counts["posts"], counts["comments"], counts["orders"]) == (
        5,
        50,
        250,
        15,
    )

    again = runner.invoke(app, ["seed", "--scale", "5", "--no-progress"])
    assert again.exit_code == 1
    assert "--force" in again.output

    forced = runner.invoke(app, ["seed", "--scale", "3", "--force", "--no-progress"])
    assert forced.exit_code == 0, forced.output
    assert asyncio.run(count_rows(scratch_url))["users"] == 3


async def test_demo_data_set_has_the_documented_logins(server_url: str) -> None:
    async with scratch_database(server_url, "seedtest") as url:
        assert await database_is_empty(url)

        await seed_demo(url)

        assert not await database_is_empty(url)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            logins = {
                r["email"]: (r["password_hash"], r["is_admin"])
                for r in await conn.fetch("SELECT email, password_hash, is_admin FROM users")
            }
        finally:
            await conn.close()
        assert len(logins) == DEMO_SCALE + 3
        for email, password, is_admin in [
            ("admin@example.com", "admin", True),
            ("alice@example.com", "alice", False),
            ("bob@example.com", "bob", False),
            ("user00001@example.com", "password", True),
            ("user00025@example.com", "password", False),
        ]:
            password_hash, admin = logins[email]
            assert verify_password(password_hash, password)
            assert admin is is_admin


@pytest.mark.skipif("DATABASE_URL" in os.environ, reason="a server of your own has your settings")
async def test_the_embedded_server_runs_with_the_development_settings(server_url: str) -> None:
    """What makes the seed fast on the embedded server (``DEVELOPMENT_SETTINGS``):
    minimal WAL (no WAL for a COPY into a table emptied in its transaction, nor
    for index builds), room between checkpoints, no JIT."""
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        shown = {name: await conn.fetchval(f"SHOW {name}") for name in DEVELOPMENT_SETTINGS}
    finally:
        await conn.close()
    assert shown == DEVELOPMENT_SETTINGS
