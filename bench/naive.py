"""The naive baseline: the same W1-W3 answers from plain per-object resolvers (N+1).

A small Strawberry schema over the same tables (gql_app's SQLAlchemy models), the
way a first version is usually written: one AsyncSession per request, and every
relationship field runs its own ``SELECT`` for its one parent (``session.get``
for a to-one by primary key, so the identity map spares repeated authors). No
dataloaders, no batching. Answers are byte-equal to gql_app's for the benchmark
documents: same field names, ordering, global IDs and cursors (anonymous viewer:
published posts only).

    uvicorn bench.naive:app --port 8101      # DATABASE_URL names the database
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import strawberry
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.types import Info

from gql_app.content.loaders import PostCriteria
from gql_app.content.models import Comment as CommentRow
from gql_app.content.models import Post as PostRow
from gql_app.content.models import Tag as TagRow
from gql_app.content.models import post_tags
from gql_app.data.db import create_engine, create_sessionmaker
from gql_app.data.pages import Ordering, SortKey
from gql_app.relay.cursors import binding, encode_cursor
from gql_app.relay.ids import decode_id, encode_id
from gql_app.settings import Settings
from gql_app.users.models import Profile as ProfileRow
from gql_app.users.models import User as UserRow

CURSOR_KEY = Settings().secret_key.encode()  # the same key as the gql_app contender

DEFAULT_PAGE = 20


class DB:
    """The request's session; sibling resolvers run concurrently, so one at a time."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.lock = asyncio.Lock()

    async def all(self, stmt: Any) -> list[Any]:
        async with self.lock:
            return list((await self.session.scalars(stmt)).all())

    async def one(self, stmt: Any) -> Any:
        async with self.lock:
            return await self.session.scalar(stmt)

    async def get(self, model: type[Any], pk: int) -> Any:
        async with self.lock:
            return await self.session.get(model, pk)


def db(info: Info) -> DB:
    return info.context["db"]  # type: ignore[no-any-return]


