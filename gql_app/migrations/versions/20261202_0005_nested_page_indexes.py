"""nested page indexes: every nested connection's page read in order from one index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:30:00

- posts: (author_id, title, id) for User.posts orderBy TITLE, and partial indexes
  over published posts only for another author's page (CREATED_AT, TITLE; the
  publishedAt indexes already start with the published rows).
- post_tags: copies of the post's ordering columns (published_at, created_at,
  title), kept equal by triggers, and one partial index per Tag.posts ordering,
  so a tag's page never reads the tag's other posts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PUBLISHED = sa.text('published_at IS NOT NULL')

# A row inserted without the copies (the app inserts (post_id, tag_id) only) gets the
# post's; the WHEN keeps bulk loads that supply them (the seed) free of per-row calls.
FILL_FUNCTION = """
CREATE FUNCTION post_tags_copy_post_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT p.published_at, p.created_at, p.title
      INTO NEW.published_at, NEW.created_at, NEW.title
      FROM posts p WHERE p.id = NEW.post_id;
    RETURN NEW;
END $$
"""
FILL_TRIGGER = """
CREATE TRIGGER post_tags_copy_post_columns BEFORE INSERT ON post_tags
FOR EACH ROW WHEN (NEW.created_at IS NULL) EXECUTE FUNCTION post_tags_copy_post_columns()
"""
# An update of a post's ordering columns is copied to its post_tags rows, in the
# same transaction.
FOLLOW_FUNCTION = """
CREATE FUNCTION posts_copy_to_post_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE post_tags
       SET published_at = NEW.published_at, created_at = NEW.created_at, title = NEW.title
     WHERE post_id = NEW.id;
    RETURN NULL;
END $$
"""
FOLLOW_TRIGGER = """
CREATE TRIGGER posts_copy_to_post_tags AFTER UPDATE OF published_at, created_at, title ON posts
FOR EACH ROW WHEN (
    OLD.published_at IS DISTINCT FROM NEW.published_at
    OR OLD.created_at IS DISTINCT FROM NEW.created_at
    OR OLD.title IS DISTINCT FROM NEW.title
) EXECUTE FUNCTION posts_copy_to_post_tags()
"""


def upgrade() -> None:
    op.create_index('ix_posts_author_id_title_id', 'posts', ['author_id', 'title', 'id'], unique=False)
    op.create_index('ix_posts_author_id_created_at_id_published', 'posts', ['author_id', 'created_at', 'id'], unique=False, postgresql_where=PUBLISHED)
    op.create_index('ix_posts_author_id_title_id_published', 'posts', ['author_id', 'title', 'id'], unique=False, postgresql_where=PUBLISHED)

    op.add_column('post_tags', sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('post_tags', sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('post_tags', sa.Column('title', sa.String(length=200), nullable=True))
    op.execute(
        'UPDATE post_tags SET published_at = p.published_at, created_at = p.created_at, title = p.title'
        ' FROM posts p WHERE p.id = post_tags.post_id'
    )
    op.alter_column('post_tags', 'created_at', nullable=False)
    op.alter_column('post_tags', 'title', nullable=False)
    op.execute(FILL_FUNCTION)
    op.execute(FILL_TRIGGER)
    op.execute(FOLLOW_FUNCTION)
    op.execute(FOLLOW_TRIGGER)

    op.create_index('ix_post_tags_tag_id_created_at_post_id_published', 'post_tags', ['tag_id', 'created_at', 'post_id'], unique=False, postgresql_where=PUBLISHED)
    op.create_index('ix_post_tags_tag_id_published_at_post_id_published', 'post_tags', ['tag_id', 'published_at', 'post_id'], unique=False, postgresql_where=PUBLISHED)
    op.create_index('ix_post_tags_tag_id_published_at_desc_post_id_published', 'post_tags', ['tag_id', sa.literal_column('published_at DESC NULLS LAST'), sa.literal_column('post_id DESC')], unique=False, postgresql_where=PUBLISHED)
    op.create_index('ix_post_tags_tag_id_title_post_id_published', 'post_tags', ['tag_id', 'title', 'post_id'], unique=False, postgresql_where=PUBLISHED)


def downgrade() -> None:
    op.drop_index('ix_post_tags_tag_id_title_post_id_published', table_name='post_tags')
    op.drop_index('ix_post_tags_tag_id_published_at_desc_post_id_published', table_name='post_tags')
    op.drop_index('ix_post_tags_tag_id_published_at_post_id_published', table_name='post_tags')
    op.drop_index('ix_post_tags_tag_id_created_at_post_id_published', table_name='post_tags')
    op.execute('DROP TRIGGER posts_copy_to_post_tags ON posts')
    op.execute('DROP FUNCTION posts_copy_to_post_tags()')
    op.execute('DROP TRIGGER post_tags_copy_post_columns ON post_tags')
    op.execute('DROP FUNCTION post_tags_copy_post_columns()')
    op.drop_column('post_tags', 'title')
    op.drop_column('post_tags', 'created_at')
    op.drop_column('post_tags', 'published_at')

    op.drop_index('ix_posts_author_id_title_id_published', table_name='posts')
    op.drop_index('ix_posts_author_id_created_at_id_published', table_name='posts')
    op.drop_index('ix_posts_author_id_title_id', table_name='posts')
