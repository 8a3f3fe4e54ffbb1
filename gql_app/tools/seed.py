"""Deterministic data sets, bulk-loaded with binary COPY: the benchmark data set at
scale S (``seed``) and a small demo set with known logins (``seed_demo``).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from tqdm import tqdm

from gql_app.data.db import asyncpg_dsn
from gql_app.users.passwords import hash_password

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Every seeded timestamp is at or before this instant."""
CHUNK = 50_000
TAG_COUNT = 200
PRODUCT_COUNT = 500
DEMO_SCALE = 25
SEED_PASSWORD = "password"

_DAY = 86_400.0
USERS_FROM, USERS_SPAN = EPOCH - timedelta(days=1095), 1065 * _DAY
POSTS_FROM, POSTS_SPAN = EPOCH - timedelta(days=730), 729 * _DAY
ORDERS_FROM, ORDERS_SPAN = EPOCH - timedelta(days=730), 730 * _DAY
PRODUCTS_FROM, PRODUCTS_SPAN = EPOCH - timedelta(days=1100), 300 * _DAY

Row = tuple[Any, ...]


@dataclass(frozen=True)
class SeedReport:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows loaded per table, in load order."""
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- words


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Ada Alan Barbara Brian Carol Claude Dana Donald Edsger Emmy Frances Grace Guido "
    "Hedy Ivan Jean John Ken Linus Lynn Margaret Niklaus Radia Rob Sophie Tim Yukihiro"
)
_LAST = _words(
    "Allen Backus Cerf Dijkstra Engelbart Floyd Goldberg Hamilton Hopper Iverson Kay "
    "Knuth Lamport Liskov Lovelace McCarthy Noether Perlman Ritchie Shannon Thompson "
    "Turing Wirth"
)
_WORDS = _words(
    "api batch cache cursor data edge field graph index join key loader model node "
    "query resolver schema server session table type value async fast simple clean "
    "small quiet bright careful honest practical modern classic build ship test "
    "measure tune read write learn share explain compare improve notes guide story "
    "lesson pattern habit review release design kitchen garden coffee bicycle music "
    "travel winter summer city river mountain"
)
_TOPICS = _words(
    "python graphql postgres sql async testing performance security design devops "
    "cloud linux rust go javascript typescript css html data ml ai books music "
    "cooking travel photography gardening cycling running coffee games film history "
    "science math physics space climate startups career writing open-source"
)
_TAG_SUFFIXES = ("", "-tips", "-news", "-howto", "-deep-dive")
_ADJECTIVES = _words("Classic Compact Deluxe Everyday Handmade Light Pocket Pro Rugged Smart")
_NOUNS = _words(
    "Backpack Bottle Cable Chair Desk Headphones Keyboard Lamp Mug Notebook Pen "
    "Speaker Stand Tent Watch"
)


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(low, high))).capitalize() + "."


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def _slot(start: datetime, span: float, index: int, count: int) -> datetime:
    """The start of the index-th (1-based) of count equal slots of span seconds."""
    return start + timedelta(seconds=span * (index - 1) / count)


def _skewed(rng: random.Random, n: int, power: float) -> Callable[[], int]:
    """Picks ids 1..n unevenly (a few ids often, most rarely) in a shuffled order."""
    order = list(range(1, n + 1))
    rng.shuffle(order)
    draw = rng.random
    return lambda: order[int(n * draw() ** power)]


def _chunked(rows: Iterable[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- rows


def _users(rng: random.Random, scale: int, password_hash: str) -> Iterator[Row]:
    width = max(5, len(str(scale)))
    jitter = USERS_SPAN / scale
    for i in range(1, scale + 1):
        created = _slot(USERS_FROM, USERS_SPAN, i, scale) + timedelta(seconds=rng.random() * jitter)
        age = None if rng.random() < 0.15 else rng.randint(16, 80)
        login = None
        if rng.random() >= 0.2:
            login = created + timedelta(seconds=rng.random() * (EPOCH - created).total_seconds())
        name = f"user{i:0{width}d}"
        yield (
            i,
            name,
            f"{name}@example.com",
            password_hash,
            True,
            i == 1,
            age,
            created,
            created,
            login,
        )


def _profiles(rng: random.Random, scale: int) -> Iterator[Row]:
    for i in range(1, scale + 1):
        display = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        bio = None if rng.random() < 0.3 else _sentence(rng, 6, 16)
        yield (i, i, display, bio)


def _accounts(rng: random.Random, scale: int) -> Iterator[Row]:
    for i in range(1, scale + 1):
        opened = _slot(USERS_FROM, USERS_SPAN, i + 1, scale)  # just after the owner joined
        yield (i, i, "USD", _cents(rng.randint(0, 1_000_000)), opened)


def _tags() -> Iterator[Row]:
    names = [topic + suffix for suffix in _TAG_SUFFIXES for topic in _TOPICS]
    yield from enumerate(names[:TAG_COUNT], start=1)


def _products(rng: random.Random) -> list[Row]:
    rows = []
    for i in range(1, PRODUCT_COUNT + 1):
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.randint(1, 9)}"
        created = _slot(PRODUCTS_FROM, PRODUCTS_SPAN, i, PRODUCT_COUNT)
        price = _cents(rng.randint(199, 49_999))
        rows.append((i, f"SKU-{i:05d}", name, price, rng.randint(0, 1000), created))
    return rows


def _posts(rng: random.Random, scale: int) -> Iterator[Row]:
    count = 10 * scale
    author = _skewed(rng, scale, 2.0)
    jitter = POSTS_SPAN / count
    for i in range(1, count + 1):
        created = _slot(POSTS_FROM, POSTS_SPAN, i, count) + timedelta(seconds=rng.random() * jitter)
        title = " ".join(rng.choices(_WORDS, k=rng.randint(3, 7))).capitalize()
        content = " ".join(_sentence(rng, 8, 16) for _ in range(rng.randint(2, 5)))
        published = None
        if i % 5:
            published = created + timedelta(seconds=60 + rng.random() * (_DAY - 60))
        yield (i, author(), title, content, published, created, published or created)


def _post_tags(rng: random.Random, scale: int) -> Iterator[Row]:
    draw = rng.random
    for post in range(1, 10 * scale + 1):
        wanted = rng.randint(1, 4)
        tags: set[int] = set()
        while len(tags) < wanted:
            tags.add(int(TAG_COUNT * draw() ** 2) + 1)
        for tag in sorted(tags):
            yield (post, tag)


def _comments(rng: random.Random, scale: int) -> Iterator[Row]:
    posts = 10 * scale
    published = 8 * scale  # the posts whose id is not a multiple of 5
    spread = next(p for p in (7919, 104_729, 1_299_709) if math.gcd(p, published) == 1)
    author = _skewed(rng, scale, 1.5)
    draw = rng.random
    for i in range(1, 50 * scale + 1):
        k = (int(published * draw() ** 2) * spread) % published
        post = (k // 4) * 5 + k % 4 + 1
        # After the post's slot ends and its publication (at most a day later).
        earliest = POSTS_FROM + timedelta(seconds=POSTS_SPAN * post / posts + _DAY)
        created = min(earliest + timedelta(seconds=rng.expovariate(1 / (3 * _DAY))), EPOCH)
        yield (i, post, author(), _sentence(rng, 3, 20), created)


_STATUSES = (("CANCELLED", 0.05), ("PENDING", 0.17), ("PAID", 0.60), ("SHIPPED", 1.0))


def _orders(rng: random.Random, scale: int) -> Iterator[Row]:
    count = 3 * scale
    customer = _skewed(rng, scale, 1.5)
    for i in range(1, count + 1):
        created = _slot(ORDERS_FROM, ORDERS_SPAN, i, count)
        r = rng.random()
        status = next(name for name, upto in _STATUSES if r < upto)
        yield (i, customer(), status, created)


def _order_items(rng: random.Random, scale: int, products: Sequence[Row]) -> Iterator[Row]:
    product = _skewed(rng, len(products), 1.5)
    item_id = 0
    for order in range(1, 3 * scale + 1):
        wanted = rng.randint(1, 4)
        chosen: set[int] = set()
        while len(chosen) < wanted:
            chosen.add(product())
        for product_id in sorted(chosen):
            item_id += 1
            quantity = 1 if rng.random() < 0.6 else rng.randint(2, 5)
            yield (item_id, order, product_id, quantity, products[product_id - 1][3])


def _transfers(rng: random.Random, scale: int) -> Iterator[Row]:
    if scale < 2:
        return
    for i in range(1, min(scale, 100) + 1):
        source, target = rng.sample(range(1, scale + 1), 2)
        key = f"seed-transfer-{i:05d}" if i % 2 else None
        created = EPOCH - timedelta(seconds=rng.random() * 30 * _DAY)
        yield (i, source, target, _cents(rng.randint(100, 20_000)), key, created)


# --------------------------------------------------------------------------- loading


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
    ),
    "profiles": ("id", "user_id", "display_name", "bio"),
    "accounts": ("id", "owner_id", "currency", "balance", "created_at"),
    "tags": ("id", "name"),
    "products": ("id", "sku", "name", "price", "stock", "created_at"),
    "posts": ("id", "author_id", "title", "content", "published_at", "created_at", "updated_at"),
    "post_tags": ("post_id", "tag_id"),
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


# --------------------------------------------------------------------------- maintained counts


class _Counts:
    """The maintained counts (migration 0006), counted as the rows stream to COPY.

    The counting triggers are off for the load (and the foreign keys dropped), so
    children are loaded before their parents: comments, posts, post_tags, then tags
    and users, each parent row leaving with its counts, and no UPDATE rewrites a
    loaded table afterwards. ``post_totals`` is written once at the end.
    """

    COLUMNS = {
        "posts": ("comment_count",),
        "tags": ("published_post_count",),
        "users": ("post_count", "published_post_count"),
    }
    FIRST = ("comments", "posts", "post_tags", "tags", "users")
    """Loaded first, in this order: each one's counts come from the ones before it."""
    TRIGGERED = ("comments", "posts", "post_tags")

    def __init__(self, scale: int) -> None:
        self.comments = [0] * (10 * scale + 1)  # by post id
        self.published = bytearray(10 * scale + 1)  # by post id
        self.posts = [0] * (scale + 1)  # by author id
        self.published_posts = [0] * (scale + 1)
        self.tagged = [0] * (TAG_COUNT + 1)  # published posts, by tag id

    def counted(self, tables: dict[str, tuple[Iterable[Row], int]]) -> None:
        """Wrap the row streams that count or carry counts, and put them first."""
        wrap = {
            "comments": self._comments,
            "posts": self._posts,
            "post_tags": self._post_tags,
            "tags": self._tags,
            "users": self._users,
        }
        rest = {name: table for name, table in tables.items() if name not in self.FIRST}
        first = {name: (wrap[name](tables[name][0]), tables[name][1]) for name in self.FIRST}
        tables.clear()
        tables.update(first | rest)

    def _comments(self, rows: Iterable[Row]) -> Iterator[Row]:
        comments = self.comments
        for row in rows:
            comments[row[1]] += 1
            yield row

    def _posts(self, rows: Iterable[Row]) -> Iterator[Row]:
        comments, published = self.comments, self.published
        posts, published_posts = self.posts, self.published_posts
        for row in rows:
            post, author = row[0], row[1]
            posts[author] += 1
            if row[4] is not None:
                published[post] = 1
                published_posts[author] += 1
            yield (*row, comments[post])

    def _post_tags(self, rows: Iterable[Row]) -> Iterator[Row]:
        published, tagged = self.published, self.tagged
        for row in rows:
            if published[row[0]]:
                tagged[row[1]] += 1
            yield row

    def _tags(self, rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            yield (*row, self.tagged[row[0]])

    def _users(self, rows: Iterable[Row]) -> Iterator[Row]:
        posts, published_posts = self.posts, self.published_posts
        for row in rows:
            yield (*row, posts[row[0]], published_posts[row[0]])

    async def load_totals(self, conn: asyncpg.Connection) -> None:
        """The striped totals: everything in stripe 0 (the tables were empty)."""
        await conn.execute("DELETE FROM post_totals")
        await conn.execute(
            "INSERT INTO post_totals (stripe, posts, published) VALUES (0, $1, $2)",
            sum(self.posts),
            sum(self.published_posts),
        )

    async def triggers(self, conn: asyncpg.Connection, enabled: bool) -> None:
        """Turn the counting triggers off for the load, and on again (in its transaction)."""
        switch = "ENABLE" if enabled else "DISABLE"
        for table in self.TRIGGERED:
            await conn.execute(f"ALTER TABLE {table} {switch} TRIGGER USER")


def _plan(scale: int, seed: int, password_hash: str, counts: _Counts) -> list[_Table]:
    def rng(table: str) -> random.Random:
        return random.Random(f"gql_app:{seed}:{table}")

    products = _products(rng("products"))
    s = scale
    rows_and_counts: dict[str, tuple[Iterable[Row], int]] = {
        "users": (_users(rng("users"), s, password_hash), s),
        "profiles": (_profiles(rng("profiles"), s), s),
        "accounts": (_accounts(rng("accounts"), s), s),
        "tags": (_tags(), TAG_COUNT),
        "products": (products, PRODUCT_COUNT),
        "posts": (_posts(rng("posts"), s), 10 * s),
        "post_tags": (_post_tags(rng("post_tags"), s), 25 * s),
        "comments": (_comments(rng("comments"), s), 50 * s),
        "orders": (_orders(rng("orders"), s), 3 * s),
        "order_items": (_order_items(rng("order_items"), s, products), int(7.5 * s)),
        "transfers": (_transfers(rng("transfers"), s), min(s, 100) if s >= 2 else 0),
    }
    counts.counted(rows_and_counts)
    return [
        _Table(name, COLUMNS[name] + _Counts.COLUMNS.get(name, ()), rows, expected)
        for name, (rows, expected) in rows_and_counts.items()
    ]


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        asyncpg_dsn(url),
        server_settings={"application_name": "gql_app seed", "statement_timeout": "0"},
    )


