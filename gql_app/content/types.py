from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from gql_app.content import models
from gql_app.content.loaders import (
    COMMENT_SORTING,
    POST_SORTING,
    CommentCountByPostIdLoader,
    CommentPageByPostIdLoader,
    PostByIdLoader,
    PostCriteria,
    PostPageByTagIdLoader,
    PublishedPostCountByTagIdLoader,
    TagsByPostIdLoader,
)
from gql_app.context import Info
from gql_app.fastpath import loaded
from gql_app.ids import decode_id_of
from gql_app.loaders import load_page
from gql_app.node import Node, global_id
from gql_app.pagination import Connection, OrderDirection
from gql_app.users.loaders import UserByIdLoader

if TYPE_CHECKING:
    from gql_app.users.types import User

UserType = Annotated["User", strawberry.lazy("gql_app.users.types")]


@strawberry.enum
class PostOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    PUBLISHED_AT = "PUBLISHED_AT"
    TITLE = "TITLE"


@strawberry.input
class PostOrder:
    field: PostOrderField
    direction: OrderDirection = OrderDirection.DESC


@strawberry.enum
class CommentOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"


@strawberry.input
class CommentOrder:
    field: CommentOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class PostFilter:
    author_id: strawberry.ID | None = None
    tag: str | None = strawberry.field(default=None, description="Tag name, exact.")
    published: bool | None = strawberry.field(
        default=None,
        description="true: published only; false: drafts only (of posts the viewer may see); "
        "null: both.",
    )
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of title or content."
    )
    published_after: datetime | None = None
    published_before: datetime | None = None

    def criteria(self, **extra: Any) -> PostCriteria:
        return PostCriteria(
            author_id=decode_id_of(self.author_id, "User", "authorId") if self.author_id else None,
            tag=self.tag,
            published=self.published,
            search=self.search,
            published_after=self.published_after,
            published_before=self.published_before,
            **extra,
        )


def post_criteria(filter: PostFilter | None, **extra: Any) -> PostCriteria:
    return filter.criteria(**extra) if filter is not None else PostCriteria(**extra)


@strawberry.type
class Post(Node):
    id: strawberry.ID = global_id("Post")
    title: str
    content: str
    published_at: datetime | None = strawberry.field(
        description="Null while the post is a draft. "
        "Drafts are visible only to their author and admins."
    )
    created_at: datetime
    updated_at: datetime

    author: UserType = loaded(UserByIdLoader, "author_id", UserType)
    tags: list[Tag] = loaded(
        TagsByPostIdLoader,
        "id",
        list[Annotated["Tag", strawberry.lazy("gql_app.content.types")]],
        description="Sorted by name.",
    )
    comment_count: int = loaded(CommentCountByPostIdLoader, "id", int)

    @strawberry.field
    def comments(
        self,
        root: strawberry.Parent[models.Post],
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: CommentOrder | None = None,
    ) -> Connection[Comment]:
        args = COMMENT_SORTING.page_args(
            info, "Post.comments", first, after, last, before, order_by
        )
        return load_page(info, CommentPageByPostIdLoader, root.id, args)


@strawberry.type
class Tag(Node):
    id: strawberry.ID = global_id("Tag")
    name: str

    @strawberry.field(description="Published posts carrying this tag.")
    def posts(
        self,
        root: strawberry.Parent[models.Tag],
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: PostOrder | None = None,
    ) -> Connection[Post]:
        args = POST_SORTING.page_args(info, "Tag.posts", first, after, last, before, order_by)
        criteria = PostCriteria(published_only=True)
        return load_page(info, PostPageByTagIdLoader, root.id, args, criteria)

    post_count: int = loaded(PublishedPostCountByTagIdLoader, "id", int)


@strawberry.type
class Comment(Node):
    id: strawberry.ID = global_id("Comment")
    body: str
    created_at: datetime

    author: UserType = loaded(UserByIdLoader, "author_id", UserType)
    post: Post = loaded(
        PostByIdLoader, "post_id", Annotated["Post", strawberry.lazy("gql_app.content.types")]
    )
