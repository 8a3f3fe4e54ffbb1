"""Deterministic data sets, bulk-loaded with binary COPY: the benchmark data set at
scale S (``seed``) and a small demo set with known logins (``seed_demo``).

The rows come from ``seed_rows``; this module loads them. At scale 100 000 (ten
million rows) the load is a pipeline over two connections, as ``pg_restore -j``
does it: the secondary indexes and foreign keys are dropped first; one connection
COPYs table after table (the table with the most expensive indexes first) while
the other builds each loaded table's indexes from the definitions read before the
drop (``pg_indexes``: the migrations stay their source); then the foreign keys are
validated, the identities moved past the seeded ids, and every table vacuumed
and analyzed (visibility map set for index-only scans, statistics for the planner).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from tqdm import tqdm

from gql_app.data.db import asyncpg_dsn
from gql_app.tools import seed_rows as rows_of
from gql_app.tools.seed_rows import PRODUCT_COUNT, TAG_COUNT, TIMESTAMP_CODEC, Row
from gql_app.users.passwords import hash_password

CHUNK = 50_000
"""Rows per COPY statement: between two, the event loop serves the index builder."""
DEMO_SCALE = 25
SEED_PASSWORD = "password"
SESSION = {
    "application_name": "gql_app seed",
    "statement_timeout": "0",
    "synchronous_commit": "off",
    "maintenance_work_mem": "1GB",
    "work_mem": "256MB",  # the foreign keys' validating joins, in memory
    "max_parallel_maintenance_workers": "2",
}
"""The seed's connections' settings: room and workers for the index builds."""


@dataclass(frozen=True)
class SeedReport:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows loaded per table, in load order."""
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per phase, in order (the load and the index builds overlap)."""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    rows: Iterable[Row]
    expected: int


COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (
        "id",
        "username",
        "email",
        "password_hash",
        "is_active",
        "is_admin",
        "age",
        "created_at",
        "updated_at",
        "last_login_at",
        "post_count",
        "published_post_count",
    ),
    "profiles": ("id", "user_id", "display_name", "bio"),
    "accounts": ("id", "owner_id", "currency", "balance", "created_at"),
    "tags": ("id", "name", "published_post_count"),
    "products": ("id", "sku", "name", "price", "stock", "created_at"),
    "posts": (
        "id",
        "author_id",
        "title",
        "content",
        "published_at",
        "created_at",
        "updated_at",
        "comment_count",
    ),
    "post_tags": ("post_id", "tag_id", "published_at", "created_at", "title"),
    "comments": ("id", "post_id", "author_id", "body", "created_at"),
    "orders": ("id", "customer_id", "status", "created_at"),
    "order_items": ("id", "order_id", "product_id", "quantity", "unit_price"),
    "transfers": (
        "id",
        "from_account_id",
        "to_account_id",
        "amount",
        "idempotency_key",
        "created_at",
    ),
}
"""The columns each table's rows fill, by table, parents first."""

SEEDED_TABLES = tuple(COLUMNS)
"""Every table ``seed`` loads, parents first."""

LOAD_ORDER = (
    "posts",  # its trigram indexes take longest to build: built while the rest loads
    "users",
    "profiles",
    "accounts",
    "post_tags",  # after posts: its rows carry copies of their post's columns
    "tags",  # after post_tags: its rows carry their count of published posts
    "products",
    "orders",
    "order_items",
    "transfers",
    "comments",
)
"""The order of the COPYs (no foreign keys during the load: any order is valid)."""


