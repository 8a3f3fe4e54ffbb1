"""Plain factory functions: a small, deterministic world for the read-side tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gql_app.models import (
    Account,
    AuthToken,
    Comment,
    Order,
    OrderItem,
    OrderStatus,
    Post,
    Product,
    Profile,
    Tag,
    Transfer,
    User,
    post_tags,
)
from gql_app.relay.ids import encode_id
from gql_app.users.passwords import hash_password, token_digest

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PASSWORD = "correct horse battery"
TAG_NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
MANY_USERS = 30
POSTS_PER_USER = 6  # 4 published, 2 drafts
COMMENTS_PER_PUBLISHED_POST = 4


@dataclass
class World:
    admin: int = 0
    alice: int = 0
    bob: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    users: list[int] = field(default_factory=list)
    posts: dict[int, list[int]] = field(default_factory=dict)
    drafts: dict[int, list[int]] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    products: list[int] = field(default_factory=list)
    orders: dict[int, list[int]] = field(default_factory=dict)
    accounts: dict[int, int] = field(default_factory=dict)
    transfers: list[int] = field(default_factory=list)

    def gid(self, type_name: str, pk: int) -> str:
        return encode_id(type_name, pk)


def at(minutes: int) -> datetime:
    return EPOCH + timedelta(minutes=minutes)


def make_user(session: AsyncSession, username: str, minute: int, **extra: object) -> User:
    user = User(
        username=username,
        email=f"{username}@example.com",
        password_hash=extra.pop("password_hash"),  # type: ignore[arg-type]
        created_at=at(minute),
        **extra,
    )
    session.add(user)
    return user


async def build_world(engine: AsyncEngine) -> World:
    world = World()
    password_hash = hash_password(PASSWORD)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        admin = make_user(session, "admin", 0, password_hash=password_hash, is_admin=True)
        alice = make_user(session, "alice", 1, password_hash=password_hash, age=31)
        bob = make_user(session, "bob", 2, password_hash=password_hash, last_login_at=at(5000))
        many = [
            make_user(session, f"member{i:02d}", 10 + i, password_hash=password_hash)
            for i in range(MANY_USERS)
        ]
        await session.flush()
        everyone = [admin, alice, bob, *many]
        for user in everyone:
            session.add(Profile(user_id=user.id, display_name=f"{user.username.title()} Display"))
            session.add(Account(owner_id=user.id, currency="USD", balance=Decimal("100.00")))
        tags = [Tag(name=name) for name in TAG_NAMES]
        session.add_all(tags)
        await session.flush()

        minute = 100
        posts_by_user: dict[int, list[Post]] = {}
        for index, user in enumerate([alice, bob, *many]):
            posts = []
            for n in range(POSTS_PER_USER):
                minute += 1
                published = n < 4
                posts.append(
                    Post(
                        author_id=user.id,
                        title=f"{user.username} post {n}",
                        content=f"Content {n} by {user.username}. 100% real_content",
                        created_at=at(minute),
                        published_at=at(minute + 1) if published else None,
                    )
                )
            session.add_all(posts)
            posts_by_user[user.id] = posts
            del index
        await session.flush()
        links = []
        for user_posts in posts_by_user.values():
            for n, post in enumerate(user_posts):
                for k in range(1 + n % 3):
                    links.append({"post_id": post.id, "tag_id": tags[(n + k * 3) % len(tags)].id})
        await session.execute(post_tags.insert(), links)

        minute = 10_000
        for user_posts in posts_by_user.values():
            for post in user_posts:
                if post.published_at is None:
                    continue
                for c in range(COMMENTS_PER_PUBLISHED_POST):
                    minute += 1
                    author = everyone[(post.id + c) % len(everyone)]
                    session.add(
                        Comment(
                            post_id=post.id,
                            author_id=author.id,
                            body=f"comment {c} on {post.title}",
                            created_at=at(minute),
                        )
                    )

        products = [
            Product(
                sku=f"SKU-{i:03d}",
                name=f"Product {chr(ord('A') + i)}",
                price=Decimal(f"{5 + i}.50"),
                stock=0 if i == 3 else 10 * i + 5,
                created_at=at(i),
            )
            for i in range(12)
        ]
        session.add_all(products)
        await session.flush()

        def order(
            customer: User, minute: int, status: OrderStatus, lines: list[tuple[int, int]]
        ) -> Order:
            o = Order(customer_id=customer.id, status=status, created_at=at(minute))
            session.add(o)
            return o

        order_specs = [
            (alice, 20_000, OrderStatus.PAID, [(0, 2), (1, 1)]),
            (alice, 20_100, OrderStatus.SHIPPED, [(2, 3)]),
            (alice, 20_200, OrderStatus.CANCELLED, [(0, 5)]),
            (bob, 20_300, OrderStatus.PENDING, [(1, 1), (4, 2), (5, 1)]),
        ]
        created = []
        for customer, minute_, status, lines in order_specs:
            created.append((order(customer, minute_, status, lines), lines))
        await session.flush()
        for o, lines in created:
            for product_index, quantity in lines:
                session.add(
                    OrderItem(
                        order_id=o.id,
                        product_id=products[product_index].id,
                        quantity=quantity,
                        unit_price=products[product_index].price,
                    )
                )
        await session.flush()

        account_rows = (
            await session.execute(Account.__table__.select().order_by(Account.id))
        ).all()
        account_of = {row.owner_id: row.id for row in account_rows}
        transfers = [
            Transfer(
                from_account_id=account_of[alice.id],
                to_account_id=account_of[bob.id],
                amount=Decimal("10.00"),
                created_at=at(30_000),
            ),
            Transfer(
                from_account_id=account_of[bob.id],
                to_account_id=account_of[alice.id],
                amount=Decimal("2.50"),
                created_at=at(30_100),
            ),
            Transfer(
                from_account_id=account_of[many[0].id],
                to_account_id=account_of[many[1].id],
                amount=Decimal("1.00"),
                created_at=at(30_200),
            ),
        ]
        session.add_all(transfers)
        for name, user in (("admin", admin), ("alice", alice), ("bob", bob)):
            token = f"test-token-{name}"
            world.tokens[name] = token
            session.add(
                AuthToken(
                    user_id=user.id,
                    token_hash=token_digest(token),
                    expires_at=datetime.now(UTC) + timedelta(days=1),
                )
            )
        await session.commit()

        world.admin, world.alice, world.bob = admin.id, alice.id, bob.id
        world.users = [u.id for u in everyone]
        for user_id, user_posts in posts_by_user.items():
            world.posts[user_id] = [p.id for p in user_posts if p.published_at is not None]
            world.drafts[user_id] = [p.id for p in user_posts if p.published_at is None]
        world.tags = {t.name: t.id for t in tags}
        world.products = [p.id for p in products]
        for o, _ in created:
            world.orders.setdefault(o.customer_id, []).append(o.id)
        world.accounts = account_of
        world.transfers = [t.id for t in transfers]
    return world
