"""bench/run.py's arithmetic and its comparison with PostGraphile, without servers:
medians over rounds, and the "Against PostGraphile" table rendered from them."""

from __future__ import annotations

import argparse
import datetime as dt

from bench.common import GQL_APP, NAIVE, RAW
from bench.load import LoadResult
from bench.postgraphile import PEER
from bench.run import (
    Cell,
    Peer,
    Report,
    ScaleRun,
    StatementCount,
    Timed,
    against_peer,
    contenders,
    prepare_peer,
    render,
)


def load(rps: float, p50: float, p99: float, errors: int = 0) -> LoadResult:
    return LoadResult(int(rps * 5), 5.0, errors, p50, p99, "wrk")


def cell(rounds: list[tuple[float, float, float]], c1_p50: float, sql: tuple[int, int]) -> Cell:
    runs = [Timed(load(*r), 1.0, 0.5, 3.0, 2.0) for r in rounds]
    c1 = [load(100, c1_p50, c1_p50 * 2) for _ in rounds]
    return Cell(runs, c1, StatementCount(*sql))


def report(cells: dict[str, dict[str, Cell]], peer: Peer | None = None) -> Report:
    args = argparse.Namespace(concurrency=16, rounds=3)
    started = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    run = ScaleRun(1000, (GQL_APP, PEER, RAW), cells=cells)
    return Report(args, "cmd", started, "wrk", runs=[run], peer=peer or Peer("5.1.5", "v22"))


def test_each_figure_is_the_median_of_its_rounds_and_errors_add_up() -> None:
    c = cell([(300, 40, 90), (100, 50, 70), (200, 45, 200)], 5.0, (1, 0))
    c.c16_runs[0] = Timed(load(300, 40, 90, errors=2), 3.0, None, 1.0, 0.5)

    assert c.c16 is not None
    assert round(c.c16.rps) == 200
    assert (c.c16.p50_ms, c.c16.p99_ms) == (45, 90)
    assert c.c16.errors == 2
    assert c.c16.spread == (100, 300)
    assert (c.cpu_ms, c.pg_cpu_ms, c.other_pct, c.steal_pct) == (1.0, 0.5, 3.0, 2.0)


def test_the_tail_is_each_rounds_p99_over_its_own_p50() -> None:
    # Given rounds whose median p99 (16) and median p50 (8) come from different rounds
    c = cell([(100, 10, 19), (100, 5, 16), (100, 8, 12)], 1.0, (1, 0))

    assert c.c16 is not None
    # Then the tail is the median of each round's own ratio, not 16 / 8
    assert c.c16.tails == [1.9, 3.2, 1.5]
    assert c.c16.tail == 1.9


def test_a_cell_never_timed_has_no_figures() -> None:
    assert (Cell().c16, Cell().c1, Cell().cpu_ms) == (None, None, None)


def test_the_peer_table_gives_ratios_targets_share_tail_and_statements() -> None:
    cells = {
        "W1 feed": {
            GQL_APP: cell([(95, 150, 250)] * 3, 12.0, (6, 2)),
            PEER: cell([(100, 140, 200)] * 3, 10.0, (1, 0)),
            RAW: cell([(200, 70, 100)] * 3, 6.0, (6, 2)),
        },
        "W3 node": {
            GQL_APP: cell([(500, 30, 90), (600, 25, 80), (550, 28, 85)], 2.0, (1, 0)),
            PEER: cell([(1000, 15, 30)] * 3, 2.5, (1, 0)),
            RAW: cell([(2000, 8, 12)] * 3, 0.6, (1, 2)),
        },
    }

    lines = against_peer(report(cells))

    table = [line for line in lines if line.startswith("| 1,000 |")]
    assert table == [
        "| 1,000 | W1 feed | 95 | 100 | 0.95 | ≥ 0.9: met | **not met** / **not met** | 200 "
        "| 48% | 1.67 (1.67, 1.67, 1.67): met | 1.43 / 1.43 | 12.0 / 10.0 / 6.00 "
        "| 6 (+2) / 1 (+0) / 6 (+2) |",
        "| 1,000 | W3 node | 550 | 1,000 | 0.55 | ≥ 0.6: **not met** | **not met** / met | "
        "2,000 | 28% | 3.04 (3.00, 3.20, 3.04): **not met** | 2.00 / 1.50 | 2.00 / 2.50 / 0.60 "
        "| 1 (+0) / 1 (+0) / 1 (+2) |",
    ]
    assert lines[-2] == (
        "Targets met: 1 of 2; stretch ratio: 0 of 2; c=1 p50 at most PostGraphile's: 1 of 2; "
        "p99/p50: 1 of 2; statements equal to the floor's: 1 of 2."
    )


def test_without_the_peer_the_section_says_why() -> None:
    lines = against_peer(report({}, Peer(skipped="left out on purpose (`--no-peer`)")))

    assert lines == [
        "## Against PostGraphile",
        "",
        "PostGraphile was not run: left out on purpose (`--no-peer`).",
        "",
    ]


def test_the_page_puts_the_peer_first_and_lists_it_across_scales() -> None:
    cells = {
        "W3 node": {
            GQL_APP: cell([(500, 30, 50)] * 3, 2.0, (1, 0)),
            PEER: cell([(600, 25, 40)] * 3, 1.0, (1, 0)),
            RAW: cell([(900, 15, 20)] * 3, 0.5, (1, 0)),
        }
    }
    page = report(cells)
    page.args = argparse.Namespace(concurrency=16, rounds=3, duration=5.0, w5_runs=5)
    page.runs.append(ScaleRun(10_000, (GQL_APP, PEER, RAW), cells=cells))

    text = render(page)

    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Against PostGraphile", "## Machine"]
    assert "| W3 node | PostGraphile | 1.00 / 1.00 | 600 / 600 | 1.00x / 1.00x | — |" in text
    assert "| PostGraphile | 600 | 600-600 | 25.0 | 40.0 |" in text


def test_the_peer_runs_beside_gql_app_and_the_naive_baseline_at_the_first_scale_only() -> None:
    assert contenders(0, Peer("5.1.5", "v22")) == (GQL_APP, PEER, RAW, NAIVE)
    assert contenders(1, Peer("5.1.5", "v22")) == (GQL_APP, PEER, RAW)
    assert contenders(0, prepare_peer(no_peer=True)) == (GQL_APP, RAW, NAIVE)
    assert prepare_peer(no_peer=True).skipped == "left out on purpose (`--no-peer`)"
