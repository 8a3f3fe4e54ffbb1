"""The bench's peer: PostGraphile v5 gives the same W1-W3 answers as gql_app.

The end-to-end test installs PostGraphile from bench/postgraphile/package-lock.json
(`npm ci`, Node 22 from the registry), seeds a scratch database, runs both servers as
the bench does and compares every field but ids and cursors. It skips without npm.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from bench import postgraphile
from bench.common import GQL_APP, running, scratch_database

FEED_NODE = {
    "id": "WyJwb3N0cyIsMV0=",
    "title": "Hello",
    "publishedAt": "2024-05-01T10:00:00+00:00",
    "userByAuthorId": {"username": "ann", "profileByUserId": None},
    "postTagsByPostId": {"nodes": [{"tagByTagId": {"name": "a"}}, {"tagByTagId": {"name": "b"}}]},
    "commentCount": 2,
    "commentsByPostId": {"nodes": [{"body": "hi", "userByAuthorId": {"username": "bob"}}]},
}
OUR_FEED = {
    "posts": {
        "totalCount": 7,
        "edges": [
            {
                "cursor": "b3Vycw==",
                "node": {
                    "id": "UG9zdDox",
                    "title": "Hello",
                    "publishedAt": "2024-05-01T10:00:00Z",
                    "author": {"username": "ann", "profile": None},
                    "tags": [{"name": "a"}, {"name": "b"}],
                    "commentCount": 2,
                    "comments": {"nodes": [{"body": "hi", "author": {"username": "bob"}}]},
                },
            }
        ],
    }
}


def peer_feed(**changes: object) -> dict[str, object]:
    node = {**FEED_NODE, **changes}
    return {"allPosts": {"totalCount": 7, "edges": [{"cursor": "dGhlaXJz", "node": node}]}}


def test_a_feed_answer_maps_to_ours_ids_cursors_and_timestamp_text_aside() -> None:
    mapped = postgraphile.as_ours("W1 feed", peer_feed())

    assert postgraphile.differences(OUR_FEED, mapped) == []


def test_a_changed_title_order_or_count_is_reported_where_it_differs() -> None:
    reordered = {"nodes": [{"tagByTagId": {"name": "b"}}, {"tagByTagId": {"name": "a"}}]}

    found = postgraphile.differences(
        OUR_FEED,
        postgraphile.as_ours(
            "W1 feed", peer_feed(title="Other", postTagsByPostId=reordered, commentCount=3)
        ),
    )

    assert found == [
        "data.posts.edges[0].node.title: 'Hello' != 'Other'",
        "data.posts.edges[0].node.tags[0].name: 'a' != 'b'",
        "data.posts.edges[0].node.tags[1].name: 'b' != 'a'",
        "data.posts.edges[0].node.commentCount: 2 != 3",
    ]


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm installs PostGraphile")
async def test_postgraphile_answers_w1_w3_as_gql_app_does(server_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gql_test_peer_") as tmp:
        async with scratch_database(server_url, scale=60) as db:
            post_id = await db.conn.fetchval(
                "SELECT id FROM posts WHERE published_at IS NOT NULL ORDER BY id LIMIT 1"
            )
            async with (
                running(db.url, Path(tmp), (GQL_APP,)) as servers,
                postgraphile.running_peer(db.url, Path(tmp)) as peer,
                httpx.AsyncClient(timeout=10) as http,
            ):
                found = await postgraphile.check(http, servers[GQL_APP], peer, post_id)

    assert found == {"W1 feed": [], "W2 people": [], "W3 node": []}
