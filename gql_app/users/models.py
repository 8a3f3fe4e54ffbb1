from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gql_app.data.db import Base, CreatedAt, PrimaryKey, trigram_index


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("age IS NULL OR (age >= 0 AND age <= 200)", name="age_range"),
        Index("ix_users_created_at_id", "created_at", "id"),
        Index("ix_users_username_id", "username", "id"),
        Index("ix_users_last_login_at_id", "last_login_at", "id"),
        Index(
            "ix_users_last_login_at_desc_id",
            text("last_login_at DESC NULLS LAST"),
            text("id DESC"),
        ),
        trigram_index("users", "username"),  # filter.search (users.loaders.UserCriteria)
        trigram_index("users", "email"),
    )

    id: Mapped[PrimaryKey]
    username: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    age: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    post_count: Mapped[int] = mapped_column(Integer, server_default="0")
    """The user's posts, drafts included; maintained by the database (migration 0006)."""
    published_post_count: Mapped[int] = mapped_column(Integer, server_default="0")
    """The user's published posts; maintained by the database (migration 0006)."""

    profile: Mapped[Profile | None] = relationship(lazy="raise", back_populates="user")


class Profile(Base):
    __tablename__ = "profiles"
    __table_args__ = (trigram_index("profiles", "display_name"),)

    id: Mapped[PrimaryKey]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    bio: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship(lazy="raise", back_populates="profile")


class AuthToken(Base):
    """A bearer token. Only its SHA-256 digest is stored."""

    __tablename__ = "auth_tokens"
    __table_args__ = (Index("ix_auth_tokens_user_id", "user_id"),)

    id: Mapped[PrimaryKey]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
