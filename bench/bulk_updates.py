"""W5: the set-based bulk mutations at scale, against the same UPDATE run directly.

    python -m bench.bulk_updates --scale 100000

Seeds a scratch database (DATABASE_URL's server, or the embedded one), then
times each mutation over HTTP through the ASGI app and the equivalent UPDATE
sent straight to PostgreSQL with asyncpg (what psql would do), alternating,
state restored between runs, and prints the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg
import httpx
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from gql_app.data.db import async_url
from gql_app.settings import Settings
from gql_app.tools.embedded import database_url
from gql_app.tools.seed import seed
from gql_app.web.app import create_app

DEACTIVATE = """mutation($cutoff: DateTime!) {
  deactivateInactiveUsers(input: {lastLoginBefore: $cutoff}) {
    affectedCount userErrors { code } } }"""
ADJUST = """mutation { adjustPrices(input: {percent: "10", skuPrefix: "SKU-"}) {
  affectedCount userErrors { code } } }"""
CUTOFF = "2025-09-01T00:00:00+00:00"
RAW_DEACTIVATE = (
    "UPDATE users SET is_active = false, updated_at = now() WHERE users.is_active IS true "
    "AND coalesce(users.last_login_at, users.created_at) < $1"
)
RAW_ADJUST = "UPDATE products SET price = round(price * (100 + $1) / 100, 2) WHERE sku LIKE 'SKU-%'"
RESET_USERS = "UPDATE users SET is_active = true"


def libpq(url: str) -> str:
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://")


async def main(scale: int, runs: int) -> None:
    server = database_url(Settings())
    name = f"gql_bench_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(libpq(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(async_url(server)).set(database=name).render_as_string(hide_password=False)
    try:
        config = Config("alembic.ini")
        config.attributes["database_url"] = url
        await asyncio.to_thread(command.upgrade, config, "head")
        report = await seed(url, scale, progress=False)
        print(f"seeded scale {scale}: {report.total_rows} rows in {report.seconds:.1f}s")
        raw = await asyncpg.connect(libpq(url))
        app = create_app(Settings(DATABASE_URL=url, secret_key="bench-secret-key"))
        token = await admin_token(raw)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                headers = {"Authorization": f"Bearer {token}"}
                timings: dict[str, list[float]] = {
                    k: [] for k in ("gql_d", "raw_d", "gql_a", "raw_a")
                }
                affected = 0
                for _ in range(runs):
                    await raw.execute(RESET_USERS)
                    t = time.perf_counter()
                    body = (
                        await http.post(
                            "/graphql",
                            json={"query": DEACTIVATE, "variables": {"cutoff": CUTOFF}},
                            headers=headers,
                        )
                    ).json()
                    timings["gql_d"].append(time.perf_counter() - t)
                    affected = body["data"]["deactivateInactiveUsers"]["affectedCount"]
                    await raw.execute(RESET_USERS)
                    t = time.perf_counter()
                    status = await raw.execute(RAW_DEACTIVATE, datetime.fromisoformat(CUTOFF))
                    timings["raw_d"].append(time.perf_counter() - t)
                    assert int(status.split()[-1]) == affected
                    t = time.perf_counter()
                    await http.post("/graphql", json={"query": ADJUST}, headers=headers)
                    timings["gql_a"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    await raw.execute(RAW_ADJUST, Decimal("10"))
                    timings["raw_a"].append(time.perf_counter() - t)
                await raw.execute(RESET_USERS)
        await raw.close()
        med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
        print(f"deactivateInactiveUsers: {affected} of {scale} users")
        line(med["gql_d"], med["raw_d"])
        print("adjustPrices (500 products):")
        line(med["gql_a"], med["raw_a"])
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def line(graphql_ms: float, direct_ms: float) -> None:
    ratio = graphql_ms / direct_ms
    print(f"  GraphQL {graphql_ms:.1f} ms  direct UPDATE {direct_ms:.1f} ms  ratio {ratio:.2f}")


async def admin_token(conn: asyncpg.Connection) -> str:
    from gql_app.users.passwords import new_token, token_digest

    token = new_token()
    await conn.execute(
        "INSERT INTO auth_tokens (user_id, token_hash, expires_at) "
        "SELECT id, $1, now() + interval '1 hour' FROM users WHERE is_admin ORDER BY id LIMIT 1",
        token_digest(token),
    )
    return token


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.runs))
