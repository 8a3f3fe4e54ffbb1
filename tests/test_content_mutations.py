"""createPost, updatePost, publishPost, deletePost, addComment, updateProfile,
deactivateInactiveUsers; and the transaction rules every mutation shares."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gql_app.models import Comment, Post, Tag, User

CREATE = """
mutation($input: CreatePostInput!) { createPost(input: $input) {
  post { id title content publishedAt author { username } tags { name } }
  userErrors { field message code } } }
"""
UPDATE = """
mutation($input: UpdatePostInput!) { updatePost(input: $input) {
  post { title content tags { name } } userErrors { field code } } }
"""
PUBLISH = """
mutation($id: ID!) { publishPost(input: {id: $id}) { post { publishedAt } userErrors { field code } } }
"""
DELETE = """
mutation($id: ID!) { deletePost(input: {id: $id}) { deletedPostId userErrors { field code } } }
"""
COMMENT = """
mutation($postId: ID!, $body: String!) { addComment(input: {postId: $postId, body: $body}) {
  comment { body author { username } post { id commentCount } } userErrors { field code } } }
"""
PROFILE = """
mutation($input: UpdateProfileInput!) { updateProfile(input: $input) {
  user { age profile { displayName bio } } userErrors { field code } } }
"""
DEACTIVATE = """
mutation($cutoff: DateTime!) { deactivateInactiveUsers(input: {lastLoginBefore: $cutoff}) {
  affectedCount userErrors { code } } }
"""

TAG_PAGE = """
query($name: String!, $order: PostOrder) { tag(name: $name) {
  posts(first: 10, orderBy: $order) { nodes { title } } } }
