from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, or_

from gql_app.content.models import Comment, Post, Tag, post_tags
from gql_app.data.context import Context
from gql_app.data.loaders import (
    ByColumnLoader,
    ByIdLoader,
    CountLoader,
    ManyToManyLoader,
    PageLoader,
    RootPage,
)
from gql_app.data.pages import contains, in_range


def visible_posts(ctx: Context) -> list[ColumnElement[bool]]:
    """Drafts are visible only to their author and to admins."""
    if ctx.is_admin:
        return []
    published = Post.published_at.is_not(None)
    if ctx.viewer is None:
        return [published]
    return [or_(published, Post.author_id == ctx.viewer.id)]


def can_see_post(ctx: Context, post: Post) -> bool:
    return post.published_at is not None or ctx.can_see_private(post.author_id)


@dataclass(frozen=True)
class PostCriteria:
    """A PostFilter as a hashable value (part of loader keys)."""

    author_id: int | None = None
    tag: str | None = None
    published: bool | None = None
    search: str | None = None
    published_after: datetime | None = None
    published_before: datetime | None = None
    published_only: bool = False

    def conditions(self, ctx: Context) -> list[ColumnElement[bool]]:
        conds = visible_posts(ctx)
        if self.published_only or self.published is True:
            conds.append(Post.published_at.is_not(None))
        elif self.published is False:
            conds.append(Post.published_at.is_(None))
        if self.author_id is not None:
            conds.append(Post.author_id == self.author_id)
        if self.tag is not None:
            conds.append(
                exists()
                .select_from(post_tags.join(Tag))
                .where(post_tags.c.post_id == Post.id)
                .where(Tag.name == self.tag)
            )
        if self.search:
            conds.append(
                or_(contains(Post.title, self.search), contains(Post.content, self.search))
            )
        return conds + in_range(Post.published_at, self.published_after, self.published_before)


def visible_comments(ctx: Context) -> list[ColumnElement[bool]]:
    """Comments are visible when their post is."""
    post_conds = visible_posts(ctx)
    if not post_conds:
        return []
    return [exists().where(Post.id == Comment.post_id, *post_conds)]


class PostByIdLoader(ByIdLoader[Post], model=Post): ...


class TagByIdLoader(ByIdLoader[Tag], model=Tag): ...


class CommentByIdLoader(ByIdLoader[Comment], model=Comment): ...


class TagByNameLoader(ByColumnLoader[Tag], column=Tag.name): ...


class TagsByPostIdLoader(ManyToManyLoader[Tag], model=Tag):
    link = post_tags
    link_parent = "post_id"
    link_child = "tag_id"
    order_by = (Tag.name,)


class PublishedPostCountByAuthorIdLoader(CountLoader, column=Post.author_id):
    def conditions(self) -> list[ColumnElement[bool]]:
        return [Post.published_at.is_not(None)]


class PublishedPostCountByTagIdLoader(CountLoader, model=Post, column=post_tags.c.tag_id):
    source = post_tags.join(Post, Post.id == post_tags.c.post_id)

    def conditions(self) -> list[ColumnElement[bool]]:
        return [Post.published_at.is_not(None)]


class CommentCountByPostIdLoader(CountLoader, column=Comment.post_id): ...


class PostPageByAuthorIdLoader(PageLoader[Post], column=Post.author_id): ...


class PostPageByTagIdLoader(PageLoader[Post], model=Post):
    def children(self, parent: ColumnElement[Any]) -> tuple[Any, list[ColumnElement[bool]]]:
        return Post.__table__.join(post_tags, post_tags.c.post_id == Post.id), [
            post_tags.c.tag_id == parent
        ]


class CommentPageByPostIdLoader(PageLoader[Comment], column=Comment.post_id): ...


class PostPage(RootPage[Post], model=Post): ...


class TagPage(RootPage[Tag], model=Tag): ...


class CommentPageByAuthorIdLoader(PageLoader[Comment], column=Comment.author_id):
    def conditions(self, filter: Any) -> list[ColumnElement[bool]]:
        return visible_comments(self.ctx)
