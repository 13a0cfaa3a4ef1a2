"""Read a service directory (journal, jobs.report, final_status.json) into a :class:`RunRecord`.

Works on a finished run, on a running one (the files grow; a torn last line
is skipped) and on one cut by SIGKILL (a journal without its ``close``). The
original's ``jobs.report`` (same JSON lines) can be read alone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from ._records import FINAL, JobRecord, RunRecord, TaskRecord

__all__ = ("ReportError", "find_service_dir", "load_run", "parse_allocation")

JOURNAL = "journal.jsonl"
REPORT = "jobs.report"
SERVICE_GLOB = ".qcgpjm-service-*"


class ReportError(ValueError):
    """A path that holds nothing a report can be made of."""


def find_service_dir(path: str | os.PathLike[str]) -> str:
    """The service directory ``path`` names: itself, or the newest one in a working directory.

    A file (a ``jobs.report`` or a ``journal.jsonl``) names itself.

    Raises:
        ReportError: no such path, or no service directory in it.
    """
    p = os.path.abspath(os.fspath(path))
    if os.path.isfile(p):
        return p
    if not os.path.isdir(p):
        raise ReportError(f"{p}: no such file or directory")
    if os.path.isfile(os.path.join(p, JOURNAL)) or os.path.isfile(os.path.join(p, REPORT)):
        return p
    found = [d for d in glob.glob(os.path.join(glob.escape(p), SERVICE_GLOB)) if os.path.isdir(d)]
    if not found:
        raise ReportError(
            f"{p}: neither a service directory (with {JOURNAL} or {REPORT}) nor a "
            f"working directory holding one ({SERVICE_GLOB})"
        )
    return max(found, key=lambda d: (os.stat(d).st_mtime_ns, d))


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
    t = TaskRecord(label, job, it, state, q, s, x, e)
    alloc = runtime.get("allocation")
    if alloc:
        t.alloc, t.acores = _allocation(str(alloc))
    code = runtime.get("exit_code")
    if code not in (None, ""):
        with contextlib.suppress(TypeError, ValueError):
            t.exit_code = int(code)
    return t


_CUT = b', "execution": '


def _json_lines(path: str, cut: bool = False) -> list[tuple[int, Any]]:
    """The objects of a JSON-lines file that may be growing (a torn last line is left out).

    One ``json.loads`` of the whole file as an array: a call per line costs more
    than the parsing at 100,000 lines. A bad line falls back to line by line, to
    name it. ``cut``: leave out a report line's ``execution`` and what follows it
    (``resources``, ``dependencies``: the journal has them), the bulk of the
    text, where no ``runtime`` follows. Inside a JSON string a quote is escaped,
    so ``, "execution": `` is found at the top level of the object only.

    Raises:
        ReportError: a line (not the last) that is not JSON.
    """
    numbered = [(n, line) for n, line, last in _lines(path) if not last and line.strip()]
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


def _read_report_json(path: str, run: RunRecord) -> dict[str, TaskRecord]:
    seconds: dict[str, float] = {}  # "YYYY-mm-ddTHH:MM:SS" -> POSIX seconds
    tasks: dict[str, TaskRecord] = {}
    final = FINAL
    for n, e in _json_lines(path, cut=True):
        try:
            name, state = str(e["name"]), str(e["state"])
            q = sc = x = end = None
            for h in e.get("history") or ():
                d = h["date"]
                base = seconds.get(d[:19])
                if base is None:
                    base = seconds[d[:19]] = _dt.datetime.fromisoformat(d[:19]).timestamp()
                when = base + float(d[19:]) if len(d) > 19 else base
                st = h["state"]
                if st == "QUEUED":
                    q = when if q is None else q
                elif st == "SCHEDULED":
                    sc = when if sc is None else sc
                elif st == "EXECUTING":
                    x = when if x is None else x
                elif st in final:
                    end = when
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ReportError(f"{path}: line {n} is not a report entry ({err!r})") from None
        msg = e.get("messages")
        its = e.get("iterations")
        if its is not None:  # the summary line of an iteration job: not a task
            run.jobs[name] = JobRecord(name, state, int(its.get("total", 0)), end, msg)
            continue
        if x is not None and end is None and state in final:
            end = x  # a history without its end: zero length, not unknown
        job, it = _split_label(name)
        t = tasks[name] = TaskRecord(name, job, it, state, q, sc, x, end, message=msg)
        runtime = e.get("runtime")
        if runtime:
            alloc = runtime.get("allocation")
            if alloc:
                t.alloc, t.acores = _allocation(str(alloc))
            code = runtime.get("exit_code")
            if code not in (None, ""):
                with contextlib.suppress(TypeError, ValueError):
                    t.exit_code = int(code)
        res = e.get("resources")
        if isinstance(res, dict):
            t.ncores = _cores_asked(res)
        if it is None:
            run.jobs[name] = JobRecord(name, state, None, end, msg)
    return tasks


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


class _Journal:
    """What a journal says, for reports (not for resumes: see runtime._journal)."""

    def __init__(self) -> None:
        self.header: dict[str, Any] = {}
        self.specs: dict[str, dict[str, Any]] = {}
        self.submitted: dict[str, float] = {}
        self.ends: dict[tuple[str, int | None], dict[str, Any]] = {}
        self.runs: dict[tuple[str, int | None], dict[str, Any]] = {}
        self.close: dict[str, Any] | None = None


def _read_journal(path: str) -> _Journal:
    j = _Journal()
    for n, rec in _json_lines(path):
        try:
            kind = rec["t"]
            if kind == "end":
                j.ends[(rec["job"], rec["it"])] = rec
            elif kind == "submit":
                for std in rec.get("jobs") or ():
                    j.specs[std["name"]] = std
                    j.submitted[std["name"]] = float(rec["time"])
            elif kind == "run":
                j.runs[(rec["job"], rec["it"])] = rec
            elif kind == "open" and n == 1:
                j.header = rec
            elif kind == "close":
                j.close = rec
            elif kind == "remove":
                for name in rec.get("names") or ():
                    j.specs.pop(name, None)
        except (KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{path}: line {n} is not a journal record ({err!r})") from None
    return j


def _alive(header: dict[str, Any]) -> bool | None:
    pid, host = header.get("pid"), header.get("host")
    if not isinstance(pid, int) or host is None:
        return None
    if host != os.uname().nodename:
        return None  # another host's service: cannot tell from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iterations(std: dict[str, Any]) -> tuple[int, int] | None:
    it = std.get("iteration")
    if not isinstance(it, dict):
        return None
    return int(it.get("start", 0)), int(it["stop"])


def load_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read a service directory, a working directory (its newest service directory), or
    one ``jobs.report`` (ours or the original's) into a :class:`RunRecord`.

    Raises:
        ReportError: nothing readable there, or a file that is not what its name says.
    """
    where = find_service_dir(path)
    run = RunRecord(path=where, now=time.time())
    if os.path.isfile(where):
        jpath = where if os.path.basename(where) == JOURNAL else None
        rpath = None if jpath else where
        sdir = os.path.dirname(where) if jpath else None
    else:
        sdir = where
        jpath = os.path.join(where, JOURNAL)
        rpath = _report_file(where)
        if not os.path.isfile(jpath):
            jpath = None
    tasks: dict[str, TaskRecord] = {}
    if rpath is not None and os.path.isfile(rpath):
        run.report_path = rpath
        tasks = _read_report(rpath, run)
    journal = _read_journal(jpath) if jpath else None
    if journal is not None:
        _merge_journal(run, journal, tasks)
    elif sdir is not None:
        _from_final_status(run, sdir)
    run.tasks = list(tasks.values())
    if not run.nodes:
        _infer_nodes(run)
    _ready_times(run, journal)
    return run