def shared_password_hash(seed: int) -> str:
    """One argon2id hash of ``password`` for every seeded user, salted from the seed."""
    salt = hashlib.sha256(f"gql_app seed {seed}".encode()).digest()[:16]
    return PasswordHasher().hash(SEED_PASSWORD, salt=salt)


async def _load(conn: asyncpg.Connection, table: _Table, progress: bool) -> int:
    """COPY ``table``'s rows. post_tags also holds copies of its post's ordering
    columns (migration 0005): its pairs are copied into a scratch table, then joined
    to the loaded posts in one INSERT (set-based: no per-row trigger call)."""
    if table.name != "post_tags":
        return await _copy(conn, table, progress)
    await conn.execute(
        "CREATE TEMP TABLE post_tags_pairs (post_id bigint, tag_id bigint) ON COMMIT DROP"
    )
    loaded = await _copy(conn, table, progress, into="post_tags_pairs")
    await conn.execute("ANALYZE post_tags_pairs")
    await conn.execute("SET LOCAL work_mem = '256MB'")  # the join's hash of the posts in memory
    await conn.execute(
        "INSERT INTO post_tags (post_id, tag_id, published_at, created_at, title)"
        " SELECT l.post_id, l.tag_id, p.published_at, p.created_at, p.title"
        " FROM post_tags_pairs l JOIN posts p ON p.id = l.post_id"
    )
    return loaded


