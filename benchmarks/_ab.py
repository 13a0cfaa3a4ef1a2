"""A/B mode of ``run.py``: our code at two revisions, alternated round by round.

``run.py --ab REV_A,REV_B`` (or ``--compare REV``: REV against the working
tree) snapshots both trees of ``qcgpj_async/``, builds every workload once
per tree, and runs only our two variants of each, interleaved: A B, then
B A, then A B ... (the order flipped each round, as ``alternate`` rotates it,
so that neither side always runs right after the other's aftermath). The
peers (the original, xargs) do not run: what is compared is A with B, and a
B/A ratio taken within each round moves much less with the machine's load
than either time.

This module is the part that needs no process: parsing the revisions,
pairing the variants, and the table. Stdlib only.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

A, B = "A", "B"
"""Variant names of the two sides in a workload's group."""

T = TypeVar("T")


def parse_revs(ab: str | None, compare: str | None) -> tuple[str | None, str | None]:
    """The two revisions to compare; None stands for the working tree.

    ``ab``: ``"REV_A,REV_B"``; ``compare``: ``"REV"``, meaning REV (A) against
    the working tree (B).

    Raises:
        ValueError: neither or both given, or ``ab`` is not two revisions.
    """
    if (ab is None) == (compare is None):
        raise ValueError("give one of --ab REV_A,REV_B and --compare REV")
    if compare is not None:
        if not compare.strip():
            raise ValueError("--compare needs a revision")
        return compare.strip(), None
    assert ab is not None
    parts = [p.strip() for p in ab.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--ab takes two revisions, REV_A,REV_B: got {ab!r}")
    return parts[0], parts[1]


def pair_variants(a: Mapping[str, T], b: Mapping[str, T], ours: str) -> dict[str, T] | None:
    """The variants of one workload in A/B mode: ``ours`` of side A and of side B.

    ``a`` and ``b`` are the variants of the same workload built from each
    tree. None where the workload has no variant ``ours`` (nothing to compare).
    """
    if ours not in a or ours not in b:
        return None
    return {A: a[ours], B: b[ours]}


@dataclass(frozen=True)
class Spread:
    """median (min-max) of a series, and how many values it had."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> Spread | None:
        """None for an empty series."""
        if not xs:
            return None
        return cls(statistics.median(xs), min(xs), max(xs), len(xs))


@dataclass(frozen=True)
class ABRow:
    """One workload compared: A's and B's values, and B/A.

    ``ratio`` is B's median over A's; ``per_round`` the B/A of each round in
    which both sides succeeded (their median, min and max). Times: < 1 means
    B is faster.
    """

    workload: str
    a: Spread | None
    b: Spread | None
    ratio: float | None
    per_round: Spread | None
    failed: int


def ab_row(workload: str, a: Sequence[float | None], b: Sequence[float | None]) -> ABRow:
    """Compare two series of one workload, round by round (None: a failed run).

    Raises:
        ValueError: the series are not of the same length (rounds are paired).
    """
    if len(a) != len(b):
        raise ValueError(f"{workload}: {len(a)} rounds of A against {len(b)} of B")
    sa = Spread.of([x for x in a if x is not None])
    sb = Spread.of([x for x in b if x is not None])
    rounds = [y / x for x, y in zip(a, b, strict=True) if x is not None and y is not None and x > 0]
    ratio = sb.median / sa.median if sa and sb and sa.median > 0 else None
    failed = sum(x is None for x in a) + sum(y is None for y in b)
    return ABRow(workload, sa, sb, ratio, Spread.of(rounds), failed)


def _t(x: float) -> str:
    return f"{x * 1e3:.2f} ms" if x < 0.1 else f"{x:.3f} s"


def _spread_t(s: Spread | None) -> str:
    if s is None:
        return "FAILED"
    if s.n == 1:
        return _t(s.median)
    return f"{_t(s.median)} ({_t(s.lo)}-{_t(s.hi)})"


def ab_table(rows: Sequence[ABRow], name_a: str, name_b: str) -> str:
    """The markdown table of an A/B run; ``name_a``/``name_b`` say what A and B are."""
    head = [
        "workload",
        f"A: {name_a}",
        f"B: {name_b}",
        "B/A (medians)",
        "B/A per round: median (min-max)",
        "rounds",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pr = r.per_round
        rounds = f"{pr.n if pr else 0}" + (f", {r.failed} runs FAILED" if r.failed else "")
        lines.append(
            "| "
            + " | ".join(
                [
                    r.workload,
                    _spread_t(r.a),
                    _spread_t(r.b),
                    f"{r.ratio:.3f}" if r.ratio is not None else "-",
                    f"{pr.median:.3f} ({pr.lo:.3f}-{pr.hi:.3f})" if pr else "-",
                    rounds,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def ab_rows(
    views: Sequence[tuple[str, str, Callable[[str], list[float | None]]]],
    groups_run: Sequence[str],
) -> list[ABRow]:
    """Rows for the views whose group ran: ``(workload title, group key, series)``,
    where ``series(side)`` gives that side's values (``A`` or ``B``) round by round."""
    done = set(groups_run)
    return [ab_row(title, series(A), series(B)) for title, group, series in views if group in done]