def _report_file(sdir: str) -> str | None:
    """The report of a service directory: jobs.report, else the one file that looks like it."""
    default = os.path.join(sdir, REPORT)
    if os.path.isfile(default):
        return default
    known = {JOURNAL, "service.log", "final_status.json", "address"}
    others = [
        f
        for f in sorted(os.listdir(sdir))
        if f not in known and os.path.isfile(os.path.join(sdir, f)) and not f.endswith(".tmp")
    ]
    return os.path.join(sdir, others[0]) if len(others) == 1 else None


def _read_report(path: str, run: RunRecord) -> dict[str, TaskRecord]:
    with open(path, "rb") as f:
        head = f.read(1)
    if head in (b"", b"{"):
        return _read_report_json(path, run)
    return _read_report_text(path, run)


def _merge_journal(run: RunRecord, j: _Journal, tasks: dict[str, TaskRecord]) -> None:
    h = j.header
    run.instance_id = str(h.get("id") or "")
    run.opened = h.get("time")
    nodes = h.get("nodes")
    if isinstance(nodes, dict) and nodes:
        run.nodes = {str(k): int(v) for k, v in nodes.items()}
    if j.close is not None:
        run.closed = float(j.close["time"])
        run.interrupted = int(j.close.get("interrupted") or 0)
        run.alive = False
    else:
        run.alive = _alive(h)
    for name, std in j.specs.items():
        asked = _cores_asked(std.get("resources") or {})
        deps = std.get("dependencies")
        after = [str(a) for a in (deps.get("after") or ())] if isinstance(deps, dict) else []
        its = _iterations(std)
        end = j.ends.get((name, None))
        job = run.jobs.get(name)
        if job is None:
            job = run.jobs[name] = JobRecord(name, "QUEUED", None)
        job.after = after
        if its is not None:
            job.total = its[1] - its[0]
            tasks.pop(name, None)  # the text report's block of the whole job: not a task
        if end is not None:
            job.state, job.ended = end["state"], float(end["time"])
            job.message = job.message or end.get("msg")
        elif job.state not in FINAL and (name, None) in j.runs:
            job.state = "EXECUTING"
        labels = [name] if its is None else [f"{name}:{i}" for i in range(*its)]
        for i, label in zip([None] if its is None else range(*its), labels, strict=True):
            t = tasks.get(label)
            if t is None:
                t = tasks[label] = TaskRecord(label, name, i, "QUEUED")
                e = j.ends.get((name, i)) or (end if its is not None and end else None)
                if e is not None:
                    t.state, t.ended = e["state"], float(e["time"])
                    t.exit_code = e.get("code") if e.get("it") == i else None
                    t.message = e.get("msg") if e.get("it") == i else None
                else:
                    r = j.runs.get((name, i))
                    if r is not None:
                        t.state = "EXECUTING"
                        t.started = t.scheduled = r.get("time")
                        t.alloc, t.acores = _allocation(str(r.get("alloc") or ""))
                    if job.state in FINAL:  # the job ended: an iteration not listed ended too
                        t.state, t.ended = job.state, job.ended
            if t.queued is None:
                t.queued = j.submitted.get(name)
            t.ncores = t.ncores or asked
            if t.state == "EXECUTING" and job.state not in FINAL:
                job.state = "EXECUTING"