async def _copy(
    conn: asyncpg.Connection, table: _Table, progress: bool, into: str | None = None
) -> int:
    loaded = 0
    with tqdm(
        total=table.expected,
        desc=f"{table.name:<11}",
        unit=" rows",
        unit_scale=True,
        disable=not progress,
    ) as bar:

        def stream() -> Iterator[Row]:
            nonlocal loaded
            for chunk in _chunked(table.rows):
                yield from chunk
                loaded += len(chunk)
                bar.update(len(chunk))

        await conn.copy_records_to_table(
            into or table.name, records=stream(), columns=table.columns
        )
        bar.total = loaded
        bar.refresh()
    return loaded


async def _detach_indexes_and_foreign_keys(
    conn: asyncpg.Connection, tables: Sequence[str]
) -> list[str]:
    """Drops the loaded tables' secondary indexes and foreign keys; returns the DDL to restore them.

    Building an index once over all rows, and checking a foreign key with one
    join, is far faster than maintaining them row by row. Primary keys, unique
    and check constraints stay in place. Transactional DDL: a failure rolls back.
    """
    indexes = await conn.fetch(
        """
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS ddl
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1::text[])
          AND NOT EXISTS (
            SELECT 1 FROM pg_constraint c
            WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
              AND c.contype IN ('p', 'u', 'x'))
        ORDER BY 1
        """,
        list(tables),
    )
    foreign_keys = await conn.fetch(
        """
        SELECT c.conrelid::regclass::text AS tab, quote_ident(c.conname) AS name,
               pg_get_constraintdef(c.oid) AS ddl
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.contype = 'f' AND t.relnamespace = current_schema()::regnamespace
          AND t.relname = ANY($1::text[])
        ORDER BY 1, 2
        """,
        list(tables),
    )
    for fk in foreign_keys:
        await conn.execute(f"ALTER TABLE {fk['tab']} DROP CONSTRAINT {fk['name']}")
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    return [index["ddl"] for index in indexes] + [
        f"ALTER TABLE {fk['tab']} ADD CONSTRAINT {fk['name']} {fk['ddl']}" for fk in foreign_keys
    ]


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


