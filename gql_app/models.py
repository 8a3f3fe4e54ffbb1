"""Every domain's models, imported for Alembic's target_metadata. Nothing else."""

from gql_app.commerce.models import Order, OrderItem, OrderStatus, Product
from gql_app.content.models import Comment, Post, PostTotal, Tag, post_tags
from gql_app.data.db import Base
from gql_app.data.trusted_documents import TrustedDocument
from gql_app.money.models import Account, Transfer
from gql_app.users.models import AuthToken, Profile, User

__all__ = [
    "Account",
    "AuthToken",
    "Base",
    "Comment",
    "Order",
    "OrderItem",
    "OrderStatus",
    "Post",
    "PostTotal",
    "Product",
    "Profile",
    "Tag",
    "Transfer",
    "TrustedDocument",
    "User",
    "post_tags",
]