"""


async def count(stack, model) -> int:
    async with AsyncSession(stack.engine) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_create_post_creates_unknown_tags_and_returns_the_fresh_post(stack):
    tags_before = await count(stack, Tag)
    body = await stack.gql(
        CREATE,
        {
            "input": {
                "title": " Hello ",
                "content": "World",
                "tags": ["Alpha", "brand-new", "alpha"],
                "publish": True,
            }
        },
        token=stack.world.tokens["alice"],
    )
    payload = body["data"]["createPost"]
    assert payload["userErrors"] == []
    post = payload["post"]
    assert (post["title"], post["content"], post["author"]) == (
        "Hello",
        "World",
        {"username": "alice"},
    )
    assert post["publishedAt"] is not None
    assert [t["name"] for t in post["tags"]] == ["alpha", "brand-new"]
    assert await count(stack, Tag) == tags_before + 1


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"title": "   "}, ["input", "title"], "INVALID"),
        ({"title": "x" * 201}, ["input", "title"], "INVALID"),
        ({"content": "nul\x00"}, ["input", "content"], "INVALID"),
        ({"tags": [f"t{i}" for i in range(11)]}, ["input", "tags"], "INVALID"),
        ({"tags": ["ok", ""]}, ["input", "tags", "1"], "INVALID"),
    ],
)
async def test_create_post_refuses_bad_input_and_writes_nothing(stack, changes, field, code):
    before = await count(stack, Post)
    variables = {"input": {"title": "t", "content": "c", **changes}}
    body = await stack.gql(CREATE, variables, token=stack.world.tokens["alice"])
    payload = body["data"]["createPost"]
    assert payload["post"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)]
    assert await count(stack, Post) == before


async def test_anonymous_mutations_are_unauthenticated_user_errors(stack):
    body = await stack.gql(CREATE, {"input": {"title": "t", "content": "c"}})
    assert body["data"]["createPost"]["userErrors"][0]["code"] == "UNAUTHENTICATED"


async def test_update_post_replaces_tags_and_only_the_author_may(stack):
    world = stack.world
    post_id = world.gid("Post", world.posts[world.alice][0])
    body = await stack.gql(
        UPDATE,
        {"input": {"id": post_id, "title": "Renamed", "tags": ["zeta", "beta"]}},
        token=world.tokens["alice"],
    )
    assert body["data"]["updatePost"]["post"]["title"] == "Renamed"
    assert [t["name"] for t in body["data"]["updatePost"]["post"]["tags"]] == ["beta", "zeta"]

    by_bob = await stack.gql(
        UPDATE, {"input": {"id": post_id, "title": "Hijack"}}, token=world.tokens["bob"]
    )
    assert by_bob["data"]["updatePost"]["userErrors"] == [
        {"field": ["input", "id"], "code": "FORBIDDEN"}
    ]

    draft = world.gid("Post", world.drafts[world.alice][0])
    on_draft = await stack.gql(
        UPDATE, {"input": {"id": draft, "title": "x"}}, token=world.tokens["bob"]
    )
    assert on_draft["data"]["updatePost"]["userErrors"] == [
        {"field": ["input", "id"], "code": "NOT_FOUND"}
    ]

    wrong_type = await stack.gql(
        UPDATE,
        {"input": {"id": world.gid("User", world.alice), "title": "x"}},
        token=world.tokens["alice"],
    )
    assert wrong_type["data"]["updatePost"]["userErrors"] == [
        {"field": ["input", "id"], "code": "INVALID"}
    ]

    by_admin = await stack.gql(
        UPDATE, {"input": {"id": post_id, "content": "moderated"}}, token=world.tokens["admin"]
    )
    assert by_admin["data"]["updatePost"]["post"]["content"] == "moderated"


async def test_publish_post_once(stack):
    world = stack.world
    draft = world.gid("Post", world.drafts[world.bob][0])
    first = await stack.gql(PUBLISH, {"id": draft}, token=world.tokens["bob"])
    assert first["data"]["publishPost"]["post"]["publishedAt"] is not None
    again = await stack.gql(PUBLISH, {"id": draft}, token=world.tokens["bob"])
    assert again["data"]["publishPost"]["userErrors"] == [
        {"field": ["input", "id"], "code": "INVALID_STATE"}
    ]


async def test_tag_posts_follow_their_posts_publication_and_title(stack):
    # Tag.posts is read in order from post_tags' copies of the posts' ordering columns
    world = stack.world
    token = world.tokens["alice"]

    async def create(title: str, publish: bool) -> str:
        body = await stack.gql(
            CREATE,
            {"input": {"title": title, "content": "c", "tags": ["copies"], "publish": publish}},
            token=token,
        )
        return body["data"]["createPost"]["post"]["id"]

    async def titles(field: str, direction: str = "ASC") -> list[str]:
        order = {"field": field, "direction": direction}
        body = await stack.gql(TAG_PAGE, {"name": "copies", "order": order})
        return [node["title"] for node in body["data"]["tag"]["posts"]["nodes"]]

    bravo = await create("bravo", True)
    alpha = await create("alpha", False)
    assert await titles("TITLE") == ["bravo"]  # a draft is not listed

    await stack.gql(PUBLISH, {"id": alpha}, token=token)
    assert await titles("TITLE") == ["alpha", "bravo"]
    assert await titles("PUBLISHED_AT", "DESC") == ["alpha", "bravo"]

    await stack.gql(UPDATE, {"input": {"id": bravo, "title": "aardvark"}}, token=token)
    assert await titles("TITLE") == ["aardvark", "alpha"]
    assert await titles("CREATED_AT") == ["aardvark", "alpha"]

    await stack.gql(UPDATE, {"input": {"id": alpha, "tags": ["elsewhere"]}}, token=token)
    assert await titles("TITLE") == ["aardvark"]
    async with AsyncSession(stack.engine) as session:
        differing = await session.scalar(
            text(
                "SELECT count(*) FROM post_tags t JOIN posts p ON p.id = t.post_id"
                " WHERE (t.published_at, t.created_at, t.title)"
                " IS DISTINCT FROM (p.published_at, p.created_at, p.title)"
            )
        )
    assert differing == 0


async def test_delete_post_removes_it_and_its_comments(stack):
    world = stack.world
    pk = world.posts[world.bob][1]
    body = await stack.gql(DELETE, {"id": world.gid("Post", pk)}, token=world.tokens["bob"])
    assert body["data"]["deletePost"] == {"deletedPostId": world.gid("Post", pk), "userErrors": []}
    async with AsyncSession(stack.engine) as session:
        assert await session.get(Post, pk) is None
        assert await session.scalar(select(func.count()).where(Comment.post_id == pk)) == 0


async def test_add_comment_payload_shows_the_incremented_count(stack):
    world = stack.world
    post = world.gid("Post", world.posts[world.alice][2])
    before = await stack.gql("query($id: ID!) { post(id: $id) { commentCount } }", {"id": post})
    body = await stack.gql(COMMENT, {"postId": post, "body": "Nice!"}, token=world.tokens["bob"])
    comment = body["data"]["addComment"]["comment"]
    assert comment["author"] == {"username": "bob"}
    assert comment["post"]["commentCount"] == before["data"]["post"]["commentCount"] + 1


async def test_add_comment_on_someone_elses_draft_is_not_found(stack):
    world = stack.world
    draft = world.gid("Post", world.drafts[world.alice][1])
    body = await stack.gql(COMMENT, {"postId": draft, "body": "peek"}, token=world.tokens["bob"])
    assert body["data"]["addComment"] == {
        "comment": None,
        "userErrors": [{"field": ["input", "postId"], "code": "NOT_FOUND"}],
    }
    empty = await stack.gql(COMMENT, {"postId": draft, "body": " "}, token=world.tokens["alice"])
    assert empty["data"]["addComment"]["userErrors"] == [
        {"field": ["input", "body"], "code": "INVALID"}
    ]


async def test_update_profile_sets_and_clears(stack):
    token = stack.world.tokens["alice"]
    body = await stack.gql(
        PROFILE, {"input": {"displayName": "Alice A.", "bio": "Hi", "age": 40}}, token=token
    )
    assert body["data"]["updateProfile"]["user"] == {
        "age": 40,
        "profile": {"displayName": "Alice A.", "bio": "Hi"},
    }
    cleared = await stack.gql(PROFILE, {"input": {"bio": None, "age": None}}, token=token)
    assert cleared["data"]["updateProfile"]["user"] == {
        "age": None,
        "profile": {"displayName": "Alice A.", "bio": None},
    }
    bad = await stack.gql(PROFILE, {"input": {"age": 999}}, token=token)
    assert bad["data"]["updateProfile"]["userErrors"] == [
        {"field": ["input", "age"], "code": "INVALID"}
    ]


async def test_deactivate_inactive_users_is_one_update_for_admins_only(stack, stack_sql):
    cutoff = "2026-01-01T00:20:00+00:00"
    async with AsyncSession(stack.engine) as session:
        expected = await session.scalar(
            select(func.count()).where(
                User.is_active.is_(True),
                func.coalesce(User.last_login_at, User.created_at) < datetime.fromisoformat(cutoff),
            )
        )
    refused = await stack.gql(DEACTIVATE, {"cutoff": cutoff}, token=stack.world.tokens["bob"])
    assert refused["data"]["deactivateInactiveUsers"]["userErrors"] == [{"code": "FORBIDDEN"}]
    stack_sql.reset()
    body = await stack.gql(DEACTIVATE, {"cutoff": cutoff}, token=stack.world.tokens["admin"])
    assert body["data"]["deactivateInactiveUsers"] == {"affectedCount": expected, "userErrors": []}
    assert expected > 0
    writes = [s for s in stack_sql.statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(writes) == 1
    async with AsyncSession(stack.engine) as session:
        await session.execute(text("UPDATE users SET is_active = true"))
        await session.commit()


async def test_a_failing_field_leaves_nothing_and_earlier_fields_keep_theirs(stack):
    # Given a trigger that fails while createPost is half-way (post row written, tags not)
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'boom'; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER explode_tag BEFORE INSERT ON tags FOR EACH ROW "
                "WHEN (NEW.name = 'explode') EXECUTE FUNCTION explode()"
            )
        )
    # When one operation has a good field, a failing field, and a refused field
    body = await stack.gql(
        """mutation {
          a: createPost(input: {title: "kept", content: "c"}) { post { title } userErrors { code } }
          b: createPost(input: {title: "half", content: "c", tags: ["explode"]}) { post { title } }
        }""",
        token=stack.world.tokens["alice"],
        expect_errors=True,
    )
    # Then the failure is masked and coded, and only the first field's post exists
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "boom" not in str(body)
    async with AsyncSession(stack.engine) as session:
        titles = set(
            (
                await session.scalars(select(Post.title).where(Post.title.in_(["kept", "half"])))
            ).all()
        )
    assert titles == {"kept"}


async def test_a_commit_that_fails_never_reports_success(stack):
    # Given a deferred constraint that only fails at COMMIT
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.body = 'fail-at-commit' THEN RAISE EXCEPTION 'deferred'; END IF; "
                "RETURN NULL; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER comments_fail_at_commit AFTER INSERT ON comments "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()"
            )
        )
    post = stack.world.gid("Post", stack.world.posts[stack.world.bob][2])
    before = await count(stack, Comment)
    # When a mutation whose fields all succeeded cannot commit
    body = await stack.gql(
        COMMENT,
        {"postId": post, "body": "fail-at-commit"},
        token=stack.world.tokens["alice"],
        expect_errors=True,
    )
    # Then the response is an error with no data, and nothing was written
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert await count(stack, Comment) == before
    ok = await stack.gql(
        COMMENT, {"postId": post, "body": "fine"}, token=stack.world.tokens["alice"]
    )
    assert ok["data"]["addComment"]["comment"]["body"] == "fine"
