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


class PostPageByAuthorIdLoader(PageLoader[Post], column=Post.author_id):
    """A signed-in viewer sees all their own posts and the published posts of others:
    two parts, each read through its own index (the published one through an index
    of published posts only); the part that is not the parent's is skipped whole
    (its parent test is a one-time filter). Anonymous viewers and admins read one."""

    def branches(
        self, parent: ColumnElement[Any]
    ) -> list[tuple[Any, list[ColumnElement[bool]]]] | None:
        viewer = self.ctx.viewer
        if viewer is None or viewer.is_admin:
            return None
        # The viewer's own part names the author as a constant, so that the planner
        # estimates it from the viewer's own rows and picks the author's index.
        return [
            (Post, [Post.author_id == viewer.id, parent == viewer.id]),
            (Post, [Post.author_id == parent, parent != viewer.id, Post.published_at.is_not(None)]),
        ]


class TaggedPostKeys:
    """Tag.posts' ordering columns: the copies in post_tags (migration 0005)."""

    created_at = post_tags.c.created_at
    published_at = post_tags.c.published_at
    title = post_tags.c.title
    id = post_tags.c.post_id


class PostPageByTagIdLoader(PageLoader[Post], model=Post):
    """Published posts only (Tag.posts): read in order from post_tags' partial
    indexes over the copied ordering columns, each row then fetched by id."""

    sort_keys = TaggedPostKeys

    def children(self, parent: ColumnElement[Any]) -> tuple[Any, list[ColumnElement[bool]]]:
        return Post.__table__.join(post_tags, post_tags.c.post_id == Post.id), [
            post_tags.c.tag_id == parent
        ]

    def branches(self, parent: ColumnElement[Any]) -> list[tuple[Any, list[ColumnElement[bool]]]]:
        from_, join = self.children(parent)
        return [(from_, [*join, post_tags.c.published_at.is_not(None)])]


class CommentPageByPostIdLoader(PageLoader[Comment], column=Comment.post_id): ...


class PostPage(RootPage[Post], model=Post): ...


class TagPage(RootPage[Tag], model=Tag): ...


class CommentPageByAuthorIdLoader(PageLoader[Comment], column=Comment.author_id):
    def conditions(self, filter: Any) -> list[ColumnElement[bool]]:
        return visible_comments(self.ctx)