class _Derived:
    """The columns a row takes from rows of other tables, filled as the rows stream
    to COPY (no UPDATE rewrites a loaded table, and the rows stay frozen):

    - the maintained counts (migration 0006): ``posts.comment_count`` from the
      comments' posts drawn up front (``seed_rows.commented_posts``),
      ``users.post_count``/``published_post_count`` and
      ``tags.published_post_count`` counted as posts and post_tags stream by, and
      ``post_totals`` written at the end (``finish``);
    - ``post_tags``' copies of their post's ordering columns (migration 0005).

    Hence ``LOAD_ORDER``: posts before users and post_tags, post_tags before tags.
    The triggers that keep these columns are off for the load (``TRIGGERED``).
    """

    TRIGGERED = ("posts", "post_tags", "comments")

    def __init__(self, scale: int, commented: Sequence[int]) -> None:
        self.comments = [0] * (10 * scale + 1)  # by post id
        for post in commented:
            self.comments[post] += 1
        self.published_at: list[int | None] = [None] * (10 * scale + 1)  # by post id
        self.created_at = array("q", bytes(8 * (10 * scale + 1)))
        self.titles = [""] * (10 * scale + 1)
        self.posts = [0] * (scale + 1)  # by author id
        self.published_posts = [0] * (scale + 1)
        self.tagged = [0] * (TAG_COUNT + 1)  # published posts, by tag id

    def posts_rows(self, rows: Iterable[Row]) -> Iterator[Row]:
        comments, published_at, created_at = self.comments, self.published_at, self.created_at
        titles, posts, published_posts = self.titles, self.posts, self.published_posts
        for row in rows:
            post, author, title, _, published, created = row[:6]
            posts[author] += 1
            published_at[post], created_at[post], titles[post] = published, created, title
            if published is not None:
                published_posts[author] += 1
            yield (*row, comments[post])

    def post_tags_rows(self, rows: Iterable[Row]) -> Iterator[Row]:
        published_at, created_at, titles, tagged = (
            self.published_at,
            self.created_at,
            self.titles,
            self.tagged,
        )
        for post, tag in rows:
            published = published_at[post]
            if published is not None:
                tagged[tag] += 1
            yield (post, tag, published, created_at[post], titles[post])

    def tags_rows(self, rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            yield (*row, self.tagged[row[0]])

    def users_rows(self, rows: Iterable[Row]) -> Iterator[Row]:
        posts, published_posts = self.posts, self.published_posts
        for row in rows:
            yield (*row, posts[row[0]], published_posts[row[0]])

    @classmethod
    async def triggers(cls, conn: asyncpg.Connection, enabled: bool) -> None:
        switch = "ENABLE" if enabled else "DISABLE"
        for table in cls.TRIGGERED:
            await conn.execute(f'ALTER TABLE "{table}" {switch} TRIGGER USER')

    async def finish(self, conn: asyncpg.Connection) -> None:
        """The striped post totals, all in stripe 0; the triggers on again."""
        async with conn.transaction():
            await conn.execute("DELETE FROM post_totals")
            await conn.execute(
                "INSERT INTO post_totals (stripe, posts, published) VALUES (0, $1, $2)",
                sum(self.posts),
                sum(self.published_posts),
            )
            await self.triggers(conn, enabled=True)


def _plan(scale: int, seed: int, password_hash: str) -> tuple[list[_Table], _Derived]:
    def rng(table: str) -> random.Random:
        return random.Random(f"gql_app:{seed}:{table}")

    catalog = rows_of.products(rng("products"))
    s = scale
    commented = rows_of.commented_posts(rng("commented_posts"), s)
    derived = _Derived(s, commented)
    rows_and_counts: dict[str, tuple[Iterable[Row], int]] = {
        "users": (derived.users_rows(rows_of.users(rng("users"), s, password_hash)), s),
        "profiles": (rows_of.profiles(rng("profiles"), s), s),
        "accounts": (rows_of.accounts(rng("accounts"), s), s),
        "tags": (derived.tags_rows(rows_of.tags()), TAG_COUNT),
        "products": (catalog, PRODUCT_COUNT),
        "posts": (derived.posts_rows(rows_of.posts(rng("posts"), s)), 10 * s),
        "post_tags": (derived.post_tags_rows(rows_of.post_tags(rng("post_tags"), s)), 25 * s),
        "comments": (rows_of.comments(rng("comments"), s, commented), 50 * s),
        "orders": (rows_of.orders(rng("orders"), s), 3 * s),
        "order_items": (rows_of.order_items(rng("order_items"), s, catalog), int(7.5 * s)),
        "transfers": (rows_of.transfers(rng("transfers"), s), min(s, 100) if s >= 2 else 0),
    }
    tables = [_Table(name, COLUMNS[name], *rows_and_counts[name]) for name in LOAD_ORDER]
    return tables, derived


async def connect(url: str) -> asyncpg.Connection:
    """A connection with the seed's settings; ``timestamptz`` values are microseconds
    since 2000-01-01 UTC (``seed_rows.TIMESTAMP_CODEC``)."""
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings=SESSION)
    await conn.set_type_codec(**TIMESTAMP_CODEC)
    return conn


