"""The trusted documents' table: the operations a production server runs (the
manifests graphql-codegen's client preset and Relay's compiler write), shared by
every replica. ``tools.cli trust-documents`` adds to it; ``web.trusted`` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import String, Text, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from gql_app.data.db import Base, CreatedAt, PrimaryKey


class TrustedDocument(Base):
    """One manifest entry: the client's id for it (a sha256 hex for graphql-codegen,
    Relay's id) and the document. ``id`` orders the rows: a replica reads only the
    rows past the last one it has."""

    __tablename__ = "trusted_documents"

    id: Mapped[PrimaryKey]
    document_id: Mapped[str] = mapped_column(String(200), unique=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


async def documents_after(conn: AsyncConnection, after: int) -> list[tuple[int, str, str]]:
    """(row id, document id, document) of the rows past ``after``, in row order."""
    rows = await conn.execute(
        select(TrustedDocument.id, TrustedDocument.document_id, TrustedDocument.document)
        .where(TrustedDocument.id > after)
        .order_by(TrustedDocument.id)
    )
    return [(row[0], row[1], row[2]) for row in rows]


@dataclass
class Added:
    """What ``add_documents`` did: ids added, ids already there with the same
    document, ids already there with another (refused)."""

    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


async def add_documents(conn: AsyncConnection, documents: Mapping[str, str]) -> Added:
    """Insert ``documents`` (id -> document) that are not there yet, in the caller's
    transaction. An id already stored with a different document is a conflict, and
    nothing is inserted then (the caller rolls back)."""
    result = Added()
    rows = await conn.execute(
        select(TrustedDocument.document_id, TrustedDocument.document).where(
            TrustedDocument.document_id.in_(list(documents))
        )
    )
    stored = {document_id: document for document_id, document in rows}
    for document_id, document in documents.items():
        if document_id not in stored:
            result.added.append(document_id)
        elif stored[document_id] == document:
            result.present.append(document_id)
        else:
            result.conflicts.append(document_id)
    if result.added and not result.conflicts:
        await conn.execute(
            insert(TrustedDocument).on_conflict_do_nothing(index_elements=["document_id"]),
            [{"document_id": i, "document": documents[i]} for i in result.added],
        )
    return result