async def seed(url: str, scale: int, *, progress: bool = True, seed: int = 42) -> SeedReport:
    """Loads the benchmark data set at ``scale`` (S) into an empty, migrated database,
    in one transaction:

    - S users (``user00001``, ``user00001@example.com``, password ``password``;
      user 1 is an admin), each with a profile and one USD account;
    - 10·S posts (exactly 80% published: every post whose id is not a multiple
      of 5), authors skewed so a few users write a lot;
    - 50·S comments, on published posts only, after their publication;
    - 200 tags, 1-4 distinct per post;
    - 500 products (``SKU-00001``...), 3·S orders of 1-4 items (mostly PAID or
      SHIPPED, some PENDING, about 5% CANCELLED; unit price = product price);
    - a handful of transfers between accounts.

    The same scale and seed give the same rows, byte for byte: every table draws
    from its own ``random.Random`` seeded from (seed, table), timestamps derive
    from ``EPOCH`` (never ``now()``), ids are assigned here, and the shared
    password hash's salt derives from the seed. Secondary indexes and foreign keys
    are dropped for the load and rebuilt set-based before the commit (as
    ``pg_restore`` does); identity sequences are moved past the loaded ids.
    """
    if scale < 1:
        raise ValueError("scale must be at least 1")
    started = time.perf_counter()
    counts = _Counts(scale)
    plan = _plan(scale, seed, shared_password_hash(seed), counts)
    names = [t.name for t in plan]
    rows: dict[str, int] = {}
    conn = await connect(url)
    try:
        if busy := await _non_empty_tables(conn, names):
            raise RuntimeError(
                f"refusing to seed: these tables already have rows: {', '.join(busy)}"
            )
        async with conn.transaction():
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            await conn.execute("SET LOCAL synchronous_commit = off")
            restore = await _detach_indexes_and_foreign_keys(conn, names)
            await counts.triggers(conn, enabled=False)
            for table in plan:
                rows[table.name] = await _load(conn, table, progress)
            await counts.load_totals(conn)
            await counts.triggers(conn, enabled=True)
            for ddl in tqdm(restore, desc="indexes    ", unit=" ddl", disable=not progress):
                await conn.execute(ddl)
            await _reset_identities(conn, names)
        await conn.execute("ANALYZE " + ", ".join(f'"{name}"' for name in names))
    finally:
        await conn.close()
    return SeedReport(rows=rows, seconds=time.perf_counter() - started)


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
