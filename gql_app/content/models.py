from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from gql_app.data.db import Base, CreatedAt, PrimaryKey, trigram_index

PUBLISHED = text("published_at IS NOT NULL")

post_tags = Table(
    "post_tags",
    Base.metadata,
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    # Copies of the post's ordering columns, so that a tag's page of posts
    # (Tag.posts, published only) is read in order from one index on this table.
    # Kept equal to the post's by triggers (migration 0005): a row inserted without
    # them gets the post's, and an update of the post is copied to its rows.
    Column("published_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("title", String(200), nullable=False),
    Index("ix_post_tags_tag_id_post_id", "tag_id", "post_id"),
    Index(
        "ix_post_tags_tag_id_created_at_post_id_published",
        "tag_id",
        "created_at",
        "post_id",
        postgresql_where=PUBLISHED,
    ),
    Index(
        "ix_post_tags_tag_id_published_at_post_id_published",
        "tag_id",
        "published_at",
        "post_id",
        postgresql_where=PUBLISHED,
    ),
    Index(
        "ix_post_tags_tag_id_published_at_desc_post_id_published",
        "tag_id",
        text("published_at DESC NULLS LAST"),
        text("post_id DESC"),
        postgresql_where=PUBLISHED,
    ),
    Index(
        "ix_post_tags_tag_id_title_post_id_published",
        "tag_id",
        "title",
        "post_id",
        postgresql_where=PUBLISHED,
    ),
)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_author_id_created_at_id", "author_id", "created_at", "id"),
        Index("ix_posts_author_id_published_at_id", "author_id", "published_at", "id"),
        Index("ix_posts_created_at_id", "created_at", "id"),
        Index("ix_posts_published_at_id", "published_at", "id"),
        # publishedAt DESC keeps drafts (NULL) last: its own index, so that order
        # is an index scan too (ASC NULLS LAST is served by the index above).
        Index(
            "ix_posts_published_at_desc_id",
            text("published_at DESC NULLS LAST"),
            text("id DESC"),
        ),
        Index(
            "ix_posts_author_id_published_at_desc_id",
            "author_id",
            text("published_at DESC NULLS LAST"),
            text("id DESC"),
        ),
        Index("ix_posts_title_id", "title", "id"),
        Index("ix_posts_author_id_title_id", "author_id", "title", "id"),
        # Another author's page (published only): read from the published rows alone.
        Index(
            "ix_posts_author_id_created_at_id_published",
            "author_id",
            "created_at",
            "id",
            postgresql_where=PUBLISHED,
        ),
        Index(
            "ix_posts_author_id_title_id_published",
            "author_id",
            "title",
            "id",
            postgresql_where=PUBLISHED,
        ),
        Index(
            "ix_posts_author_id_published",
            "author_id",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
        trigram_index("posts", "title"),  # filter.search (content.loaders.PostCriteria)
        trigram_index("posts", "content"),
    )

    id: Mapped[PrimaryKey]
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    comment_count: Mapped[int] = mapped_column(Integer, server_default="0")
    """Maintained by the database (migration 0006's triggers): never written here."""


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[PrimaryKey]
    name: Mapped[str] = mapped_column(String(50), unique=True)
    published_post_count: Mapped[int] = mapped_column(Integer, server_default="0")
    """Maintained by the database (migration 0006's triggers): never written here."""


class PostTotal(Base):
    """Every post and every published post, over striped rows summed on read: the
    writing transaction adds to the stripe of its id (migration 0006's triggers), so
    concurrent writers rarely wait on one another. Never written here."""

    __tablename__ = "post_totals"

    stripe: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    posts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    published: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (
        Index("ix_comments_post_id_created_at_id", "post_id", "created_at", "id"),
        Index("ix_comments_author_id_created_at_id", "author_id", "created_at", "id"),
    )

    id: Mapped[PrimaryKey]
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
