"""The plan PostgreSQL chose for a statement the app really sent: shared by the
plan tests (tests/test_index_paths.py, tests/test_search_plans.py)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event


async def answer_and_plan(
    app: Any, raw_url: str, body: dict[str, Any], marker: str, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST ``body`` to ``app``; the response JSON, and the EXPLAIN (ANALYZE, BUFFERS) plan of
    the first statement it sent whose text contains ``marker``, run again with the
    same parameters on ``raw_url``."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        captured.append((statement, parameters))

    engine = app.state.engine
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/graphql", json=body, headers=headers or {})
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    statement, parameters = next((s, p) for s, p in captured if marker in s)
    conn = await asyncpg.connect(raw_url)
    try:
        plan_json = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, *parameters
        )
    finally:
        await conn.close()
    return response.json(), json.loads(plan_json)[0]["Plan"]
