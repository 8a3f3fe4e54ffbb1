from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, exists, func, literal, or_, select

from gql_app.content.models import Comment, Post, PostTotal, Tag, post_tags
from gql_app.data.context import Context
from gql_app.data.loaders import (
    ByColumnLoader,
    ByIdLoader,
    ManyToManyLoader,
    PageLoader,
    RootPage,
)
from gql_app.data.pages import contains, in_range
from gql_app.engine.fields import reading
from gql_app.users.models import User


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

    def counted(self, visibility: Any, owner: int | None = None) -> tuple[bool, Drafts] | None:
        """What the total of the posts this criteria and ``visibility`` (``ctx.visibility``)
        select is made of, in maintained counts: (published posts?, which drafts), for
        posts of ``owner`` (a user's page) or of everyone; None when the filter narrows
        the posts beyond what the counts tell (search, dates, a tag with an author)."""
        if self.search or self.published_after or self.published_before:
            return None
        if self.tag is not None and self.author_id is not None:
            return None
        owner = self.author_id if owner is None else owner
        published = self.published is not False
        if self.published_only or self.published is True or visibility is None:
            drafts = Drafts.NONE
        elif visibility == "admin" or visibility == owner:
            drafts = Drafts.ALL
        else:  # a member: their own drafts, none of the owner's
            drafts = Drafts.VIEWER if owner is None else Drafts.NONE
        return published, drafts


class Drafts(enum.Enum):
    """Which drafts a total counts."""

    NONE = "none"
    ALL = "all"  # every draft in scope (an admin's, or the owner's own)
    VIEWER = "viewer"  # the viewer's own drafts


@reading("id", "published_post_count", "post_count")
def author_post_total(ctx: Context, author: Any, criteria: PostCriteria) -> int | None:
    """``User.posts { totalCount }`` from the user's row (its maintained counts), or None
    when the filter needs an exact count."""
    if criteria.author_id is not None or criteria.tag is not None:
        return None
    counted = criteria.counted(ctx.visibility, author.id)
    if counted is None:
        return None
    published, drafts = counted
    total = author.published_post_count if published else 0
    if drafts is Drafts.ALL:
        total += author.post_count - author.published_post_count
    return total  # type: ignore[no-any-return]


@reading("published_post_count")
def tag_post_total(ctx: Context, tag: Any, criteria: PostCriteria) -> int | None:
    """``Tag.posts { totalCount }`` (published posts only) from the tag's row."""
    counted = criteria.counted(ctx.visibility)
    if counted != (True, Drafts.NONE) or criteria.author_id or criteria.tag:
        return None
    return tag.published_post_count  # type: ignore[no-any-return]


def post_total(criteria: PostCriteria, visibility: Any) -> ColumnElement[Any] | None:
    """``Query.posts { totalCount }`` as one small SQL expression over the maintained
    counts (the striped totals, a user's or a tag's row), or None (count exactly)."""
    counted = criteria.counted(visibility)
    if counted is None:
        return None
    published, drafts = counted
    if criteria.tag is not None:
        if drafts is not Drafts.NONE:
            return None  # drafts per tag are not counted
        tag = select(Tag.published_post_count).where(Tag.name == criteria.tag)
        return func.coalesce(tag.scalar_subquery(), 0) if published else literal(0)
    if criteria.author_id is not None:
        owned = User.post_count - User.published_post_count
        count = _sum(published and User.published_post_count, drafts is Drafts.ALL and owned)
        author = select(count).where(User.id == criteria.author_id)
        return func.coalesce(author.scalar_subquery(), 0)
    drafts_of_all = PostTotal.posts - PostTotal.published
    count = _sum(published and PostTotal.published, drafts is Drafts.ALL and drafts_of_all)
    summed = func.coalesce(func.sum(count), 0).cast(BigInteger)  # sum(bigint) is numeric
    total: ColumnElement[Any] = select(summed).scalar_subquery()
    if drafts is Drafts.VIEWER:
        mine = select(User.post_count - User.published_post_count).where(User.id == visibility)
        total = total + func.coalesce(mine.scalar_subquery(), 0)
    return total


def _sum(*terms: Any) -> Any:
    """The sum of the terms that are not False (0 when none is left)."""
    kept = [term for term in terms if term is not False]
    if not kept:
        return literal(0)
    total = kept[0]
    for term in kept[1:]:
        total = total + term
    return total


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


class PostPage(RootPage[Post], model=Post):
    def total(self, criteria: Any) -> ColumnElement[Any] | None:
        return post_total(criteria, self.ctx.visibility)


class TagPage(RootPage[Tag], model=Tag): ...


class CommentPageByAuthorIdLoader(PageLoader[Comment], column=Comment.author_id):
    def conditions(self, filter: Any) -> list[ColumnElement[bool]]:
        return visible_comments(self.ctx)
