"""The committed SDL, the public contract, and the Alembic migrations."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

import gql_app
from gql_app.models import Base
from gql_app.schema import schema
from gql_app.tools.cli import MIGRATIONS
from tests.conftest import ROOT, alembic_config, scratch_database

CONTRACT_CHECK = ROOT.parent / "shared" / "tools" / "contract_check.py"


def test_committed_schema_matches_the_served_schema():
    committed = (ROOT / "schema" / "schema.graphql").read_text()
    assert committed == schema.as_str() + "\n", (
        "run: gql-app export-schema --output schema/schema.graphql"
    )


@pytest.mark.skipif(not CONTRACT_CHECK.exists(), reason="../shared is not beside the checkout")
def test_the_contract_is_served_unbroken():
    """The whole contract: contract.graphql and its live part (the Subscription root)."""
    live = CONTRACT_CHECK.parent.parent / "contract-live.graphql"
    out = subprocess.run(
        [
            sys.executable,
            str(CONTRACT_CHECK),
            str(ROOT / "schema" / "schema.graphql"),
            "--also",
            str(live),
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert out.strip().splitlines()[-1] == "0 breaking differences from contract.graphql", out


def test_the_checkouts_alembic_ini_names_the_packaged_migrations():
    # Given the checkout's alembic.ini (for `alembic revision --autogenerate`)
    developers = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
    # Then it names the directory `gql-app migrate` runs, which the wheel ships
    packaged = ScriptDirectory.from_config(alembic_config("postgresql://unused/db"))
    assert Path(developers.dir).resolve() == Path(packaged.dir).resolve() == MIGRATIONS
    assert Path(packaged.dir).is_relative_to(Path(gql_app.__file__).parent)
    assert developers.get_current_head() == packaged.get_current_head() is not None


@pytest.fixture
async def scratch_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, "gql_migrate", migrate=False) as url:
        yield url


async def test_upgrade_downgrade_upgrade_and_no_autogenerate_diff(scratch_url: str):
    config = alembic_config(scratch_url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")

    engine = create_async_engine(scratch_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync_conn: compare_metadata(
                MigrationContext.configure(sync_conn, opts={"compare_type": True}), Base.metadata
            )
        )
    await engine.dispose()
    assert diff == []


def test_every_foreign_key_is_indexed():
    for table in Base.metadata.tables.values():
        indexed = {getattr(index.expressions[0], "name", None) for index in table.indexes}
        indexed |= {c.name for c in table.primary_key.columns[:1]}
        indexed |= {
            next(c.name for c in u.columns)
            for u in table.constraints
            if hasattr(u, "columns") and u.__class__.__name__ == "UniqueConstraint"
        }
        for fk in table.foreign_keys:
            assert fk.parent.name in indexed, f"{table.name}.{fk.parent.name} has no leading index"
