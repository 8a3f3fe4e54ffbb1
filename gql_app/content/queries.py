from __future__ import annotations

import strawberry

from gql_app.content import models
from gql_app.content.loaders import (
    CommentByIdLoader,
    PostByIdLoader,
    PostPage,
    TagByIdLoader,
    TagByNameLoader,
    TagPage,
    can_see_post,
)
from gql_app.content.types import POST_ORDER, TAG_ORDER, Post, PostFilter, Tag
from gql_app.data.context import Info
from gql_app.engine.fields import reads
from gql_app.relay.connection import Connection, connection
from gql_app.relay.ids import decode_id_of
from gql_app.relay.node import loaded_node, node_type

fetch_post = loaded_node("Post", PostByIdLoader, can_see_post)
loaded_node("Tag", TagByIdLoader)


@node_type("Comment", 1, CommentByIdLoader, {CommentByIdLoader: (("post_id", PostByIdLoader),)})
async def fetch_comment(info: Info, pk: int) -> models.Comment | None:
    comment = await info.context.loaders.get(CommentByIdLoader, info).load(pk)
    if comment is None or await fetch_post(info, comment.post_id) is None:
        return None
    return comment


@strawberry.type
class ContentQuery:
    @strawberry.field(metadata=reads(1, lambda type_name: PostByIdLoader))
    async def post(self, info: Info, id: strawberry.ID) -> Post | None:
        return await fetch_post(info, decode_id_of(id, "Post"))

    posts: Connection[Post] = connection(PostPage, POST_ORDER, filter=PostFilter)

    @strawberry.field(metadata=reads(1))
    async def tag(self, info: Info, name: str) -> Tag | None:
        return await info.context.loaders.get(TagByNameLoader, info).load(name)  # type: ignore[return-value]

    tags: Connection[Tag] = connection(TagPage, TAG_ORDER, order_by=False)
