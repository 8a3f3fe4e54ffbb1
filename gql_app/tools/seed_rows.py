"""The benchmark data set's rows, table by table, as tuples ready for binary COPY.

Generation is the seed's main cost at scale 100 000 (ten million rows in one Python
process), so the rows are built from cheap parts:

- timestamps are integers, microseconds since PostgreSQL's epoch (2000-01-01 UTC),
  sent as they are by the loader's ``timestamptz`` codec (``TIMESTAMP_CODEC``): no
  ``datetime``/``timedelta`` objects per row;
- texts are drawn from pools of sentences and titles made once per table from the
  table's random generator, instead of joining words for every row;
- random integers come from ``random()`` arithmetic, not ``randint``.

Every table draws from its own ``random.Random`` seeded from (seed, table), so the
same scale and seed give the same rows. To add a column, add it to the table's
``COLUMNS`` entry and to the tuple its generator yields, at the same position.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

Row = tuple[Any, ...]

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Every seeded timestamp is at or before this instant."""
TAG_COUNT = 200
PRODUCT_COUNT = 500
POOL = 16_384
"""Distinct sentences (and titles) per table: texts are drawn from these."""


def micros(at: datetime) -> int:
    """``at`` as the loader sends timestamps: microseconds since 2000-01-01 UTC."""
    return (at - PG_EPOCH) // timedelta(microseconds=1)


TIMESTAMP_CODEC: dict[str, Any] = {
    "typename": "timestamptz",
    "schema": "pg_catalog",
    "format": "tuple",
    "encoder": lambda us: (us,),
    "decoder": lambda t: t[0],
}
"""``Connection.set_type_codec`` arguments: ``timestamptz`` as microseconds (ints)."""

_SECOND = 1_000_000
_DAY = 86_400 * _SECOND
_EPOCH = micros(EPOCH)
USERS_FROM, USERS_SPAN = _EPOCH - 1095 * _DAY, 1065 * _DAY
POSTS_FROM, POSTS_SPAN = _EPOCH - 730 * _DAY, 729 * _DAY
ORDERS_FROM, ORDERS_SPAN = _EPOCH - 730 * _DAY, 730 * _DAY
PRODUCTS_FROM, PRODUCTS_SPAN = _EPOCH - 1100 * _DAY, 300 * _DAY


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


def _phrase(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(low, high))).capitalize()


def _pool(rng: random.Random, low: int, high: int, ending: str = ".") -> list[str]:
    """``POOL`` phrases of low..high words (capitalized, ending with ``ending``)."""
    return [_phrase(rng, low, high) + ending for _ in range(POOL)]


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def _skewed(rng: random.Random, n: int, power: float) -> Callable[[], int]:
    """Picks ids 1..n unevenly (a few ids often, most rarely) in a shuffled order."""
    order = list(range(1, n + 1))
    rng.shuffle(order)
    draw = rng.random
    return lambda: order[int(n * draw() ** power)]


def users(rng: random.Random, scale: int, password_hash: str) -> Iterator[Row]:
    width = max(5, len(str(scale)))
    step = USERS_SPAN / scale
    draw = rng.random
    for i in range(1, scale + 1):
        created = USERS_FROM + int(step * (i - 1 + draw()))
        age = None if draw() < 0.15 else 16 + int(draw() * 65)
        login = None if draw() < 0.2 else created + int(draw() * (_EPOCH - created))
        name = f"user{i:0{width}d}"
        email = f"{name}@example.com"
        yield (i, name, email, password_hash, True, i == 1, age, created, created, login)


def profiles(rng: random.Random, scale: int) -> Iterator[Row]:
    bios = _pool(rng, 6, 16)
    draw = rng.random
    for i in range(1, scale + 1):
        display = f"{_FIRST[int(draw() * len(_FIRST))]} {_LAST[int(draw() * len(_LAST))]}"
        bio = None if draw() < 0.3 else bios[int(draw() * POOL)]
        yield (i, i, display, bio)


def accounts(rng: random.Random, scale: int) -> Iterator[Row]:
    step = USERS_SPAN / scale
    for i in range(1, scale + 1):
        opened = USERS_FROM + int(step * i)  # just after the owner joined
        yield (i, i, "USD", _cents(rng.randint(0, 1_000_000)), opened)


def tags() -> Iterator[Row]:
    names = [topic + suffix for suffix in _TAG_SUFFIXES for topic in _TOPICS]
    yield from enumerate(names[:TAG_COUNT], start=1)


