"""Reading ``jobs.report`` (ours or the original's, JSON lines or text) into task records."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ._records import FINAL, JobRecord, RunRecord, TaskRecord

__all__ = ("ReportError", "parse_allocation")


class ReportError(ValueError):
    """A path that holds nothing a report can be made of."""


_ALLOC = re.compile(r"\s*([^\[\],\s]+)\[([0-9:\s]*)\]")


def parse_allocation(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``"n1[0:1],n2[3]"`` (ours and the original's syntax) as
    ``(("n1", (0, 1)), ("n2", (3,)))``."""
    return tuple(
        (m.group(1), tuple(int(c) for c in m.group(2).split(":") if c.strip()))
        for m in _ALLOC.finditer(text)
    )


class _Dates:
    """ISO dates (local time, as jobs.report writes them) to POSIX seconds, cached per second."""

    def __init__(self) -> None:
        self._sec: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        head, _, frac = text.partition(".")
        base = self._sec.get(head)
        if base is None:
            base = self._sec[head] = _dt.datetime.fromisoformat(head.replace(" ", "T")).timestamp()
        return base + (float("0." + frac) if frac else 0.0)


def _lines(path: str) -> Iterator[tuple[int, bytes, bool]]:
    """``(number, line, last)`` of a file that may be growing (a torn last line is marked)."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    torn = bool(lines and lines[-1])  # no newline at the end: being written
    if not torn:
        lines.pop()
    for n, line in enumerate(lines, 1):
        yield n, line, torn and n == len(lines)


def _split_label(label: str) -> tuple[str, int | None]:
    job, sep, it = label.rpartition(":")
    if sep and it.isdigit():
        return job, int(it)
    return label, None


_ALLOCS: dict[str, tuple[tuple[tuple[str, tuple[int, ...]], ...], int]] = {}


def _allocation(text: str) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], int]:
    """:func:`parse_allocation` and its number of cores, cached (allocations repeat)."""
    hit = _ALLOCS.get(text)
    if hit is None:
        if len(_ALLOCS) > 100_000:
            _ALLOCS.clear()
        alloc = parse_allocation(text)
        hit = _ALLOCS[text] = (alloc, sum(len(c) for _, c in alloc))
    return hit


def _task_from_history(
    label: str, state: str, history: list[tuple[str, float]], runtime: dict[str, Any]
) -> TaskRecord:
    job, it = _split_label(label)
    t = TaskRecord(label, job, it, state, *_stamps(history, state))
    _runtime(t, runtime)
    return t


def _stamps(
    history: Iterable[tuple[str, float]], state: str
) -> tuple[float | None, float | None, float | None, float | None]:
    """QUEUED, SCHEDULED, EXECUTING (the first of each) and end times of a history."""
    q = s = x = e = None
    for st, when in history:
        if st == "QUEUED":
            q = when if q is None else q
        elif st == "SCHEDULED":
            s = when if s is None else s
        elif st == "EXECUTING":
            x = when if x is None else x
        elif st in FINAL:
            e = when
    if x is not None and e is None and state in FINAL:
        e = x  # a history without its end: zero length, not unknown
    return q, s, x, e


def _runtime(t: TaskRecord, runtime: Mapping[str, Any]) -> None:
    """A report entry's ``runtime``: where it ran, its GPUs, its exit code."""
    gpus = runtime.get("gpus")
    if gpus:
        t.gpus = sum(len(ids.split(":")) for _, ids in _GPU_IDS.findall(str(gpus)) if ids)
    alloc = runtime.get("allocation")
    if alloc:
        t.alloc, t.acores = _allocation(str(alloc))
    code = runtime.get("exit_code")
    if code not in (None, ""):
        with contextlib.suppress(TypeError, ValueError):
            t.exit_code = int(code)


_CUT = b', "execution": '


def _json_lines(path: str, cut: bool = False) -> list[tuple[int, Any]]:
    """The objects of a JSON-lines file that may be growing (a torn last line is left out).

    Raises:
        ReportError: a line (not the last) that is not JSON.
    """
    numbered = [(n, line) for n, line, last in _lines(path) if not last and line.strip()]
    return _parse_lines(path, numbered, cut)


def _parse_lines(path: str, numbered: list[tuple[int, bytes]], cut: bool) -> list[tuple[int, Any]]:
    """``(number, object)`` of JSON lines.

    One ``json.loads`` of them all as an array: a call per line costs more than the
    parsing at 100,000 lines. A bad line falls back to line by line, to name it.
    ``cut``: leave out a report line's ``execution`` and what follows it
    (``resources``, ``dependencies``: the journal has them), the bulk of the text,
    where no ``runtime`` follows. Inside a JSON string a quote is escaped, so
    ``, "execution": `` is found at the top level of the object only.

    Raises:
        ReportError: a line that is not JSON.
    """
    if cut:
        for i, (n, line) in enumerate(numbered):
            k = line.find(_CUT)
            if k > 0 and line.find(b'"runtime": ', k) < 0:
                numbered[i] = (n, line[:k] + b"}")
    try:
        objs = json.loads(b"[" + b",".join(line for _, line in numbered) + b"]")
        return [(n, o) for (n, _), o in zip(numbered, objs, strict=True)]
    except ValueError:
        pass
    out = []
    for n, line in numbered:
        try:
            out.append((n, json.loads(line)))
        except ValueError as err:
            raise ReportError(f"{path}: line {n} is not JSON ({err})") from None
    return out


