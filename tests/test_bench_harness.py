"""The benchmark harness's interleaving (benchmarks/_harness.py): who runs after whom."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _harness import Measurement, alternate


def _variants(order: list[str]) -> dict[str, object]:
    def make(name: str):  # type: ignore[no-untyped-def]
        def run() -> Measurement:
            order.append(name)
            return Measurement(wall_s=0.01 * len(order), returncode=0)
        return run
    return {n: make(n) for n in ("orig", "ours", "xargs")}


def test_rounds_rotate_so_no_variant_always_follows_the_same_one() -> None:
    order: list[str] = []
    results = alternate(_variants(order), 3, progress=False)  # type: ignore[arg-type]
    assert order == ["orig", "ours", "xargs", "ours", "xargs", "orig", "xargs", "orig", "ours"]
    # results stay per variant, in the order each ran
    assert [m.wall_s for m in results["ours"]] == [0.02, 0.04, 0.09]
    assert list(results) == ["orig", "ours", "xargs"]


def test_one_round_at_a_time_rotates_with_first_round() -> None:
    order: list[str] = []
    variants = _variants(order)
    for i in range(4):
        alternate(variants, 1, progress=False, first_round=i)  # type: ignore[arg-type]
    assert order[:3] == ["orig", "ours", "xargs"]
    assert order[3:6] == ["ours", "xargs", "orig"]
    assert order[6:9] == ["xargs", "orig", "ours"]
    assert order[9:] == ["orig", "ours", "xargs"]