def products(rng: random.Random) -> list[Row]:
    rows = []
    step = PRODUCTS_SPAN / PRODUCT_COUNT
    for i in range(1, PRODUCT_COUNT + 1):
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.randint(1, 9)}"
        price = _cents(rng.randint(199, 49_999))
        created = PRODUCTS_FROM + int(step * (i - 1))
        rows.append((i, f"SKU-{i:05d}", name, price, rng.randint(0, 1000), created))
    return rows


def posts(rng: random.Random, scale: int) -> Iterator[Row]:
    """10·S posts; every post whose id is not a multiple of 5 is published."""
    count = 10 * scale
    titles, sentences = _pool(rng, 3, 7, ""), _pool(rng, 8, 16)
    author = _skewed(rng, scale, 2.0)
    draw, choices = rng.random, rng.choices
    step = POSTS_SPAN / count
    for i in range(1, count + 1):
        created = POSTS_FROM + int(step * (i - 1 + draw()))
        content = " ".join(choices(sentences, k=2 + int(draw() * 4)))
        published = None
        if i % 5:
            published = created + 60 * _SECOND + int(draw() * (_DAY - 60 * _SECOND))
        title = titles[int(draw() * POOL)]
        yield (i, author(), title, content, published, created, published or created)


def post_tags(rng: random.Random, scale: int) -> Iterator[Row]:
    draw = rng.random
    for post in range(1, 10 * scale + 1):
        wanted = 1 + int(draw() * 4)
        chosen: set[int] = set()
        while len(chosen) < wanted:
            chosen.add(int(TAG_COUNT * draw() ** 2) + 1)
        for tag in sorted(chosen):
            yield (post, tag)


def commented_posts(rng: random.Random, scale: int) -> array[int]:
    """The post of each of the 50·S comments, in comment order: published posts
    only, skewed so a few posts get many. Drawn before any row is loaded, so the
    posts can carry their ``comment_count`` although their comments load later."""
    published = 8 * scale  # the posts whose id is not a multiple of 5
    spread = next(p for p in (7919, 104_729, 1_299_709) if math.gcd(p, published) == 1)
    draw = rng.random
    posts = array("l", bytes(8 * 50 * scale))
    for i in range(50 * scale):
        k = (int(published * draw() ** 2) * spread) % published
        posts[i] = (k // 4) * 5 + k % 4 + 1
    return posts


def comments(rng: random.Random, scale: int, posts: Sequence[int]) -> Iterator[Row]:
    """50·S comments on ``posts`` (``commented_posts``), each after its post's
    publication."""
    count = 10 * scale
    bodies = _pool(rng, 3, 20)
    author = _skewed(rng, scale, 1.5)
    draw, log = rng.random, math.log
    mean_delay = 3 * _DAY
    for i, post in enumerate(posts, 1):
        # After the post's slot ends and its publication (at most a day later).
        earliest = POSTS_FROM + POSTS_SPAN * post // count + _DAY
        created = min(earliest - int(mean_delay * log(1.0 - draw())), _EPOCH)
        yield (i, post, author(), bodies[int(draw() * POOL)], created)


_STATUSES = (("CANCELLED", 0.05), ("PENDING", 0.17), ("PAID", 0.60), ("SHIPPED", 1.0))


def orders(rng: random.Random, scale: int) -> Iterator[Row]:
    count = 3 * scale
    customer = _skewed(rng, scale, 1.5)
    step = ORDERS_SPAN / count
    for i in range(1, count + 1):
        r = rng.random()
        status = next(name for name, upto in _STATUSES if r < upto)
        yield (i, customer(), status, ORDERS_FROM + int(step * (i - 1)))


def order_items(rng: random.Random, scale: int, catalog: Sequence[Row]) -> Iterator[Row]:
    """1-4 distinct products per order, at the product's price."""
    product = _skewed(rng, len(catalog), 1.5)
    draw = rng.random
    item_id = 0
    for order in range(1, 3 * scale + 1):
        wanted = 1 + int(draw() * 4)
        chosen: set[int] = set()
        while len(chosen) < wanted:
            chosen.add(product())
        for product_id in sorted(chosen):
            item_id += 1
            quantity = 1 if draw() < 0.6 else 2 + int(draw() * 4)
            yield (item_id, order, product_id, quantity, catalog[product_id - 1][3])


def transfers(rng: random.Random, scale: int) -> Iterator[Row]:
    if scale < 2:
        return
    for i in range(1, min(scale, 100) + 1):
        source, target = rng.sample(range(1, scale + 1), 2)
        key = f"seed-transfer-{i:05d}" if i % 2 else None
        created = _EPOCH - int(rng.random() * 30 * _DAY)
        yield (i, source, target, _cents(rng.randint(100, 20_000)), key, created)
