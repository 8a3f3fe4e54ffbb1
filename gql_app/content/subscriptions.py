"""Live content: comments as they are added."""

from __future__ import annotations

from collections.abc import AsyncIterator

import strawberry

from gql_app.content.queries import fetch_comment, fetch_post
from gql_app.content.types import Comment
from gql_app.data.context import Info
from gql_app.data.events import Topic
from gql_app.engine.live import Feed
from gql_app.errors import AppError, ErrorCode
from gql_app.relay.ids import decode_id_of

COMMENTS = Feed(Topic.COMMENT, fetch_comment, lambda comment: (comment.post_id,))


@strawberry.type
class ContentSubscription:
    @strawberry.subscription(
        description="Comments added to a post the subscriber may see (published; a draft "
        "only for its author and admins). NOT_FOUND for a post the viewer cannot see, "
        "as `post(id:)` would answer null."
    )
    async def comment_added(self, info: Info, post_id: strawberry.ID) -> AsyncIterator[Comment]:
        post = await fetch_post(info, decode_id_of(post_id, "Post", "postId"))
        if post is None:
            raise AppError("No post with this id is visible to you.", ErrorCode.NOT_FOUND)
        return COMMENTS.watch([post.id])
