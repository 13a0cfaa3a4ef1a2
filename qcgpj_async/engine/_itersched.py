"""Iteration resource schedulers: how iterations of one job share the resources.

Both produce, lazily and in iteration order, the exact amount (cores or
nodes) each iteration gets, from A (the total amount), N (iterations) and
pmin (the minimum per iteration, default 1). A generator keeps a job with
10^6 iterations at O(1) memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ("maximum_iters", "plan", "split_into")


def split_into(total: int, iterations: int, params: Mapping[str, Any]) -> Iterator[int]:
    """Each iteration gets ``total // parts`` (parts: ``params['parts']`` or N).

    Raises:
        ValueError: when that is 0.
    """
    parts = int(params.get("parts", iterations))
    each = total // parts if parts > 0 else 0
    if each < 1:
        raise ValueError(f"split-into {parts} parts of {total} gives less than 1 per iteration")
    for _ in range(iterations):
        yield each


def maximum_iters(total: int, iterations: int, pmin: int = 1) -> Iterator[int]:
    """As many iterations at once as fit, each as big as possible.

    If all N fit at ``pmin``, iteration i gets ``rem // (N - i)`` of what is
    left; otherwise the iterations run in R = ceil(N / (A // pmin)) rounds and
    in round r, k = ceil(left / (R - r)) of them share A the same way.
    Example: N = 5, A = 4 gives 1, 1, 2, 2, 2.

    Raises:
        ValueError: when ``pmin`` exceeds the total.
    """
    if pmin > total:
        raise ValueError(f"maximum-iters: minimum {pmin} exceeds the total {total}")
    if iterations * pmin <= total:
        yield from _share(total, iterations)
        return
    per_round = total // pmin
    rounds = -(-iterations // per_round)
    left = iterations
    for r in range(rounds):
        k = -(-left // (rounds - r))
        yield from _share(total, k)
        left -= k


def _share(total: int, k: int) -> Iterator[int]:
    rem = total
    for i in range(k):
        each = rem // (k - i)
        rem -= each
        yield each


def plan(
    name: str, params: Mapping[str, Any], total: int, iterations: int, pmin: int
) -> Iterator[int]:
    """The per-iteration amounts of scheduler ``name``; validates eagerly.

    Raises:
        ValueError: the scheduler cannot give every iteration at least 1 (or pmin).
    """
    if name == "split-into":
        gen = split_into(total, iterations, params)
    else:
        gen = maximum_iters(total, iterations, pmin)
    first = next(gen)  # runs the checks now, at submit time
    if first < pmin:
        raise ValueError(f"{name} gives {first} per iteration, less than the minimum {pmin}")

    def chained() -> Iterator[int]:
        yield first
        yield from gen

    return chained()