class SessionPerRequest(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context.context
        async with context["sessionmaker"]() as session:
            context["db"] = DB(session)
            yield


# ---------------------------------------------------------------- types


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class PostOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    PUBLISHED_AT = "PUBLISHED_AT"


@strawberry.enum
class UserOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"


@strawberry.input
class PostOrder:
    field: PostOrderField
    direction: OrderDirection = OrderDirection.DESC


@strawberry.input
class UserOrder:
    field: UserOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class PostFilter:
    published: bool | None = None


POST_KEYS = {
    "CREATED_AT": SortKey("CREATED_AT", PostRow.created_at),
    "PUBLISHED_AT": SortKey("PUBLISHED_AT", PostRow.published_at, nullable=True),
}
USER_KEYS = {"CREATED_AT": SortKey("CREATED_AT", UserRow.created_at)}
PUBLISHED = PostRow.published_at.is_not(None)  # the anonymous viewer sees published posts


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class Profile:
    display_name: str


@strawberry.type
class User(Node):
    row: strawberry.Private[Any]
    username: str

    @classmethod
    def of(cls, row: UserRow) -> User:
        return cls(id=strawberry.ID(encode_id("User", row.id)), username=row.username, row=row)

    @strawberry.field
    async def profile(self, info: Info) -> Profile | None:
        stmt = select(ProfileRow).where(ProfileRow.user_id == self.row.id)
        row = await db(info).one(stmt)
        return Profile(display_name=row.display_name) if row is not None else None

    @strawberry.field
    async def post_count(self, info: Info) -> int:
        stmt = select(func.count()).select_from(PostRow)
        return await db(info).one(stmt.where(PostRow.author_id == self.row.id, PUBLISHED))  # type: ignore[no-any-return]

    @strawberry.field
    async def posts(self, info: Info, first: int | None = None) -> PostConnection:
        ordering = Ordering(POST_KEYS["CREATED_AT"], True, PostRow.id)
        where = [PostRow.author_id == self.row.id, PUBLISHED]
        return await PostConnection.load(info, "User.posts", ordering, where, first)


@strawberry.type
class Comment(Node):
    row: strawberry.Private[Any]
    body: str

    @strawberry.field
    async def author(self, info: Info) -> User:
        return User.of(await db(info).get(UserRow, self.row.author_id))


@strawberry.type
class CommentConnection:
    rows: strawberry.Private[list[Any]]

    @strawberry.field
    def nodes(self) -> list[Comment]:
        return [
            Comment(id=strawberry.ID(encode_id("Comment", r.id)), body=r.body, row=r)
            for r in self.rows
        ]


@strawberry.type
class Post(Node):
    row: strawberry.Private[Any]
    title: str
    published_at: datetime | None

    @classmethod
    def of(cls, row: PostRow) -> Post:
        return cls(
            id=strawberry.ID(encode_id("Post", row.id)),
            title=row.title,
            published_at=row.published_at,
            row=row,
        )

    @strawberry.field
    async def author(self, info: Info) -> User:
        return User.of(await db(info).get(UserRow, self.row.author_id))

    @strawberry.field
    async def tags(self, info: Info) -> list[Tag]:
        stmt = (
            select(TagRow)
            .join(post_tags, post_tags.c.tag_id == TagRow.id)
            .where(post_tags.c.post_id == self.row.id)
            .order_by(TagRow.name, TagRow.id)
        )
        return [Tag(name=t.name) for t in await db(info).all(stmt)]

    @strawberry.field
    async def comment_count(self, info: Info) -> int:
        stmt = select(func.count()).select_from(CommentRow)
        return await db(info).one(stmt.where(CommentRow.post_id == self.row.id))  # type: ignore[no-any-return]

    @strawberry.field
    async def comments(self, info: Info, first: int | None = None) -> CommentConnection:
        stmt = (
            select(CommentRow)
            .where(CommentRow.post_id == self.row.id)
            .order_by(CommentRow.created_at, CommentRow.id)
            .limit(DEFAULT_PAGE if first is None else first)
        )
        return CommentConnection(rows=await db(info).all(stmt))


@strawberry.type
class Tag:
    name: str


@strawberry.type
class PostEdge:
    cursor: str
    node: Post


@strawberry.type
class PostConnection:
    rows: strawberry.Private[list[Any]]
    bound: strawberry.Private[bytes]
    ordering: strawberry.Private[Ordering]
    where: strawberry.Private[list[Any]]

    @classmethod
    async def load(
        cls,
        info: Info,
        bound: bytes,
        ordering: Ordering,
        where: list[ColumnElement[bool]],
        first: int | None,
    ) -> PostConnection:
        stmt = (
            select(PostRow)
            .where(*where)
            .order_by(*ordering.order_by())
            .limit(DEFAULT_PAGE if first is None else first)
        )
        return cls(rows=await db(info).all(stmt), bound=bound, ordering=ordering, where=where)

    @strawberry.field
    async def total_count(self, info: Info) -> int:
        stmt = select(func.count()).select_from(PostRow).where(*self.where)
        return await db(info).one(stmt)  # type: ignore[no-any-return]

    @strawberry.field
    def edges(self) -> list[PostEdge]:
        return [
            PostEdge(
                cursor=encode_cursor(self.bound, self.ordering.values(r), CURSOR_KEY),
                node=Post.of(r),
            )
            for r in self.rows
        ]

    @strawberry.field
    def nodes(self) -> list[Post]:
        return [Post.of(r) for r in self.rows]


@strawberry.type
class UserConnection:
    rows: strawberry.Private[list[Any]]

    @strawberry.field
    def nodes(self) -> list[User]:
        return [User.of(r) for r in self.rows]


@strawberry.type
class Query:
    @strawberry.field
    async def posts(
        self,
        info: Info,
        first: int | None = None,
        filter: PostFilter | None = None,
        order_by: PostOrder | None = None,
    ) -> PostConnection:
        field, direction = (
            ("CREATED_AT", OrderDirection.DESC)
            if order_by is None
            else (order_by.field.value, order_by.direction)
        )
        ordering = Ordering(POST_KEYS[field], direction is OrderDirection.DESC, PostRow.id)
        where: list[ColumnElement[bool]] = [PUBLISHED]
        if filter is not None and filter.published is False:
            where.append(PostRow.published_at.is_(None))  # drafts: none for anonymous
        # cursors are bound as gql_app binds them: the connection, its filter's
        # criteria, the parent (none at the root) and the ordering
        criteria = PostCriteria(published=filter.published if filter is not None else None)
        bound = binding(("Query.posts", criteria), None, ordering)
        return await PostConnection.load(info, bound, ordering, where, first)

    @strawberry.field
    async def users(
        self, info: Info, first: int | None = None, order_by: UserOrder | None = None
    ) -> UserConnection:
        descending = order_by is not None and order_by.direction is OrderDirection.DESC
        ordering = Ordering(USER_KEYS["CREATED_AT"], descending, UserRow.id)
        stmt = (
            select(UserRow)
            .order_by(*ordering.order_by())
            .limit(DEFAULT_PAGE if first is None else first)
        )
        return UserConnection(rows=await db(info).all(stmt))

    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, pk = decode_id(id)
        if type_name != "Post":
            return None
        row = await db(info).get(PostRow, pk)
        return Post.of(row) if row is not None and row.published_at is not None else None


schema = strawberry.Schema(query=Query, types=[Post, User, Comment], extensions=[SessionPerRequest])


class NaiveGraphQL(GraphQL[dict[str, Any], None]):
    async def get_context(self, request: Any, response: Any = None) -> dict[str, Any]:
        return {"request": request, "sessionmaker": request.app.state.sessionmaker}

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)  # the same encoder as gql_app: measure the data layer


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    settings = Settings()
    engine = create_engine(settings)  # gql_app's pool settings, DATABASE_URL
    app.state.sessionmaker = create_sessionmaker(engine)
    try:
        yield
    finally:
        await engine.dispose()


async def ready(request: Request) -> JSONResponse:
    async with request.app.state.sessionmaker() as session:
        await session.scalar(select(1))
    return JSONResponse({"status": "ready"})


def create_app() -> Starlette:
    return Starlette(
        routes=[Route("/graphql", NaiveGraphQL(schema, graphql_ide=None)), Route("/ready", ready)],
        lifespan=lifespan,
    )


app = create_app()
