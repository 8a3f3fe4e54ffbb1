"""The ``gql-app`` command: serve, migrate, seed, export-schema, create-admin,
trust-documents.

Every command uses ``DATABASE_URL`` when it is set, else the embedded
PostgreSQL in ``GQL_DATA_DIR`` (started on first use).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
import uvicorn
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gql_app.data.db import create_engine, create_sessionmaker
from gql_app.data.trusted_documents import Added, add_documents
from gql_app.money.models import Account
from gql_app.settings import Settings, UnsafeSettings, get_settings
from gql_app.tools.embedded import PGDATA, database_url
from gql_app.tools.manifests import check_manifests
from gql_app.tools.seed import connect, database_is_empty, seed, seed_demo, truncate_all
from gql_app.users.models import Profile, User
from gql_app.users.passwords import hash_password

app = typer.Typer(
    help="gql_app: a GraphQL API server on SQLAlchemy and PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
"""Alembic's script directory, shipped in the package: no alembic.ini at run time."""


# --------------------------------------------------------------------------- helpers


def resolve_url(settings: Settings) -> tuple[str, bool]:
    """The database URL and whether it is the embedded server (started here if needed)."""
    embedded = not settings.database_url
    url = database_url(settings)
    if embedded:
        # database_url() exported DATABASE_URL; settings read earlier must see it.
        get_settings.cache_clear()
        typer.echo(f"Using the embedded PostgreSQL in {settings.data_dir / PGDATA}", err=True)
    return url, embedded


def shown(url: str) -> str:
    """``database on host``, for messages: never the password."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"{parsed.database} on {host if isinstance(host, str) else host[0]}"


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the package's migrations, on the database at ``url``."""
    config = Config()
    # Options are interpolated: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["database_url"] = url  # migrations/env.py prefers it
    return config


async def current_revisions(url: str) -> set[str]:
    conn = await connect(url)
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {row["version_num"] for row in rows}


def is_downgrade(config: Config, current: set[str], revision: str) -> bool:
    """Whether reaching ``revision`` from ``current`` means going back."""
    if revision == "base" or revision.startswith("-"):
        return True
    if revision in {"head", "heads"} or revision.startswith("+") or not current:
        return False
    script = ScriptDirectory.from_config(config)
    target = script.get_revision(revision)
    if target is None:
        return False
    older = {
        rev.revision
        for head in current
        for rev in script.iterate_revisions(head, "base")
        if rev is not None and rev.revision != head
    }
    return target.revision in older


def run_migrations(url: str, revision: str = "head") -> None:
    """Upgrades (or downgrades) the database to ``revision`` with Alembic."""
    config = alembic_config(url)
    current = asyncio.run(current_revisions(url))
    if is_downgrade(config, current, revision):
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)
    now = ", ".join(sorted(asyncio.run(current_revisions(url)))) or "base"
    typer.echo(f"Database {shown(url)} is at revision {now}", err=True)


def refuse_unsafe(settings: Settings) -> None:
    """Exit with status 1 and the reason when no server may start with ``settings``."""
    try:
        settings.check_safe()
    except UnsafeSettings as exc:
        typer.echo(f"Refusing to start: {exc}", err=True)
        raise typer.Exit(1) from exc


def exit_on_sigterm() -> None:
    """Make SIGTERM a normal exit, so atexit stops the embedded server.

    uvicorn re-raises the signal it caught once it has shut down; with the
    default disposition the process would die without running atexit hooks.
    """

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------- commands


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[
        bool, typer.Option("--reload/--no-reload", help="Restart on code changes.")
    ] = False,
    force_migrate: Annotated[
        bool,
        typer.Option(
            "--migrate", help="Migrate to head first (always done for the embedded server)."
        ),
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Also uvicorn's access line per request (gql_app logs one JSON line "
            "per GraphQL request either way).",
        ),
    ] = False,
) -> None:
    """Run the GraphQL server (GraphiQL at /graphql)."""
    settings = Settings()
    refuse_unsafe(settings)  # before the embedded server or a migration is started
    url, embedded = resolve_url(settings)
    if embedded:
        exit_on_sigterm()
    if embedded or force_migrate:
        run_migrations(url)
    if embedded and asyncio.run(database_is_empty(url)):
        typer.echo("Loading the demo data set (logins are listed in gql_app/seed.py)...", err=True)
        asyncio.run(seed_demo(url))
    browse = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
    typer.echo(f"GraphiQL: http://{browse}:{port}/graphql")
    uvicorn.run(
        "gql_app.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        log_level=settings.log_level.lower(),
        # One line per request: gql_app's own (``observability.finish_request``), which
        # carries the method, path, status and duration uvicorn's would, and more.
        access_log=access_log,
        # WebSocket frames are small JSON: compression would cost each connection a
        # zlib context (~300 KiB) and each frame a compression, for little gain.
        ws_per_message_deflate=False,
        ws_max_size=settings.max_body_bytes,
        # uvicorn's httptools protocol, a response's head written with its body.
        http="gql_app.web.http:HeadWithBody",
    )


@app.command()
def migrate(
    revision: Annotated[
        str, typer.Option(help="Target revision (head, base, an id, -1...).")
    ] = "head",
) -> None:
    """Migrate the database schema (upgrade to head by default)."""
    url, _ = resolve_url(Settings())
    run_migrations(url, revision)


