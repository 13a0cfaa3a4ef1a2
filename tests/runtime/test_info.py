"""Formatting of the original's info fields."""

from __future__ import annotations

from qcgpj_async.runtime._info import format_rtime


def test_rtime_always_has_microseconds() -> None:
    # the original client parses rtime with '%H:%M:%S.%f': whole seconds need '.000000' too
    assert format_rtime(0) == "0:00:00.000000"
    assert format_rtime(3723.5) == "1:02:03.500000"
    assert format_rtime(0.098331) == "0:00:00.098331"