def shared_password_hash(seed: int) -> str:
    """One argon2id hash of ``password`` for every seeded user, salted from the seed."""
    salt = hashlib.sha256(f"gql_app seed {seed}".encode()).digest()[:16]
    return PasswordHasher().hash(SEED_PASSWORD, salt=salt)


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def copy_rows(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Row],
    on_chunk: Callable[[int], object] = lambda n: None,
    *,
    empty_first: bool = False,
) -> int:
    """COPYs ``rows`` (``seed_rows``' tuples) into ``table`` in chunks, in one
    transaction; returns the count. ``conn`` comes from ``connect`` (its
    ``timestamptz`` codec takes microseconds).

    ``empty_first``: TRUNCATE the table in that transaction first, so the rows are
    COPYed FREEZE: written frozen and all-visible, so neither reading them (hint
    bits; with checksums, a full page image in the WAL each) nor VACUUM rewrites
    them. Only for a table nothing references (the seed drops those keys).
    """
    loaded = 0
    async with conn.transaction():
        if empty_first:
            await conn.execute(f'TRUNCATE "{table}"')
        for chunk in _chunks(rows):
            if empty_first:
                await _copy_frozen(conn, table, columns, chunk)
            else:
                await conn.copy_records_to_table(table, records=chunk, columns=columns)
            loaded += len(chunk)
            on_chunk(len(chunk))
    return loaded


async def _copy_frozen(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: list[Row]
) -> None:
    """``Connection.copy_records_to_table`` with ``FREEZE`` among the COPY options.

    asyncpg fixes binary COPY's options to ``(FORMAT binary)``; this is its method's
    body (asyncpg 0.29-0.32) with one more option. ``tests/test_seed.py`` checks the
    rows arrive frozen.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    intro = await conn._prepare(f'SELECT {names} FROM "{table}" LIMIT 1', use_cache=True)
    statement = f'COPY "{table}" ({names}) FROM STDIN (FORMAT binary, FREEZE)'
    await conn._protocol.copy_in(statement, None, None, records, intro._state, None)


async def _copy(conn: asyncpg.Connection, table: _Table, progress: bool) -> int:
    with tqdm(
        total=table.expected,
        desc=f"{table.name:<11}",
        unit=" rows",
        unit_scale=True,
        disable=not progress,
    ) as bar:
        loaded = await copy_rows(
            conn, table.name, table.columns, table.rows, bar.update, empty_first=True
        )
        bar.total = loaded
        bar.refresh()
    return loaded


@dataclass(frozen=True)
class _ForeignKey:
    child: str
    parent: str
    ddl: str
    """``ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY``"""
    drop: str
    """``ALTER TABLE ... DROP CONSTRAINT IF EXISTS ...``"""


@dataclass
class _Detached:
    """What the load dropped, as the DDL that restores it."""

    indexes: dict[str, list[str]]
    """``CREATE INDEX`` statements by table."""
    foreign_keys: list[_ForeignKey]

    def statements(self) -> list[str]:
        indexes = [ddl for ddls in self.indexes.values() for ddl in ddls]
        return indexes + [fk.ddl for fk in self.foreign_keys]


async def _detach_indexes_and_foreign_keys(
    conn: asyncpg.Connection, tables: Sequence[str]
) -> _Detached:
    """Drops the tables' secondary indexes and the foreign keys from and to them (one
    transaction; a table referenced by a foreign key cannot be truncated).

    Building an index once over all rows, and checking a foreign key with one
    join, is far faster than maintaining them row by row. Primary keys, unique
    and check constraints stay in place.
    """
    indexes = await conn.fetch(
        """
        SELECT x.tablename AS tab, quote_ident(x.indexname) AS name, x.indexdef AS ddl
        FROM pg_indexes x
        JOIN pg_class c
          ON c.relname = x.indexname AND c.relnamespace = current_schema()::regnamespace
        WHERE x.schemaname = current_schema() AND x.tablename = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
        ORDER BY x.tablename, x.indexname
        """,
        list(tables),
    )
    foreign_keys = await conn.fetch(
        """
        SELECT c.conrelid::regclass::text AS tab, quote_ident(c.conname) AS name,
               pg_get_constraintdef(c.oid) AS ddl, t.relname AS child, r.relname AS parent
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        JOIN pg_class r ON r.oid = c.confrelid
        WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace
          AND (t.relname = ANY($1::text[]) OR r.relname = ANY($1::text[]))
        ORDER BY 1, 2
        """,
        list(tables),
    )
    detached = _Detached({}, [])
    async with conn.transaction():
        for fk in foreign_keys:
            drop = f"ALTER TABLE {fk['tab']} DROP CONSTRAINT IF EXISTS {fk['name']}"
            await conn.execute(drop)
            ddl = f"ALTER TABLE {fk['tab']} ADD CONSTRAINT {fk['name']} {fk['ddl']}"
            detached.foreign_keys.append(_ForeignKey(fk["child"], fk["parent"], ddl, drop))
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['name']}")
            detached.indexes.setdefault(index["tab"], []).append(index["ddl"])
    return detached


async def _reattach(url: str, tables: Sequence[str], detached: _Detached) -> None:
    """After a failed load: the tables emptied, every dropped index and key restored,
    the triggers on again."""
    conn = await connect(url)
    try:
        for fk in detached.foreign_keys:  # some were validated already
            await conn.execute(fk.drop)
        await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
        for ddl in detached.statements():
            with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.DuplicateObjectError):
                await conn.execute(ddl)
        await _Derived.triggers(conn, enabled=True)
    finally:
        await conn.close()


async def _on_both(conns: Sequence[asyncpg.Connection], statements: Sequence[str]) -> None:
    """Runs ``statements`` on ``conns`` at once, each connection taking the next one."""
    pending = iter(statements)

    async def work(conn: asyncpg.Connection) -> None:
        for statement in pending:
            await conn.execute(statement)

    await asyncio.gather(*(work(conn) for conn in conns))


async def _load_and_build(
    loader: asyncpg.Connection,
    builder: asyncpg.Connection,
    plan: Sequence[_Table],
    detached: _Detached,
    phases: _Phases,
    progress: bool,
) -> dict[str, int]:
    """COPYs the tables on ``loader``; meanwhile ``builder`` builds each loaded table's
    indexes and validates each foreign key whose two tables are loaded. Once the
    COPYs are done, ``loader`` takes its share of what is left."""
    jobs: asyncio.Queue[str | None] = asyncio.Queue()
    waiting = list(detached.foreign_keys)
    loaded = {t for fk in waiting for t in (fk.child, fk.parent)} - {t.name for t in plan}

    async def work(conn: asyncpg.Connection) -> None:
        while (ddl := await jobs.get()) is not None:
            await conn.execute(ddl)

    builds = asyncio.create_task(work(builder))
    rows: dict[str, int] = {}
    started = time.perf_counter()
    try:
        for table in plan:
            rows[table.name] = await _copy(loader, table, progress)
            loaded.add(table.name)
            for ddl in detached.indexes.get(table.name, []):
                jobs.put_nowait(ddl)
            for fk in [fk for fk in waiting if {fk.child, fk.parent} <= loaded]:
                waiting.remove(fk)
                jobs.put_nowait(fk.ddl)
        phases["COPY (indexes, keys beside it)"] = time.perf_counter() - started
        jobs.put_nowait(None)
        jobs.put_nowait(None)
        await phases.timed("indexes, keys after the COPY", asyncio.gather(builds, work(loader)))
    finally:
        if not builds.done():
            builds.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError):
                await builds
    return rows


async def _reset_identities(conn: asyncpg.Connection, tables: Sequence[str]) -> None:
    columns = await conn.fetch(
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND is_identity = 'YES'
          AND table_name = ANY($1::text[])
        """,
        list(tables),
    )
    for col in columns:
        table, column = col["table_name"], col["column_name"]
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max(col), 0) + 1, false)"
            f' FROM (SELECT "{column}" AS col FROM "{table}") AS t',
            table,
            column,
        )


