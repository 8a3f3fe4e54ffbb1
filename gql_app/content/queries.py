from __future__ import annotations

import strawberry

from gql_app.content import models
from gql_app.content.loaders import (
    POST_SORTING,
    TAG_SORTING,
    CommentByIdLoader,
    PostByIdLoader,
    PostCriteria,
    TagByIdLoader,
    TagByNameLoader,
    can_see_post,
)
from gql_app.content.types import Post, PostFilter, PostOrder, Tag, post_criteria
from gql_app.context import Info
from gql_app.ids import decode_id_of
from gql_app.loaders import root_page
from gql_app.node import node_type
from gql_app.pagination import Connection


@node_type("Post")
async def fetch_post(info: Info, pk: int) -> models.Post | None:
    post = await info.context.loaders.get(PostByIdLoader, info).load(pk)
    return post if post is not None and can_see_post(info.context, post) else None


@node_type("Tag")
async def fetch_tag(info: Info, pk: int) -> models.Tag | None:
    return await info.context.loaders.get(TagByIdLoader, info).load(pk)


@node_type("Comment")
async def fetch_comment(info: Info, pk: int) -> models.Comment | None:
    comment = await info.context.loaders.get(CommentByIdLoader, info).load(pk)
    if comment is None or await fetch_post(info, comment.post_id) is None:
        return None
    return comment


@strawberry.type
class ContentQuery:
    @strawberry.field
    async def post(self, info: Info, id: strawberry.ID) -> Post | None:
        return await fetch_post(info, decode_id_of(id, "Post"))  # type: ignore[return-value]

    @strawberry.field
    async def posts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: PostFilter | None = None,
        order_by: PostOrder | None = None,
    ) -> Connection[Post]:
        args = POST_SORTING.page_args(info, "Query.posts", first, after, last, before, order_by)
        criteria: PostCriteria = post_criteria(filter)
        return await root_page(
            info, models.Post, args, shape=criteria, where=lambda: criteria.conditions(info.context)
        )

    @strawberry.field
    async def tag(self, info: Info, name: str) -> Tag | None:
        return await info.context.loaders.get(TagByNameLoader, info).load(name)  # type: ignore[return-value]

    @strawberry.field
    async def tags(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Tag]:
        args = TAG_SORTING.page_args(info, "Query.tags", first, after, last, before)
        return await root_page(info, models.Tag, args, shape="all", where=list)
