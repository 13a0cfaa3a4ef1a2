"""Iteration resource schedulers: the original's math, lazily."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcgpj_async.engine import maximum_iters, split_into
from qcgpj_async.engine._itersched import plan


@pytest.mark.parametrize(
    ("total", "n", "pmin", "want"),
    [
        (4, 5, 1, [1, 1, 2, 2, 2]),  # the example
        (10, 10, 1, [1] * 10),
        (10, 20, 1, [1] * 20),
        (10, 5, 1, [2] * 5),
        (10, 3, 1, [3, 3, 4]),
        (11, 3, 1, [3, 4, 4]),
        (11, 3, 3, [3, 4, 4]),
        (11, 3, 5, [5, 6, 11]),
        (11, 4, 5, [5, 6, 5, 6]),
        (11, 4, 6, [11, 11, 11, 11]),
        (4, 1, 1, [4]),
    ],
)
def test_maximum_iters(total: int, n: int, pmin: int, want: list[int]) -> None:
    assert list(maximum_iters(total, n, pmin)) == want


def test_maximum_iters_min_above_total() -> None:
    with pytest.raises(ValueError, match="exceeds the total"):
        list(maximum_iters(4, 2, 5))


@pytest.mark.parametrize(
    ("total", "n", "params", "want"),
    [
        (10, 10, {}, [1] * 10),
        (10, 10, {"parts": 5}, [2] * 10),
        (10, 10, {"parts": 2}, [5] * 10),
        (10, 3, {}, [3, 3, 3]),
        (10, 4, {"parts": 3}, [3, 3, 3, 3]),
    ],
)
def test_split_into(total: int, n: int, params: dict[str, int], want: list[int]) -> None:
    assert list(split_into(total, n, params)) == want


def test_split_into_zero_is_an_error() -> None:
    with pytest.raises(ValueError, match="less than 1"):
        list(split_into(4, 5, {}))
    with pytest.raises(ValueError, match="less than 1"):
        list(split_into(4, 1, {"parts": 8}))


def test_plan_checks_at_once_and_is_lazy() -> None:
    with pytest.raises(ValueError, match="less than the minimum 3"):
        plan("split-into", {}, 10, 4, 3)  # 10 // 4 = 2 < 3
    with pytest.raises(ValueError):
        plan("maximum-iters", {}, 4, 2, 5)
    gen = plan("maximum-iters", {}, 4, 10**9, 1)  # no list of 10^9 amounts
    assert list(itertools.islice(gen, 6)) == [1, 1, 1, 1, 1, 1]


@given(st.integers(1, 64), st.integers(1, 200), st.integers(1, 8))
def test_maximum_iters_properties(total: int, n: int, pmin: int) -> None:
    if pmin > total:
        return
    got = list(maximum_iters(total, n, pmin))
    assert len(got) == n
    assert all(pmin <= g <= total for g in got)
    if n * pmin <= total:
        assert sum(got) == total  # one round shares everything
        assert max(got) - min(got) <= 1