async def _non_empty_tables(conn: asyncpg.Connection, tables: Sequence[str]) -> list[str]:
    return [t for t in tables if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}")')]


class _Phases(dict[str, float]):
    """Seconds per phase, measured by ``timed``."""

    async def timed(self, name: str, work: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        try:
            return await work
        finally:
            self[name] = time.perf_counter() - started


async def seed(url: str, scale: int, *, progress: bool = True, seed: int = 42) -> SeedReport:
    """Loads the benchmark data set at ``scale`` (S) into an empty, migrated database:

    - S users (``user00001``, ``user00001@example.com``, password ``password``;
      user 1 is an admin), each with a profile and one USD account;
    - 10·S posts (exactly 80% published: every post whose id is not a multiple
      of 5), authors skewed so a few users write a lot;
    - 50·S comments, on published posts only, after their publication;
    - 200 tags, 1-4 distinct per post;
    - 500 products (``SKU-00001``...), 3·S orders of 1-4 items (mostly PAID or
      SHIPPED, some PENDING, about 5% CANCELLED; unit price = product price);
    - a handful of transfers between accounts.

    The same scale and seed give the same rows, byte for byte (``seed_rows``).
    Secondary indexes and foreign keys are dropped for the load and rebuilt
    set-based (module docstring). The tables are loaded in several transactions:
    if the load fails, they are emptied and the indexes and keys restored.
    Set-based steps over the loaded rows (``UPDATE ... FROM (SELECT ... GROUP BY)``)
    belong in ``_finish``, before the final VACUUM.
    """
    if scale < 1:
        raise ValueError("scale must be at least 1")
    started = time.perf_counter()
    plan, derived = _plan(scale, seed, shared_password_hash(seed))
    names = [t.name for t in plan]
    conns = [await connect(url), await connect(url)]
    phases = _Phases()
    try:
        if busy := await _non_empty_tables(conns[0], names):
            raise RuntimeError(
                f"refusing to seed: these tables already have rows: {', '.join(busy)}"
            )
        detached = await _detach_indexes_and_foreign_keys(conns[0], names)
        await derived.triggers(conns[0], enabled=False)
        try:
            rows = await _load_and_build(conns[0], conns[1], plan, detached, phases, progress)
        except BaseException:
            for conn in conns:
                conn.terminate()
            await _reattach(url, names, detached)
            raise
        await phases.timed("finish", _finish(conns[0], names, derived))
        by_size = sorted(plan, key=lambda t: -t.expected)
        vacuums = [f'VACUUM (ANALYZE) "{t.name}"' for t in by_size]
        await phases.timed("VACUUM (ANALYZE)", _on_both(conns, vacuums))
    finally:
        for conn in conns:
            await conn.close()
    return SeedReport(rows=rows, seconds=time.perf_counter() - started, phases=dict(phases))


async def _finish(conn: asyncpg.Connection, tables: Sequence[str], derived: _Derived) -> None:
    """The steps after the load: the identity sequences moved past the ids, the post
    totals written and the triggers on again."""
    await _reset_identities(conn, tables)
    await derived.finish(conn)


async def truncate_all(url: str) -> None:
    """Empties every table but Alembic's, restarting identities."""
    conn = await connect(url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(t["name"] for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def database_is_empty(url: str) -> bool:
    """True when the (migrated) database has no users."""
    conn = await connect(url)
    try:
        return bool(await conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM users)"))
    finally:
        await conn.close()


_DEMO_PEOPLE = (
    ("admin", "admin@example.com", "admin", True, "Site Admin"),
    ("alice", "alice@example.com", "alice", False, "Alice Liddell"),
    ("bob", "bob@example.com", "bob", False, "Bob Builder"),
)


async def seed_demo(url: str) -> None:
    """A small data set to explore in GraphiQL (the embedded development server
    loads it into an empty database), with these logins:

    =====================  ==========  =====
    email                  password    admin
    =====================  ==========  =====
    admin@example.com      admin       yes
    alice@example.com      alice       no
    bob@example.com        bob         no
    user00001@example.com  password    yes
    user00002@example.com  password    no (and so on up to user00025)
    =====================  ==========  =====
    """
    await seed(url, DEMO_SCALE, progress=False)
    conn = await connect(url)
    try:
        async with conn.transaction():
            ids = {person[0]: await _demo_person(conn, *person) for person in _DEMO_PEOPLE}
            post_id = await conn.fetchval(
                "INSERT INTO posts (author_id, title, content, published_at)"
                " VALUES ($1, $2, $3, now()) RETURNING id",
                ids["alice"],
                "Hello from Alice",
                "My first post. Try the feed query in GraphiQL.",
            )
            await conn.execute(
                "INSERT INTO post_tags (post_id, tag_id)"
                " SELECT $1, id FROM tags WHERE name IN ('graphql', 'python')",
                post_id,
            )
            await conn.execute(
                "INSERT INTO comments (post_id, author_id, body) VALUES ($1, $2, $3)",
                post_id,
                ids["bob"],
                "Welcome, Alice!",
            )
    finally:
        await conn.close()


async def _demo_person(
    conn: asyncpg.Connection,
    username: str,
    email: str,
    password: str,
    is_admin: bool,
    display: str,
) -> int:
    """A demo user with a profile and a USD account of 1000.00; returns the user's id."""
    user_id: int = await conn.fetchval(
        "INSERT INTO users (username, email, password_hash, is_admin, last_login_at)"
        " VALUES ($1, $2, $3, $4, now()) RETURNING id",
        username,
        email,
        hash_password(password),
        is_admin,
    )
    await conn.execute(
        "INSERT INTO profiles (user_id, display_name, bio) VALUES ($1, $2, $3)",
        user_id,
        display,
        f"Hi, I am {display.split()[0]}.",
    )
    await conn.execute(
        "INSERT INTO accounts (owner_id, currency, balance) VALUES ($1, 'USD', 1000.00)",
        user_id,
    )
    return user_id
