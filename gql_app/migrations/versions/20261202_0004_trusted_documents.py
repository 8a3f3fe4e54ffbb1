"""trusted documents

The operations a server in trusted-documents mode runs (``GQL_TRUSTED_DOCUMENTS``),
added from graphql-codegen and Relay manifests by ``gql-app trust-documents``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'trusted_documents',
        sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column('document_id', sa.String(length=200), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_trusted_documents')),
        sa.UniqueConstraint('document_id', name=op.f('uq_trusted_documents_document_id')),
    )


def downgrade() -> None:
    op.drop_table('trusted_documents')
