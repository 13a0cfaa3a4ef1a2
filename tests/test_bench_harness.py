"""The benchmark harness (benchmarks/_harness.py): who runs after whom; how a run is waited for."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from procfs import alive

_BENCH = str(Path(__file__).resolve().parent.parent / "benchmarks")
sys.path.insert(0, _BENCH)
try:
    from _harness import Measurement, alternate, run_cmd
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

