"""maintained counts

Counts kept exact in the writing transaction by statement-level triggers, so
reading one costs a column of a row already loaded (or one small statement):

- ``posts.comment_count``: the post's comments;
- ``users.post_count``, ``users.published_post_count``: the user's posts, all and published;
- ``tags.published_post_count``: published posts carrying the tag;
- ``post_totals``: every post and every published post, over 16 striped rows
  summed on read (``stripe`` = the writing transaction's id mod 16), so
  concurrent createPost/publishPost do not queue on one hot row.

Each trigger is ``FOR EACH STATEMENT`` with transition tables: a bulk statement
(a cascade, a Core bulk update) does one aggregated UPDATE per counted table.
Rows are locked in key order (``SELECT ... ORDER BY id FOR NO KEY UPDATE``) before
they are updated, users before post_totals before tags, so two writers never
take the same locks in opposite orders within one statement.

The one row-level trigger: deleting a published post lowers its tags' counts
BEFORE the delete, while its ``post_tags`` rows still exist (the cascade removes
them before any AFTER STATEMENT trigger of ``posts`` runs, and the ``post_tags``
trigger skips links whose post is gone).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STRIPES = 16
FILLED = ("posts", "users", "tags")
FILLFACTOR = 90


def changes(op_name: str, key: str, values: Sequence[str], source: str = "") -> str:
    """The rows a statement changed as (key, value...) with a sign: +1 for new rows,
    -1 for old ones; ``source`` joins more tables to the transition table ``r``."""
    def side(table: str, sign: int) -> str:
        signed = ", ".join(f"{sign} * ({value}) AS v{i}" for i, value in enumerate(values))
        return f"SELECT {key} AS k, {signed} FROM {table} AS r {source}"

    sides = {
        "insert": [side("new_rows", 1)],
        "delete": [side("old_rows", -1)],
        "update": [side("new_rows", 1), side("old_rows", -1)],
    }[op_name]
    return " UNION ALL ".join(sides)


def apply(table: str, columns: Sequence[str], changed: str) -> str:
    """Add the per-key sums of ``changed`` to ``table``'s ``columns``, locking the
    rows in id order first (keys whose sums are all zero are left alone)."""
    n = range(len(columns))
    values = ", ".join(f"v{i}" for i in n)
    sums = ", ".join(f"sum(v{i})" for i in n)
    arrays = ", ".join(f"array_agg(v{i} ORDER BY k)" for i in n)
    nonzero = " OR ".join(f"sum(v{i}) <> 0" for i in n)
    into = ", ".join(f"d{i}" for i in n)
    sets = ", ".join(f"{col} = t.{col} + d.v{i}" for i, col in enumerate(columns))
    return f"""
    SELECT array_agg(k ORDER BY k), {arrays} INTO ids, {into}
    FROM (SELECT k, {sums} FROM ({changed}) AS c GROUP BY k HAVING {nonzero}) AS s(k, {values});
    IF ids IS NOT NULL THEN
        PERFORM 1 FROM {table} WHERE id = ANY (ids) ORDER BY id FOR NO KEY UPDATE;
        UPDATE {table} AS t SET {sets}
        FROM unnest(ids, {into}) AS d(id, {values}) WHERE t.id = d.id;
    END IF;"""


def function(name: str, body: str, arrays: int) -> str:
    declare = "".join(f" d{i} bigint[];" for i in range(arrays))
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids bigint[];{declare}
BEGIN{body}
    RETURN NULL;
END $$"""


PUBLISHED = "(r.published_at IS NOT NULL)::int"
TOTALS = f"""
    INSERT INTO post_totals AS t (stripe, posts, published)
    SELECT (pg_current_xact_id()::text::bigint % {STRIPES})::smallint, sum(v0), sum(v1)
    FROM ({{changed}}) AS c HAVING sum(v0) <> 0 OR sum(v1) <> 0
    ON CONFLICT (stripe) DO UPDATE
    SET posts = t.posts + excluded.posts, published = t.published + excluded.published;"""
LINKED_PUBLISHED = "JOIN posts AS p ON p.id = r.post_id AND p.published_at IS NOT NULL"
TAGS_OF_CHANGED_POSTS = "JOIN post_tags AS l ON l.post_id = r.id"

OPS = ("insert", "update", "delete")


