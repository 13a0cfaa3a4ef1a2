"""The benchmark harness's interleaving (benchmarks/_harness.py): who runs after whom."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent.parent / "benchmarks")
sys.path.insert(0, _BENCH)
try:
    from _harness import Measurement, alternate
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
