"""The text report and the ``--jobs`` table (formatting only: the numbers come from _stats)."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ._records import RunRecord, TaskRecord
from ._stats import Summary

__all__ = (
    "JOB_SORT_KEYS",
    "counts_line",
    "filter_tasks",
    "format_duration",
    "format_jobs",
    "format_summary",
    "sort_tasks",
    "task_dict",
)

WORDS = {
    "SUCCEED": "succeeded",
    "FAILED": "failed",
    "OMITTED": "omitted",
    "CANCELED": "cancelled",
    "EXECUTING": "running",
    "SCHEDULED": "starting",
    "QUEUED": "queued",
}


def format_duration(s: float | None) -> str:
    """Seconds for people: ``850 us``, ``12.3 ms``, ``4.56 s``, ``1:02:03``; ``-`` for none."""
    if s is None or math.isnan(s):
        return "-"
    if s < 0.001:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def counts_line(counts: dict[str, int], unit: str) -> str:
    """``6 iterations: 3 succeeded, 2 failed, 1 omitted`` (states with none left out)."""
    total = sum(counts.values())
    parts = [f"{n} {WORDS.get(s, s.lower())}" for s, n in counts.items() if n]
    return f"{total} {unit}{'' if total == 1 else 's'}: {', '.join(parts) or 'none'}"


def _when(t: float | None) -> str:
    return "-" if t is None else _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _status_word(run: RunRecord) -> str:
    if run.finished:
        return "finished" + (f", {run.interrupted} jobs interrupted" if run.interrupted else "")
    if run.alive:
        return "running"
    if run.alive is False:
        return "ended without closing its journal (killed?)"
    return "not closed (running elsewhere, or killed)"


def format_summary(run: RunRecord, s: Summary, dir_arg: str, failures: int = 10) -> str:
    """The text report."""
    rel = os.path.relpath(run.path)
    out = [f"report of {run.path if rel.startswith('..') else rel}"]
    if run.instance_id:
        out[-1] += f"  (pilot {run.instance_id}, {_status_word(run)})"
    out.append("  " + counts_line(s.jobs, "job"))
    out.append("  " + counts_line(s.iterations, "iteration") + "  (a plain job is one)")
    nodes = run.nodes
    inferred = " (as used: no journal)" if run.nodes_inferred else ""
    gpus = f", {s.gpus} GPUs" if s.gpus else ""
    out.append(
        f"resources   {len(nodes)} node{'s' * (len(nodes) != 1)}, {s.cores} cores{gpus}{inferred}"
    )
    out.append(
        f"pilot       {_when(run.opened)} .. {_when(run.closed)}  wall {format_duration(s.wall)}"
    )
    out.append(
        f"time        start overhead {format_duration(s.start_overhead)} + makespan "
        f"{format_duration(s.makespan)} + finish overhead {format_duration(s.finish_overhead)}"
    )
    u = s.usage
    out.append(
        f"utilisation {_pct(s.utilisation)} of the makespan ({_pct(s.utilisation_wall)} of the "
        f"wall time); efficiency {_pct(u.efficiency)}"
    )
    if s.gpus:
        out.append(
            f"gpus        {s.gpus}: utilisation {_pct(s.gpu_utilisation)} of the makespan "
            f"({s.gpu_busy:.6g} GPU-s held by runs)"
        )
    if u.allocated > 0:
        out.append(
            "core-s      "
            f"{u.allocated:.6g} allocated: busy {u.busy:.6g}, starting {u.starting:.3g}, idle "
            f"{u.idle_ready:.3g} with ready work waiting, {u.idle_deps:.3g} waiting on "
            f"dependencies, {u.idle_empty:.3g} with nothing queued"
        )
    out.extend(_per_node(s))
    out.append(
        f"{'':14}{'n':>8} {'mean':>9} {'min':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}"
    )
    for label, d in (
        ("queue wait", s.queue_wait),
        ("task start", s.task_start),
        ("run time", s.run_time),
    ):
        vals = " ".join(
            f"{format_duration(d[k]):>9}" for k in ("mean", "min", "p50", "p90", "p99", "max")
        )
        out.append(f"{label:14}{int(d['n']):>8} {vals}")
    bad = s.unsuccessful
    if bad:
        out.append(f"not succeeded: {len(bad)}")
        width = min(max(len(t.name) for t in bad[:failures]), 40) if failures else 0
        for t in bad[:failures]:
            out.append(f"  {t.state:9}{t.name:{width}}  {t.reason}")
        states = ",".join(sorted({t.state for t in bad}))
        more = f"first {failures} shown; " if len(bad) > failures else ""
        out.append(f"  ({more}all: qcgpj-async report {dir_arg} --jobs --state {states})")
    return "\n".join(out)


def _per_node(s: Summary) -> list[str]:
    items = sorted(s.per_node.items(), key=lambda kv: (kv[1][2], kv[0]))
    if len(items) <= 1:
        return []
    rows = items if len(items) <= 16 else items[:8] + items[-4:]
    out = [f"  {'node':<16}{'cores':>6} {'busy core-s':>12} {'utilisation':>12}"]
    for i, (node, (cores, busy, util)) in enumerate(rows):
        if len(items) > 16 and i == 8:
            out.append(f"  ... {len(items) - 12} more nodes")
        out.append(f"  {node:<16}{cores:>6} {busy:>12.6g} {_pct(util):>12}")
    return out


# == --jobs =======================================================================

JOB_SORT_KEYS = ("name", "state", "queued", "start", "end", "runtime", "wait", "node", "cores")


def _rt(t: TaskRecord) -> float | None:
    return t.ended - t.started if t.started is not None and t.ended is not None else None


def _wait(t: TaskRecord) -> float | None:
    return t.scheduled - t.queued if t.scheduled is not None and t.queued is not None else None


def filter_tasks(
    tasks: Iterable[TaskRecord],
    states: Sequence[str] = (),
    nodes: Sequence[str] = (),
    pattern: str | None = None,
) -> list[TaskRecord]:
    """Tasks in one of ``states`` (any when empty), on one of ``nodes``, named like
    ``pattern`` (shell-style, ``*`` and ``?``: the task's or its job's name)."""
    want = {s.upper() for s in states}
    on = set(nodes)
    out = []
    for t in tasks:
        if want and t.state not in want:
            continue
        if on and not on.intersection(t.nodes):
            continue
        if pattern and not (
            fnmatch.fnmatchcase(t.name, pattern) or fnmatch.fnmatchcase(t.job, pattern)
        ):
            continue
        out.append(t)
    return out


def sort_tasks(tasks: list[TaskRecord], key: str) -> list[TaskRecord]:
    """Sorted by ``key`` (one of :data:`JOB_SORT_KEYS`; ``-key`` descending); missing last."""
    desc = key.count("-") % 2 == 1  # --reverse with --sort=-x: ascending again
    k = key.lstrip("-")
    getters: dict[str, Any] = {
        "name": lambda t: (t.job, -1 if t.it is None else t.it),
        "state": lambda t: t.state,
        "queued": lambda t: t.queued,
        "start": lambda t: t.started,
        "end": lambda t: t.ended,
        "runtime": _rt,
        "wait": _wait,
        "node": lambda t: ",".join(t.nodes),
        "cores": lambda t: t.cores,
    }
    if k not in getters:
        raise ValueError(
            f"--sort {key!r}: one of {', '.join(JOB_SORT_KEYS)} (- in front: descending)"
        )
    get = getters[k]
    have = [t for t in tasks if get(t) is not None]
    missing = [t for t in tasks if get(t) is None]
    return sorted(have, key=get, reverse=desc) + missing


def task_dict(t: TaskRecord) -> dict[str, Any]:
    """One task as a JSON object (times in POSIX seconds)."""
    return {
        "name": t.name,
        "job": t.job,
        "it": t.it,
        "state": t.state,
        "queued": t.queued,
        "scheduled": t.scheduled,
        "started": t.started,
        "ended": t.ended,
        "runtime": _rt(t),
        "wait": _wait(t),
        "allocation": ",".join(f"{n}[{':'.join(map(str, c))}]" for n, c in t.alloc) or None,
        "cores": t.cores,
        "exit_code": t.exit_code,
        "reason": None if t.state == "SUCCEED" and not t.restored else t.reason,
        "restored": t.restored,
    }


def format_jobs(tasks: Sequence[TaskRecord], fmt: str) -> Iterable[str]:
    """Lines of the ``--jobs`` output: ``table`` or ``jsonl``."""
    if fmt == "jsonl":
        for t in tasks:
            yield json.dumps(task_dict(t))
        return
    width = min(max((len(t.name) for t in tasks), default=4), 40)
    yield (
        f"{'name':{width}}  {'state':9} {'start':23} {'runtime':>9} {'wait':>9} "
        f"{'exit':>4}  {'allocation':16} reason"
    )
    for t in tasks:
        d = task_dict(t)
        yield (
            f"{t.name:{width}}  {t.state:9} {_when(t.started):23} "
            f"{format_duration(d['runtime']):>9} {format_duration(d['wait']):>9} "
            f"{'-' if t.exit_code is None else t.exit_code:>4}  {d['allocation'] or '-':16} "
            f"{d['reason'] or ''}"
        ).rstrip()
