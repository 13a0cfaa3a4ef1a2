"""The benchmark harness (benchmarks/_harness.py, run.py's A/B mode): who runs after whom;
how a run is waited for; how two revisions are compared."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from procfs import alive

_BENCH = str(Path(__file__).resolve().parent.parent / "benchmarks")
sys.path.insert(0, _BENCH)
try:
    from _ab import A, B, ab_table, parse_revs
    from _harness import Measurement, alternate, run_cmd
    from run import ORIG, OURS, Group, View, ab_groups, ab_result_rows, run_group
finally:
    sys.path.remove(_BENCH)


def _variants(order: list[str]) -> dict[str, Callable[[], Measurement]]:
    """Three stand-in tools that note when they ran; their wall time is their turn (1, 2, ...)."""

    def make(name: str) -> Callable[[], Measurement]:
        def run() -> Measurement:
            order.append(name)
            return Measurement(wall_s=float(len(order)), returncode=0)

        return run

    return {n: make(n) for n in ("orig", "ours", "xargs")}


def test_rounds_rotate_so_no_variant_always_follows_the_same_one() -> None:
    order: list[str] = []
    results = alternate(_variants(order), 3, progress=False)
    assert order == ["orig", "ours", "xargs", "ours", "xargs", "orig", "xargs", "orig", "ours"]
    # the results stay per variant, in the order of the rounds
    assert [m.wall_s for m in results["ours"]] == [2.0, 4.0, 9.0]
    assert list(results) == ["orig", "ours", "xargs"]


def test_one_round_at_a_time_rotates_with_first_round() -> None:
    order: list[str] = []
    variants = _variants(order)
    for i in range(4):
        alternate(variants, 1, progress=False, first_round=i)
    assert order[:3] == ["orig", "ours", "xargs"]
    assert order[3:6] == ["ours", "xargs", "orig"]
    assert order[6:9] == ["xargs", "orig", "ours"]
    assert order[9:] == ["orig", "ours", "xargs"]


def test_a_run_is_measured_with_its_figures() -> None:
    m = run_cmd([sys.executable, "-c", "print('warming up'); print('{\"jobs_per_s\": 42}')"])
    assert (m.returncode, m.error, m.figures) == (0, None, {"jobs_per_s": 42})
    assert m.wall_s > 0 and "warming up" in m.stdout


def test_a_run_past_its_timeout_is_killed_with_its_group(tmp_path: Path) -> None:
    # The child leaves a background process in its group: both must go.
    pid_file = tmp_path / "pid"
    script = f"sleep 600 & echo $! > {pid_file}; sleep 600; echo never"
    m = run_cmd(["bash", "-c", script], timeout=0.5)
    assert m.error == "timeout after 0.5 s"
    assert m.returncode != 0 and "never" not in m.stdout
    background = int(pid_file.read_text())
    for _ in range(500):  # killed at once; its parent (bash, killed too) leaves it to init
        if not alive(background):
            break
        time.sleep(0.01)
    assert not alive(background)


def test_a_failing_run_keeps_its_exit_code_and_stderr() -> None:
    m = run_cmd(["bash", "-c", "echo broken >&2; exit 3"])
    assert (m.returncode, m.error) == (3, "exit code 3")
    assert "broken" in m.stderr_tail


def _build(side: str, order: list[str], walls: dict[str, list[float]]) -> list[Group]:
    """What ``run.build`` gives for one tree, with stand-in tools: the original, ours and
    xargs on one workload, and ours alone on another. Each run notes ``side:tool`` and
    takes the next wall time of ``walls[side]`` (ours) or 9.0 (the peers)."""

    def tool(name: str) -> Callable[[], Measurement]:
        def run() -> Measurement:
            order.append(f"{side}:{name}")
            wall = walls[side].pop(0) if name == OURS else 9.0
            return Measurement(wall_s=wall, returncode=0, figures={"x_ms": wall * 1e3})

        return run

    return [
        Group("sep-10-n2", 4, {ORIG: tool(ORIG), OURS: tool(OURS), "xargs": tool("xargs")}),
        Group("null-10", 2, {OURS: tool(OURS)}),
    ]


def test_ab_mode_runs_only_ours_of_each_tree_alternated() -> None:
    order: list[str] = []
    walls = {"a": [1.0, 2.0, 3.0, 4.0, 1.0, 1.0], "b": [0.5, 1.0, 3.3, 2.0, 2.0, 2.0]}
    groups = ab_groups(_build("a", order, walls), _build("b", order, walls))
    assert [(g.key, list(g.variants)) for g in groups] == [
        ("sep-10-n2", [A, B]),
        ("null-10", [A, B]),
    ]
    results = {g.key: run_group(g, g.runs, time.perf_counter(), 1e9) for g in groups}
    # A B, then B A, ...: neither side always runs right after the other; no peer runs
    assert order == [
        *("a:" + OURS, "b:" + OURS, "b:" + OURS, "a:" + OURS),
        *("a:" + OURS, "b:" + OURS, "b:" + OURS, "a:" + OURS),
        *("a:" + OURS, "b:" + OURS, "b:" + OURS, "a:" + OURS),
    ]
    assert [m.wall_s for m in results["sep-10-n2"][A]] == [1.0, 2.0, 3.0, 4.0]
    assert [m.wall_s for m in results["sep-10-n2"][B]] == [0.5, 1.0, 3.3, 2.0]


def test_ab_table_gives_medians_and_b_over_a_per_round() -> None:
    def ms(*walls: float | None) -> list[Measurement]:
        return [
            Measurement(wall_s=w, returncode=0, figures={"x_ms": w * 1e3})
            if w is not None
            else Measurement(wall_s=0.01, returncode=1, error="exit code 1")
            for w in walls
        ]

    views = [
        View("wall", "g1", "batch: wall", 10, [(ORIG, ORIG, None), (OURS, OURS, None)]),
        View("fig", "g1", "API: figure", 10, [(ORIG, ORIG, "x_ms"), (OURS, OURS, "x_ms")]),
        View("peer-only", "g1", "no row of ours", 10, [(ORIG, ORIG, None)]),
        View("not-run", "g2", "a group that did not run", 10, [(OURS, OURS, None)]),
    ]
    # the B run of round 3 failed: out of B's median and of the per-round ratios
    results = {"g1": {A: ms(2.0, 4.0, 3.0, 2.0), B: ms(1.0, 3.0, None, 3.0)}}
    rows = ab_result_rows(views, results)
    assert [r.workload for r in rows] == ["batch: wall", "API: figure"]
    wall = rows[0]
    assert wall.a is not None and wall.b is not None and wall.per_round is not None
    assert (wall.a.median, wall.a.lo, wall.a.hi, wall.a.n) == (2.5, 2.0, 4.0, 4)
    assert (wall.b.median, wall.b.n) == (3.0, 3)
    assert wall.ratio == 3.0 / 2.5
    assert (wall.per_round.median, wall.per_round.lo, wall.per_round.hi) == (0.75, 0.5, 1.5)
    assert (wall.per_round.n, wall.failed) == (3, 1)
    assert rows[1].per_round == wall.per_round  # the figure, in ms, read as seconds

    text = ab_table(rows, "abc123 (old)", "def456 (new)").splitlines()
    assert text[0] == (
        "| workload | A: abc123 (old) | B: def456 (new) | B/A (medians) "
        "| B/A per round: median (min-max) | rounds |"
    )
    assert text[2] == (
        "| batch: wall | 2.500 s (2.000 s-4.000 s) | 3.000 s (1.000 s-3.000 s) | 1.200 "
        "| 0.750 (0.500-1.500) | 3, 1 runs FAILED |"
    )


def test_ab_revisions_are_two_or_one_against_the_working_tree() -> None:
    assert parse_revs("HEAD~1,HEAD", None) == ("HEAD~1", "HEAD")
    assert parse_revs(None, "main") == ("main", None)
    for ab, compare in (("HEAD", None), ("a,b,c", None), ("a,", None), (None, None), ("a,b", "c")):
        with pytest.raises(ValueError):
            parse_revs(ab, compare)
