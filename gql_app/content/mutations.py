from __future__ import annotations

import strawberry
from sqlalchemy import BigInteger, any_, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from gql_app.content.loaders import can_see_post
from gql_app.content.models import Comment as CommentModel
from gql_app.content.models import Post as PostModel
from gql_app.content.models import Tag as TagModel
from gql_app.content.models import post_tags
from gql_app.content.types import Comment, Post
from gql_app.data.context import Context, Info
from gql_app.data.events import Topic
from gql_app.data.loaders import values_array
from gql_app.engine.mutations import Payload, atomic_mutation, fail, signed_in, text
from gql_app.errors import UserErrorCode
from gql_app.relay.ids import encode_id, input_id

MAX_TAGS = 10


@strawberry.input
class CreatePostInput:
    title: str
    content: str
    tags: list[str] | None = strawberry.field(
        default=None, description="Tag names; unknown tags are created."
    )
    publish: bool | None = False


@strawberry.type
class CreatePostPayload(Payload):
    post: Post | None = None


@strawberry.input
class UpdatePostInput:
    id: strawberry.ID
    title: str | None = None
    content: str | None = None
    tags: list[str] | None = strawberry.field(
        default=None, description="Replaces the post's tags when given."
    )


@strawberry.type
class UpdatePostPayload(Payload):
    post: Post | None = None


@strawberry.input
class PublishPostInput:
    id: strawberry.ID


@strawberry.type
class PublishPostPayload(Payload):
    post: Post | None = None


@strawberry.input
class DeletePostInput:
    id: strawberry.ID


@strawberry.type
class DeletePostPayload(Payload):
    deleted_post_id: strawberry.ID | None = None


@strawberry.input
class AddCommentInput:
    post_id: strawberry.ID
    body: str


@strawberry.type
class AddCommentPayload(Payload):
    comment: Comment | None = None


def tag_names(names: list[str]) -> list[str]:
    """Trimmed, lower-cased, de-duplicated tag names, in the order given."""
    if len(names) > MAX_TAGS:
        raise fail("tags", f"A post takes at most {MAX_TAGS} tags.")
    cleaned = [text(f"tags.{i}", name, max_length=50).lower() for i, name in enumerate(names)]
    return list(dict.fromkeys(cleaned))


async def set_tags(ctx: Context, post_id: int, names: list[str]) -> None:
    """Replace a post's tags, creating unknown ones (two statements plus the link rows)."""
    db = ctx.db
    await db.execute(delete(post_tags).where(post_tags.c.post_id == post_id))
    if not names:
        return
    await db.execute(
        pg_insert(TagModel)
        .from_select(["name"], select(func.unnest(values_array(names, TagModel.name.type))))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    await db.execute(
        insert(post_tags).from_select(
            ["post_id", "tag_id"],
            select(literal(post_id, BigInteger), TagModel.id).where(
                TagModel.name == any_(values_array(names, TagModel.name.type))
            ),
        )
    )


async def editable_post(ctx: Context, field: str, global_id: str) -> PostModel:
    """The post, locked for the write; NOT_FOUND if the viewer cannot see it,
    FORBIDDEN if they can but do not own it."""
    viewer = signed_in(ctx)
    pk = input_id(field, global_id, "Post")
    post = await ctx.db.scalar(select(PostModel).where(PostModel.id == pk).with_for_update())
    visible = post is not None and (
        post.published_at is not None or ctx.can_see_private(post.author_id)
    )
    if post is None or not visible:
        raise fail(field, "No such post.", UserErrorCode.NOT_FOUND)
    if not (viewer.is_admin or post.author_id == viewer.id):
        raise fail(field, "Only the author may change this post.", UserErrorCode.FORBIDDEN)
    return post


def post_values(title: str | None, content: str | None) -> dict[str, str]:
    """The given title and content, checked and trimmed."""
    values = {}
    if title is not None:
        values["title"] = text("title", title, max_length=200)
    if content is not None:
        values["content"] = text("content", content, max_length=50_000)
    return values


async def create_post(info: Info, input: CreatePostInput) -> CreatePostPayload:
    ctx = info.context
    viewer = signed_in(ctx)
    values = post_values(input.title, input.content)
    names = tag_names(input.tags or [])
    post = PostModel(
        author_id=viewer.id, **values, published_at=func.now() if input.publish else None
    )
    ctx.db.session.add(post)
    await ctx.db.flush()
    await set_tags(ctx, post.id, names)
    await ctx.db.refresh(post)
    return CreatePostPayload(post=post)  # type: ignore[arg-type]


async def update_post(info: Info, input: UpdatePostInput) -> UpdatePostPayload:
    ctx = info.context
    post = await editable_post(ctx, "id", input.id)
    values = post_values(input.title, input.content)
    names = tag_names(input.tags) if input.tags is not None else None
    if values or names is not None:
        await ctx.db.execute(
            update(PostModel).where(PostModel.id == post.id).values(**values, updated_at=func.now())
        )
    if names is not None:
        await set_tags(ctx, post.id, names)
    await ctx.db.refresh(post)
    return UpdatePostPayload(post=post)  # type: ignore[arg-type]


async def publish_post(info: Info, input: PublishPostInput) -> PublishPostPayload:
    ctx = info.context
    post = await editable_post(ctx, "id", input.id)
    if post.published_at is not None:
        raise fail("id", "The post is already published.", UserErrorCode.INVALID_STATE)
    await ctx.db.execute(
        update(PostModel)
        .where(PostModel.id == post.id)
        .values(published_at=func.now(), updated_at=func.now())
    )
    await ctx.db.refresh(post)
    return PublishPostPayload(post=post)  # type: ignore[arg-type]


async def delete_post(info: Info, input: DeletePostInput) -> DeletePostPayload:
    ctx = info.context
    post = await editable_post(ctx, "id", input.id)
    await ctx.db.execute(delete(PostModel).where(PostModel.id == post.id))
    return DeletePostPayload(deleted_post_id=strawberry.ID(encode_id("Post", post.id)))


async def add_comment(info: Info, input: AddCommentInput) -> AddCommentPayload:
    ctx = info.context
    viewer = signed_in(ctx)
    pk = input_id("postId", input.post_id, "Post")
    body = text("body", input.body, max_length=5_000)
    post = await ctx.db.scalar(select(PostModel).where(PostModel.id == pk))
    if post is None or not can_see_post(ctx, post):
        raise fail("postId", "No such post.", UserErrorCode.NOT_FOUND)
    comment = CommentModel(post_id=post.id, author_id=viewer.id, body=body)
    ctx.db.session.add(comment)
    await ctx.db.flush()
    ctx.events.add(Topic.COMMENT, [comment.id])
    await ctx.db.refresh(comment)
    return AddCommentPayload(comment=comment)  # type: ignore[arg-type]


@strawberry.type
class ContentMutation:
    create_post = atomic_mutation(create_post, CreatePostPayload)

    update_post = atomic_mutation(update_post, UpdatePostPayload)

    publish_post = atomic_mutation(publish_post, PublishPostPayload)

    delete_post = atomic_mutation(delete_post, DeletePostPayload)

    add_comment = atomic_mutation(add_comment, AddCommentPayload)
