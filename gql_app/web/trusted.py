"""Trusted documents: in production mode (``GQL_TRUSTED_DOCUMENTS``) the server runs
only the operations of its clients' manifests, kept in the database
(``data.trusted_documents``) and cached in each process.

A request names its document in one of the forms clients send:

- ``documentId`` (the GraphQL-over-HTTP persisted documents proposal, Relay; a
  ``sha256:`` prefix is accepted) or ``doc_id`` (Relay's older name), top level;
- ``extensions.persistedQuery.sha256Hash`` (the APQ shape graphql-codegen's client
  preset, Apollo and graphql-ws send);
- or ``query``: the full text of a trusted document.

An id is a manifest key or the sha256 of a trusted document. Anything else is
refused before the document is parsed. The cache is every trusted document,
loaded at startup; a miss reloads the rows added since (one statement, at most
once per ``trusted_documents_refresh_s`` for the process), which is how a replica
picks up documents trusted after it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gql_app.data.trusted_documents import documents_after

log = logging.getLogger(__name__)

UNTRUSTED = (
    "This server runs trusted documents only: send the id of a document from the "
    "client's manifest (documentId or extensions.persistedQuery.sha256Hash)."
)


class Untrusted(Exception):
    """The request names no trusted document (``ErrorCode.UNTRUSTED_DOCUMENT``)."""

    def __init__(self) -> None:
        super().__init__(UNTRUSTED)


def document_id_of(body: Any) -> Any:
    """The request's ``documentId`` (or Relay's ``doc_id``) field, if any."""
    found = body.get("documentId")
    return body.get("doc_id") if found is None else found


class TrustedDocuments:
    """This process's copy of the trusted documents (see the module docstring)."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self.engine: AsyncEngine | None = None
        self.by_id: dict[str, str] = {}
        """Manifest ids and the documents' sha256 hex digests -> documents."""
        self.texts: set[str] = set()
        self._last_row = 0
        self._refreshed = -float("inf")
        self._lock = asyncio.Lock()

    async def start(self, engine: AsyncEngine) -> None:
        """Load every trusted document (a failure is logged; the first miss retries)."""
        self.engine = engine
        await self.refresh()

    def lookup(self, query: Any, extensions: Any, document_id: Any) -> str | None:
        """The trusted document the request names or sends, else None. No I/O."""
        if isinstance(query, str):
            return query if query in self.texts else None
        if document_id is None and isinstance(extensions, dict):
            persisted = extensions.get("persistedQuery")
            if isinstance(persisted, dict):
                document_id = persisted.get("sha256Hash")
        if not isinstance(document_id, str):
            return None
        return self.by_id.get(document_id.removeprefix("sha256:"))

    async def resolve(self, query: Any, extensions: Any, document_id: Any) -> str:
        """The trusted document the request names or sends; raises ``Untrusted``.
        A miss refreshes the cache first, at most once per ``refresh_s``."""
        found = self.lookup(query, extensions, document_id)
        if found is None:
            await self.refresh()
            found = self.lookup(query, extensions, document_id)
            if found is None:
                raise Untrusted
        return found

    async def refresh(self) -> None:
        """Read the rows added since the last read, unless one ran under ``refresh_s`` ago."""
        if self.engine is None or time.monotonic() - self._refreshed < self.refresh_s:
            return
        async with self._lock:
            if time.monotonic() - self._refreshed < self.refresh_s:
                return  # another miss refreshed while this one waited
            self._refreshed = time.monotonic()
            try:
                async with self.engine.connect() as conn:
                    rows = await documents_after(conn, self._last_row)
            except Exception:
                log.warning("could not read the trusted documents", exc_info=True)
                return
            for row, document_id, document in rows:
                self.add(document_id, document)
                self._last_row = row

    def add(self, document_id: str, document: str) -> None:
        self.by_id[document_id] = document
        self.by_id[hashlib.sha256(document.encode()).hexdigest()] = document
        self.texts.add(document)