def _from_final_status(run: RunRecord, sdir: str) -> None:
    try:
        with open(os.path.join(sdir, "final_status.json"), encoding="utf-8") as f:
            st = json.load(f)
    except (OSError, ValueError):
        return
    system = st.get("System") if isinstance(st, dict) else None
    if not isinstance(system, dict):
        return
    run.instance_id = str(system.get("InstanceId") or "")
    # Written at the end (the original's service directory has no journal): it ended.
    with contextlib.suppress(KeyError, TypeError, ValueError):
        run.opened = _dt.datetime.fromisoformat(str(system["Started"])).timestamp()
        run.closed = _dt.datetime.fromisoformat(str(system["Generated"])).timestamp()
        run.alive = False


def _infer_nodes(run: RunRecord) -> None:
    """Nodes as wide as the highest core id any task used (no journal said better)."""
    nodes: dict[str, int] = {}
    for t in run.tasks:
        for node, cores in t.alloc:
            if cores:
                nodes[node] = max(nodes.get(node, 0), max(cores) + 1)
    run.nodes = nodes
    run.nodes_inferred = True


def _ready_times(run: RunRecord, j: _Journal | None) -> None:
    """Each task's ``ready``: its queued time, or the end of the last job it waited for."""
    by_label = {t.name: t for t in run.tasks}
    for t in run.tasks:
        job = run.jobs.get(t.job)
        ready = t.queued
        for dep in job.after if job is not None else ():
            if "${it}" in dep:
                if t.it is None:
                    continue
                dep = dep.replace("${it}", str(t.it))
            d_job, d_it = _split_label(dep)
            if d_it is None:
                d = run.jobs.get(d_job)
                end = d.ended if d is not None else None
            else:
                dt = by_label.get(dep)
                end = dt.ended if dt is not None else None
            if end is None:  # not ended (yet): not ready
                ready = None
                break
            ready = end if ready is None else max(ready, end)
        if ready is not None and t.scheduled is not None:
            ready = min(ready, t.scheduled)
        t.ready = ready