# The line of a task that ran and succeeded, as our jobs.report writes most lines
# (runtime/_service.py: run_json): read by one regex match, no JSON parsing. A name
# with a backslash (an escape), and every other line, go through json.loads.
_SUCCEEDED = re.compile(
    rb'\{"name": "([^"\\]*)", "state": "SUCCEED", "history": \[\{"state": "QUEUED", '
    rb'"date": "([^"]+)"\}, \{"state": "SCHEDULED", "date": "([^"]+)"\}, \{"state": '
    rb'"EXECUTING", "date": "([^"]+)"\}, \{"state": "SUCCEED", "date": "([^"]+)"\}\], '
    rb'"runtime": \{"allocation": "([^"\\]*)"'
)


def _read_report_json(path: str, run: RunRecord) -> dict[str, TaskRecord]:
    seconds: dict[str | bytes, float] = {}  # "YYYY-mm-ddTHH:MM:SS" -> POSIX seconds

    def when(d: str | bytes) -> float:
        base = seconds.get(d[:19])
        if base is None:
            head = d[:19]
            text = head.decode() if isinstance(head, bytes) else head
            base = seconds[head] = _dt.datetime.fromisoformat(text).timestamp()
        return base + float(d[19:]) if len(d) > 19 else base

    entries: list[tuple[int, re.Match[bytes] | None]] = []
    slow: list[tuple[int, bytes]] = []
    match = _SUCCEEDED.match
    for n, line, last in _lines(path):
        if last or not line.strip():
            continue
        m = match(line)
        if m is not None and b'"gpus": ' in line:  # the fast path reads no GPUs
            m = None
        entries.append((n, m))
        if m is None:
            slow.append((n, line))
    parsed = iter(_parse_lines(path, slow, cut=True))
    tasks: dict[str, TaskRecord] = {}
    jobs = run.jobs
    for n, m in entries:
        if m is not None:
            name = m.group(1).decode()
            job, it = _split_label(name)
            x = when(m.group(4))
            t = tasks[name] = TaskRecord(
                name, job, it, "SUCCEED", when(m.group(2)), when(m.group(3)), x, when(m.group(5))
            )
            t.alloc, t.acores = _allocation(m.group(6).decode())
            t.exit_code = 0
            if it is None:
                jobs[name] = JobRecord(name, "SUCCEED", None, t.ended)
            continue
        _, e = next(parsed)
        try:
            _task_from_json(e, tasks, run, when)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ReportError(f"{path}: line {n} is not a report entry ({err!r})") from None
    return tasks


#: ``n1[0:1],n2[3]`` of a run's GPU ids: ``(node, "0:1")`` pairs, ids split on ``:``.
_GPU_IDS = re.compile(r"([^,\[]+)\[([^\]]*)\]")


def _task_from_json(
    e: Any, tasks: dict[str, TaskRecord], run: RunRecord, when: Callable[[str], float]
) -> None:
    name, state = str(e["name"]), str(e["state"])
    history = [(h["state"], when(h["date"])) for h in e.get("history") or ()]
    msg = e.get("messages")
    its = e.get("iterations")
    if its is not None:  # the summary line of an iteration job: not a task
        end = next((at for st, at in reversed(history) if st in FINAL), None)
        run.jobs[name] = JobRecord(name, state, int(its.get("total", 0)), end, msg)
        return
    job, it = _split_label(name)
    t = tasks[name] = TaskRecord(name, job, it, state, *_stamps(history, state), message=msg)
    end = t.ended
    t.restored = bool(e.get("restored"))
    runtime = e.get("runtime")
    if runtime:
        _runtime(t, runtime)
    res = e.get("resources")
    if isinstance(res, dict):
        t.ncores = _cores_asked(res)
    if it is None:
        run.jobs[name] = JobRecord(name, state, None, end, msg)


_TEXT_HEAD = re.compile(r"^(\S.*) \((\w+)\)$")
_TEXT_HIST = re.compile(r"^\t(\d{4}-\d\d-\d\d[ T][0-9:.]+): (\w+)$")


def _read_report_text(path: str, run: RunRecord) -> dict[str, TaskRecord]:
    """The text format: ``label (STATE)``, then tab-indented dates and ``key: value`` lines."""
    dates = _Dates()
    tasks: dict[str, TaskRecord] = {}
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        m = _TEXT_HEAD.match(block[0])
        if m is None:
            return
        label, state = m.group(1), m.group(2)
        history: list[tuple[str, float]] = []
        runtime: dict[str, Any] = {}
        for line in block[1:]:
            h = _TEXT_HIST.match(line)
            if h:
                history.append((h.group(2), dates(h.group(1))))
            elif line.startswith("\t") and ": " in line:
                k, _, v = line[1:].partition(": ")
                runtime[k] = v
        t = _task_from_history(label, state, history, runtime)
        t.message = runtime.get("messages")
        tasks[label] = t
        if t.it is None:
            run.jobs[label] = JobRecord(label, state, None, t.ended, t.message)

    for _, raw, last in _lines(path):
        if last:
            break
        line = raw.decode("utf-8", "replace")
        if not line.startswith("\t"):
            flush()
            block = []
        block.append(line)
    flush()
    return tasks


def _cores_asked(res: dict[str, Any]) -> int:
    """Cores a job asks for (the least it accepts), from its standard ``resources``."""
    nc = res.get("numCores")
    if isinstance(nc, dict):
        for k in ("exact", "min", "max"):
            if isinstance(nc.get(k), int):
                return int(nc[k])
    if isinstance(nc, int):
        return nc
    return 1


def _read_report(path: str, run: RunRecord) -> dict[str, TaskRecord]:
    with open(path, "rb") as f:
        head = f.read(1)
    if head in (b"", b"{"):
        return _read_report_json(path, run)
    return _read_report_text(path, run)
