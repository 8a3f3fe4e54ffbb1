from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import strawberry

from gql_app.content import models
from gql_app.content.loaders import (
    CommentPageByPostIdLoader,
    PostByIdLoader,
    PostCriteria,
    PostPageByTagIdLoader,
    TagsByPostIdLoader,
    tag_post_total,
)
from gql_app.engine.columns import rows_of
from gql_app.engine.fields import computed, loaded
from gql_app.relay.connection import Connection, OrderDirection, Sorting, connection
from gql_app.relay.ids import decode_id_of
from gql_app.relay.node import Node, global_id
from gql_app.users.lazy import UserType
from gql_app.users.loaders import UserByIdLoader


@strawberry.enum
class PostOrderField(enum.Enum):
    CREATED_AT = "created_at"
    PUBLISHED_AT = "published_at"
    TITLE = "title"


@strawberry.enum
class CommentOrderField(enum.Enum):
    CREATED_AT = "created_at"


class TagOrderField(enum.Enum):  # not exposed: tags come by name
    NAME = "name"


POST_ORDER = Sorting(PostOrderField, models.Post, OrderDirection.DESC)
COMMENT_ORDER = Sorting(CommentOrderField, models.Comment, OrderDirection.ASC)
TAG_ORDER = Sorting(TagOrderField, models.Tag, OrderDirection.ASC)


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


@rows_of(models.Post, always=("author_id", "published_at"))  # can_see_post
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
    comment_count: int  # maintained by the database with every write (migration 0006)
    comments: Connection[Comment] = connection(CommentPageByPostIdLoader, COMMENT_ORDER)


@rows_of(models.Tag)
@strawberry.type
class Tag(Node):
    id: strawberry.ID = global_id("Tag")
    name: str

    posts: Connection[Post] = connection(
        PostPageByTagIdLoader,
        POST_ORDER,
        criteria=PostCriteria(published_only=True),
        total=tag_post_total,
        description="Published posts carrying this tag.",
    )
    post_count: int = computed(
        lambda tag, info: tag.published_post_count, int, columns=("published_post_count",)
    )


@rows_of(models.Comment, always=("post_id",))  # a Comment node is visible when its post is
@strawberry.type
class Comment(Node):
    id: strawberry.ID = global_id("Comment")
    body: str
    created_at: datetime

    author: UserType = loaded(UserByIdLoader, "author_id", UserType)
    post: Post = loaded(
        PostByIdLoader, "post_id", Annotated["Post", strawberry.lazy("gql_app.content.types")]
    )
