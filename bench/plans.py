"""The actual plans of the statements gql_app sends, from ``auto_explain``.

During the bench's counting pass the scratch database loads ``auto_explain``
(``session_preload_libraries``) with ``log_analyze``: PostgreSQL logs the plan it
executed, with actual rows, loops and buffers, for every statement of the real
requests. This module reads those log entries and summarises them: execution
time, rows read by the scan nodes, buffers, node types, and flags (a sequential
scan or a sort over a table that grows with the scale).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_timing": "on",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "text",
}
"""Set on the scratch database (``ALTER DATABASE ... SET``) for the counting pass."""

BIG_TABLES = {
    "users",
    "profiles",
    "accounts",
    "posts",
    "post_tags",
    "comments",
    "orders",
    "order_items",
}
"""The tables whose size grows with the scale."""

ENTRY = re.compile(rb"\[(\d+)\] (?:\S+ )?LOG:  duration: ([\d.]+) ms  plan:")
NODE = re.compile(
    r"^\s*(?:->\s+)?(?P<head>[A-Z].*?)\s+\(cost=[^)]*\) "
    r"\(actual time=[\d.]+\.\.[\d.]+ rows=(?P<rows>[\d.]+) loops=(?P<loops>\d+)\)"
)
REMOVED = re.compile(r"Rows Removed by (?:Filter|Index Recheck|Join Filter): (\d+)")
BUFFERS = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")
SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")
LARGE_READ = 10_000
"""A scan reading more rows than this is flagged: its cost grows with the data."""


@dataclass
class Plan:
    duration_ms: float
    query: str
    text: str
    nodes: list[str] = field(default_factory=list)
    rows_read: int = 0
    buffers: int = 0
    flags: list[str] = field(default_factory=list)


def parse_log(chunk: bytes, pids: set[int]) -> list[Plan]:
    """The auto_explain entries of ``pids`` in a slice of PostgreSQL's log."""
    plans: list[Plan] = []
    lines = chunk.splitlines()
    i = 0
    while i < len(lines):
        m = ENTRY.search(lines[i])
        i += 1
        if not m or int(m.group(1)) not in pids:
            continue
        body = []
        while i < len(lines) and lines[i].startswith(b"\t"):
            body.append(lines[i][1:].decode(errors="replace"))
            i += 1
        plans.append(summarise(float(m.group(2)), body))
    return plans


def node_name(head: str) -> tuple[str, str | None]:
    """("Index Only Scan", "posts") from "Parallel Index Only Scan Backward using ix on
    posts p"."""
    name, _, on = head.partition(" on ")
    name = name.partition(" using ")[0].strip().removeprefix("Parallel ")
    return name.removesuffix(" Backward"), (on.split()[0] if on else None)


def summarise(duration_ms: float, body: list[str]) -> Plan:
    """A plan from auto_explain's lines: the query text (several lines), its
    parameters, then the plan."""
    start = next(
        (
            i
            for i, line in enumerate(body)
            if line.startswith("Query Parameters:") or NODE.match(line)
        ),
        len(body),
    )
    query = "\n".join(body[:start]).removeprefix("Query Text: ").strip()
    plan = Plan(duration_ms, query, "\n".join(body[start:]))
    loops = 1
    for line in body[start:]:
        if node := NODE.match(line):
            name, table = node_name(node["head"])
            loops = int(node["loops"])
            rows = round(float(node["rows"]) * loops)
            label = f"{name} on {table}" if table else name
            if label not in plan.nodes:
                plan.nodes.append(label)
            if name in SCANS:
                plan.rows_read += rows
                if rows > LARGE_READ:
                    plan.flags.append(f"{name} on {table} reads {rows:,} rows")
            if table in BIG_TABLES and name == "Seq Scan":
                plan.flags.append(f"Seq Scan on {table} ({rows:,} rows)")
            if name in ("Sort", "Incremental Sort") and rows > 1000:
                plan.flags.append(f"{name} of {rows:,} rows")
        elif removed := REMOVED.search(line):
            plan.rows_read += int(removed.group(1)) * loops
        elif plan.buffers == 0 and (buffers := BUFFERS.search(line)):
            plan.buffers = sum(int(g) for g in buffers.groups() if g)
    return plan


def statement_row(index: int, plan: Plan) -> str:
    query = re.sub(r"\s+", " ", plan.query)
    short = query if len(query) <= 90 else query[:87] + "..."
    nodes = ", ".join(plan.nodes) or "—"
    flags = "; ".join(plan.flags) or "—"
    return (
        f"| {index} | `{short.replace('|', '/')}` | {plan.duration_ms:.3f} | "
        f"{plan.rows_read:,} | {plan.buffers:,} | {nodes} | {flags} |"
    )


def summary_table(plans: list[Plan]) -> list[str]:
    return [
        "| # | statement | execution ms | rows read | buffers | nodes | flags |",
        "|--:|---|--:|--:|--:|---|---|",
        *(statement_row(i, p) for i, p in enumerate(plans, start=1)),
    ]


def write_plans(path: Path, scale: int, plans: dict[str, list[Plan]]) -> None:
    """Every plan in full, by workload, for one scale."""
    out = [f"Actual plans (auto_explain, log_analyze, buffers) at scale {scale:,}", ""]
    for workload, found in plans.items():
        out += [f"==== {workload}: {len(found)} statements per request", ""]
        for i, plan in enumerate(found, start=1):
            out += [
                f"---- {workload} #{i}: {plan.duration_ms:.3f} ms, "
                f"{plan.rows_read:,} rows read, {plan.buffers:,} buffers",
                plan.query,
                "",
                plan.text,
                "",
            ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