@app.command("seed")
def seed_command(
    scale: Annotated[int, typer.Option(min=1, help="S users, 10·S posts, 50·S comments...")],
    seed_value: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    force: Annotated[bool, typer.Option(help="Truncate every table first.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Load the deterministic benchmark data set (migrates to head first)."""
    url, _ = resolve_url(Settings())
    run_migrations(url)
    if not asyncio.run(database_is_empty(url)):
        if not force:
            typer.echo(
                "The database already has users; refusing to seed. "
                "Use --force to truncate every table first.",
                err=True,
            )
            raise typer.Exit(1)
        asyncio.run(truncate_all(url))
    try:
        report = asyncio.run(seed(url, scale, progress=progress, seed=seed_value))
    except RuntimeError as exc:
        typer.echo(f"{exc}. Use --force to truncate every table first.", err=True)
        raise typer.Exit(1) from exc
    for table, rows in report.rows.items():
        typer.echo(f"{table:<12} {rows:>12,}")
    typer.echo(f"{'total':<12} {report.total_rows:>12,}")
    for phase, seconds in report.phases.items():
        typer.echo(f"{phase:<17} {seconds:>7.2f} s")
    typer.echo(f"{report.seconds:.2f} s, {report.rows_per_second:,.0f} rows/s")


@app.command("export-schema")
def export_schema(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print (or write) the GraphQL schema in SDL."""
    from gql_app.schema import schema  # the whole GraphQL layer; only this command needs it

    sdl = schema.as_str()
    if output is None:
        typer.echo(sdl)
    else:
        output.write_text(sdl + "\n", encoding="utf-8")
        typer.echo(f"Wrote {output}", err=True)


async def ensure_admin(
    settings: Settings, url: str, email: str, password: str, username: str
) -> bool:
    """Creates the admin (True) or promotes the user with that email (False)."""
    engine = create_engine(settings, url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            user = await session.scalar(select(User).where(User.email == email))
            created = user is None
            if user is None:
                if await session.scalar(select(User.id).where(User.username == username)):
                    raise typer.BadParameter(
                        f"username {username!r} is taken", param_hint="--username"
                    )
                user = User(
                    username=username,
                    email=email,
                    password_hash=hash_password(password),
                    is_admin=True,
                    is_active=True,
                )
                session.add(user)
                await session.flush()
            else:
                user.is_admin = True
                user.is_active = True
            if await session.scalar(select(Profile.id).where(Profile.user_id == user.id)) is None:
                session.add(Profile(user_id=user.id, display_name=user.username))
            if await session.scalar(select(Account.id).where(Account.owner_id == user.id)) is None:
                session.add(Account(owner_id=user.id, currency="USD"))
        return created
    finally:
        await engine.dispose()


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email (the login).")],
    password: Annotated[str, typer.Option(help="Used when the user is created.")],
    username: Annotated[
        str | None, typer.Option(help="Defaults to the email's local part.")
    ] = None,
) -> None:
    """Create an admin user, or promote the user with that email to admin."""
    email = email.strip().lower()
    if "@" not in email:
        raise typer.BadParameter("not an email address", param_hint="--email")
    if not password:
        raise typer.BadParameter("must not be empty", param_hint="--password")
    settings = Settings()
    url, _ = resolve_url(settings)
    name = username or email.split("@", 1)[0][:50]
    if asyncio.run(ensure_admin(settings, url, email, password, name)):
        typer.echo(f"Created admin {name} <{email}>")
    else:
        typer.echo(f"Promoted {email} to admin (password unchanged)")


async def store_documents(settings: Settings, url: str, documents: dict[str, str]) -> Added:
    """Add ``documents`` in one transaction; none of them if one id conflicts."""
    engine = create_engine(settings, url)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            added = await add_documents(conn, documents)
            await (transaction.rollback() if added.conflicts else transaction.commit())
        return added
    finally:
        await engine.dispose()


@app.command("trust-documents")
def trust_documents(
    manifests: Annotated[
        list[Path],
        typer.Argument(
            help="Manifests (JSON id -> document): graphql-codegen's persisted-documents.json, "
            "Relay's persisted queries file."
        ),
    ],
) -> None:
    """Add the manifests' documents to the trusted documents (GQL_TRUSTED_DOCUMENTS).

    Every document is validated against the schema first; if one is invalid, or an
    id is already trusted with another document, nothing is added (status 1).
    """
    from gql_app.schema import schema  # the whole GraphQL layer; only this command needs it

    documents, problems = check_manifests(schema._schema, manifests)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        typer.echo("Refused: no document was added.", err=True)
        raise typer.Exit(1)
    settings = Settings()
    url, _ = resolve_url(settings)
    try:
        added = asyncio.run(store_documents(settings, url, documents))
    except sa_exc.ProgrammingError as exc:
        typer.echo(f"Cannot store them ({exc.orig}); run `gql-app migrate` first.", err=True)
        raise typer.Exit(1) from exc
    if added.conflicts:
        for document_id in added.conflicts:
            typer.echo(f"{document_id}: already trusted with another document", err=True)
        typer.echo("Refused: no document was added.", err=True)
        raise typer.Exit(1)
    typer.echo(f"Added {len(added.added)} trusted documents; {len(added.present)} already present.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
