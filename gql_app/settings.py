"""One Settings object, read from environment variables once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-secret-change-me"
"""``GQL_SECRET_KEY``'s default: good for the embedded development server only."""


class UnsafeSettings(RuntimeError):
    """Settings a server must not start with (``Settings.check_safe``)."""


class Settings(BaseSettings):
    """Every knob of the server. Names map to upper-case environment variables.

    ``DATABASE_URL`` has no prefix because every tool already knows that name;
    the rest carry the ``GQL_`` prefix (``GQL_POOL_SIZE``, ``GQL_SECRET_KEY``...).
    """

    model_config = SettingsConfigDict(env_prefix="GQL_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    """PostgreSQL URL. Unset: an embedded server is started in ``data_dir``."""
    embedded_url: str | None = None
    """The embedded server's URL, exported by ``gql-app`` beside DATABASE_URL when it
    starts that server (``tools.embedded``), so its workers know where they are. Not
    a setting to set by hand."""
    read_replica_url: str | None = None
    """A streaming replica of DATABASE_URL: query operations read it while it keeps up
    (``data.replica``); mutations, live data and tokens it does not know yet use the
    primary."""
    replica_max_lag_s: float = 5.0
    """Queries read the primary instead while the replica has not replayed a write the
    primary made this long ago (``/ready`` says ``lagging``)."""
    replica_check_interval_s: float = 1.0
    """How often the replica's lag is measured (its state changes no faster)."""
    listen_url: str | None = None
    """Where the per-process LISTEN connection goes (``data.listener``); unset: the
    DATABASE_URL. It must reach PostgreSQL directly (or a session-mode pooler): a
    LISTEN is session state, which PgBouncer's transaction mode does not keep."""
    data_dir: Path = Path(".gql_app")

    pool_size: int = 20
    """Connections kept open. Above the concurrent operations a process runs (about 16
    saturate one process), so none is opened or closed under steady load."""
    max_overflow: int = 5
    """Connections opened beyond ``pool_size`` in a burst; each is closed when it comes
    back to a pool already holding ``pool_size`` idle ones."""
    pool_timeout: float = 10.0
    pool_recycle: int = 1800
    pool_pre_ping: bool = False
    """SQLAlchemy's ping on every checkout (three round trips with asyncpg). Closed
    connections are always rejected for free (see ``db.reject_closed_connection``);
    turn this on only where a dead peer is never signalled."""
    connect_timeout_s: float = 5.0
    """Give up opening a connection after this long: a dead database fails fast."""
    statement_timeout_ms: int = 15_000
    idle_in_transaction_timeout_ms: int = 60_000
    prepared_statement_cache_size: int = 100
    """Prepared statements kept per connection (asyncpg's and SQLAlchemy's caches)."""
    pgbouncer: bool = False
    """Behind PgBouncer in transaction pooling mode: no prepared statement outlives its
    transaction, and the session settings (statement_timeout...) are not sent at
    connect time; set them with ``ALTER ROLE ... SET`` (see the README)."""

    secret_key: str = DEV_SECRET_KEY
    """Signs cursors. The default is refused anywhere but the embedded development
    server (``check_safe``)."""
    token_ttl_seconds: int = 7 * 24 * 3600

    graphiql: bool = True
    introspection: bool = True

    trusted_documents: bool = False
    """Production mode: run only the documents added with ``gql-app trust-documents``
    (``web.trusted``); anything else is UNTRUSTED_DOCUMENT, and GraphiQL and APQ are off."""
    trusted_documents_refresh_s: float = 1.0
    """In that mode, a request for an unknown document reads the newly trusted ones
    from the database at most this often per process."""

    default_page_size: int = 20
    max_page_size: int = 100
    max_ids: int = 100
    max_depth: int = 15
    max_aliases: int = 30
    max_directives: int = 50
    max_tokens: int = 5_000
    max_document_chars: int = 50_000
    max_cost: int = 50_000
    max_body_bytes: int = 1_048_576
    cors_origins: list[str] = []

    query_lane: bool = True
    """Answer plain JSON queries on the short path (``gql_app.web.query_lane``); off: every request
    takes Strawberry's full pipeline (for comparison; the answers are the same)."""

    driver_reads: bool = True
    """Run query operations' statements on the asyncpg connection under SQLAlchemy's
    pool (``gql_app.data.driver_reads``); off: through an ORM session, as mutations do."""

    narrow_columns: bool = True
    """Query statements select only the columns the document reads (``engine.columns``);
    off: whole rows (for comparison; the answers are the same)."""

    log_level: str = "INFO"
    slow_query_ms: int = 200

    # Live data (WebSocket at /graphql, ``web.websocket`` and ``web.live``)
    ws_max_connections: int = 20_000
    """Open WebSocket connections per process; more are closed with 1013 (try again later)."""
    ws_max_subscriptions: int = 50_000
    """Active subscriptions per process; more are refused with SERVICE_UNAVAILABLE."""
    ws_max_subscriptions_per_connection: int = 100
    """Active subscriptions per connection; more are refused with TOO_MANY_SUBSCRIPTIONS."""
    ws_send_buffer_bytes: int = 1_048_576
    """Results queued for one socket; a client that lets more pile up is disconnected."""
    ws_init_timeout_s: float = 10.0
    """Time to send ``connection_init`` after the socket opens (4408 otherwise)."""
    ws_keepalive_s: float = 15.0
    """Protocol ``ping`` messages to every connection this often (0: never)."""

    @property
    def on_embedded_server(self) -> bool:
        """No DATABASE_URL, or the one ``gql-app`` exported for the embedded server."""
        return not self.database_url or self.database_url == self.embedded_url

    def check_safe(self) -> None:
        """Raise ``UnsafeSettings`` if a server must not start with these settings: the
        development secret key (or none) on anything but the embedded development server,
        where anyone could sign cursors with it."""
        if self.secret_key in ("", DEV_SECRET_KEY) and not self.on_embedded_server:
            raise UnsafeSettings(
                "GQL_SECRET_KEY is empty or the development default, which is only for "
                "the embedded development server (no DATABASE_URL). Set GQL_SECRET_KEY to a "
                "long random string, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
