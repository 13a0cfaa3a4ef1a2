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
import time
from typing import Any

from ._records import FINAL, JobRecord, RunRecord, TaskRecord
from ._reports import (
    ReportError,
    _allocation,
    _cores_asked,
    _json_lines,
    _read_report,
    _split_label,
    parse_allocation,
)

__all__ = ("ReportError", "find_service_dir", "load_run", "parse_allocation")

JOURNAL = "journal.jsonl"
REPORT = "jobs.report"
SERVICE_GLOB = ".qcgpjm-service-*"


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


def _merge_journal(run: RunRecord, j: _Journal, tasks: dict[str, TaskRecord]) -> None:
    h = j.header
    run.instance_id = str(h.get("id") or "")
    run.opened = h.get("time")
    nodes = h.get("nodes")
    if isinstance(nodes, dict) and nodes:
        run.nodes = {str(k): int(v) for k, v in nodes.items()}
    gpus = h.get("gpus")
    if isinstance(gpus, dict):
        run.gpus = {str(k): int(v) for k, v in gpus.items()}
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