def counting_functions() -> list[tuple[str, str, str]]:
    """(table, operation, CREATE FUNCTION) for every counted table and operation."""
    made = []
    for op_name in OPS:
        comments = apply("posts", ["comment_count"], changes(op_name, "r.post_id", ["1"]))
        made.append(("comments", op_name, function(f"count_comments_{op_name}", comments, 1)))
        links = apply(
            "tags",
            ["published_post_count"],
            changes(op_name, "r.tag_id", ["1"], LINKED_PUBLISHED),
        )
        made.append(("post_tags", op_name, function(f"count_post_tags_{op_name}", links, 1)))
        authors = apply(
            "users",
            ["post_count", "published_post_count"],
            changes(op_name, "r.author_id", ["1", PUBLISHED]),
        )
        totals = TOTALS.format(changed=changes(op_name, "0", ["1", PUBLISHED]))
        tags = ""
        if op_name == "update":  # publish/unpublish moves the post's tags' counts
            tags = apply(
                "tags",
                ["published_post_count"],
                changes(op_name, "l.tag_id", [PUBLISHED], TAGS_OF_CHANGED_POSTS),
            )
        body = authors + totals + tags
        made.append(("posts", op_name, function(f"count_posts_{op_name}", body, 2)))
    return made


UNTAG_DELETED_POST = """
CREATE FUNCTION count_posts_untag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tags WHERE id IN (SELECT tag_id FROM post_tags WHERE post_id = OLD.id)
    ORDER BY id FOR NO KEY UPDATE;
    UPDATE tags SET published_post_count = published_post_count - 1
    WHERE id IN (SELECT tag_id FROM post_tags WHERE post_id = OLD.id);
    RETURN OLD;
END $$"""


def trigger(table: str, op_name: str) -> str:
    referencing = {
        "insert": "NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
        "update": "NEW TABLE AS new_rows OLD TABLE AS old_rows",
    }[op_name]
    return (
        f"CREATE TRIGGER count_{table}_{op_name} AFTER {op_name.upper()} ON {table} "
        f"REFERENCING {referencing} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION count_{table}_{op_name}()"
    )


BACKFILL = (
    """UPDATE posts SET comment_count = c.n
    FROM (SELECT post_id, count(*) AS n FROM comments GROUP BY post_id) AS c
    WHERE posts.id = c.post_id""",
    """UPDATE users SET post_count = c.n, published_post_count = c.published
    FROM (SELECT author_id, count(*) AS n, count(published_at) AS published
          FROM posts GROUP BY author_id) AS c
    WHERE users.id = c.author_id""",
    """UPDATE tags SET published_post_count = c.n
    FROM (SELECT l.tag_id, count(*) AS n FROM post_tags AS l
          JOIN posts AS p ON p.id = l.post_id AND p.published_at IS NOT NULL
          GROUP BY l.tag_id) AS c
    WHERE tags.id = c.tag_id""",
    """INSERT INTO post_totals (stripe, posts, published)
    SELECT 0, count(*), count(published_at) FROM posts""",
)


def upgrade() -> None:
    zero = sa.text('0')
    op.add_column('posts', sa.Column('comment_count', sa.Integer(), server_default=zero, nullable=False))
    op.add_column('users', sa.Column('post_count', sa.Integer(), server_default=zero, nullable=False))
    op.add_column(
        'users', sa.Column('published_post_count', sa.Integer(), server_default=zero, nullable=False)
    )
    op.add_column(
        'tags', sa.Column('published_post_count', sa.Integer(), server_default=zero, nullable=False)
    )
    op.create_table(
        'post_totals',
        sa.Column('stripe', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('posts', sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column('published', sa.BigInteger(), server_default=zero, nullable=False),
        sa.PrimaryKeyConstraint('stripe', name=op.f('pk_post_totals')),
    )
    # Room on each page for the new version of a row whose count changed: the counts
    # are in no index, so such an update stays on the page (HOT) and touches no index
    # (posts have two trigram GIN indexes); applies to pages written from now on.
    for table in FILLED:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")
    # Lock the counted tables for the backfill: no write may slip between it and the triggers.
    op.execute("LOCK TABLE posts, comments, post_tags, users, tags IN SHARE ROW EXCLUSIVE MODE")
    for statement in BACKFILL:
        op.execute(statement)
    for table, op_name, create in counting_functions():
        op.execute(create)
        op.execute(trigger(table, op_name))
    op.execute(UNTAG_DELETED_POST)
    op.execute(
        "CREATE TRIGGER count_posts_untag BEFORE DELETE ON posts FOR EACH ROW "
        "WHEN (OLD.published_at IS NOT NULL) EXECUTE FUNCTION count_posts_untag()"
    )


def downgrade() -> None:
    for table in FILLED:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    op.execute("DROP TRIGGER count_posts_untag ON posts")
    op.execute("DROP FUNCTION count_posts_untag()")
    for table, op_name, _ in counting_functions():
        op.execute(f"DROP TRIGGER count_{table}_{op_name} ON {table}")
        op.execute(f"DROP FUNCTION count_{table}_{op_name}()")
    op.drop_table('post_totals')
    op.drop_column('tags', 'published_post_count')
    op.drop_column('users', 'published_post_count')
    op.drop_column('users', 'post_count')
    op.drop_column('posts', 'comment_count')
