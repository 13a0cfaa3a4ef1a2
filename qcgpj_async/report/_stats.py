"""The numbers of a report: pure functions over task records (no I/O, no clock).

Definitions (docs/report.md says the same for users):

- *makespan*: first task start (EXECUTING) to last task end;
- *start / finish overhead* of the pilot: its start to the first task start,
  and the last task end to its end;
- *utilisation*: busy core-seconds (cores of EXECUTING tasks) over allocated
  core-seconds (all usable cores over the makespan), overall and per node;
- *efficiency*: busy core-seconds over the core-seconds when work was there
  to run: the allocation less the idle time when nothing was ready to start
  (every waiting task waited on a dependency, or nothing waited at all);
- *queue wait*: QUEUED to SCHEDULED; *start overhead* of a task: SCHEDULED to
  EXECUTING; *run time*: EXECUTING to its end.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._records import FINAL, RunRecord, TaskRecord

__all__ = (
    "Breakdown",
    "Summary",
    "Timeline",
    "breakdown",
    "core_seconds_by_node",
    "percentile",
    "percentiles",
    "state_counts",
    "summarize",
    "timeline",
)

STATES = ("QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED", "FAILED", "CANCELED", "OMITTED")
PCTS = (50.0, 90.0, 99.0)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted ``values``, linearly interpolated
    (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    k = (len(values) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def percentiles(values: Iterable[float], ps: Sequence[float] = PCTS) -> dict[str, float]:
    """``n``, ``mean``, ``min``, ``p<p>`` for each of ``ps``, ``max`` of ``values``."""
    v = sorted(values)
    out: dict[str, float] = {"n": float(len(v))}
    out["mean"] = sum(v) / len(v) if v else math.nan
    out["min"] = v[0] if v else math.nan
    for p in ps:
        out[f"p{p:g}"] = percentile(v, p)
    out["max"] = v[-1] if v else math.nan
    return out


def state_counts(states: Iterable[str]) -> dict[str, int]:
    """How many of each state (every state listed, in lifecycle order)."""
    c = Counter(states)
    out = {s: c.pop(s, 0) for s in STATES}
    out.update(c)  # a state this version does not know (a newer report)
    return out


def core_seconds_by_node(tasks: Iterable[TaskRecord], t0: float, t1: float) -> dict[str, float]:
    """Busy core-seconds of each node within ``[t0, t1]`` (EXECUTING to end)."""
    out: dict[str, float] = {}
    for t in tasks:
        if t.started is None or t.ended is None:
            continue
        d = min(t.ended, t1) - max(t.started, t0)
        if d <= 0:
            continue
        for node, cores in t.alloc:
            out[node] = out.get(node, 0.0) + d * len(cores)
    return out


@dataclass
class Breakdown:
    """Allocated core-seconds over a window, split by what the cores were doing."""

    allocated: float = 0.0
    busy: float = 0.0  # running a task
    starting: float = 0.0  # held by a task between SCHEDULED and EXECUTING
    idle_ready: float = 0.0  # idle while ready tasks waited (could have run)
    idle_deps: float = 0.0  # idle, the waiting tasks all waiting on dependencies
    idle_empty: float = 0.0  # idle, nothing waiting

    @property
    def efficiency(self) -> float:
        """Busy core-seconds over those when work was there to run (NaN: none)."""
        avail = self.allocated - self.idle_deps - self.idle_empty
        return self.busy / avail if avail > 0 else math.nan


@dataclass
class Timeline:
    """Averages per bin of ``width`` seconds from ``t0``: cores busy, tasks queued."""

    t0: float
    width: float
    busy: list[float]
    queued: list[float]


def _events(tasks: Iterable[TaskRecord]) -> list[tuple[float, int, int]]:
    """``(time, what, delta)``; what: 0 busy cores, 1 starting cores, 2 ready cores
    waiting, 3 tasks waiting on dependencies, 4 ready tasks waiting."""
    ev: list[tuple[float, int, int]] = []
    add = ev.append
    for t in tasks:
        c = t.cores or 1
        q, r, s, x, e = t.queued, t.ready, t.scheduled, t.started, t.ended
        wait_end = s if s is not None else (x if x is not None else e)
        if q is not None:
            dep_end = r if r is not None else wait_end
            if dep_end is not None and dep_end > q:
                add((q, 3, 1))
                add((dep_end, 3, -1))
            elif dep_end is None:
                add((q, 3, 1))
        if r is not None and (wait_end is None or wait_end > r):
            add((r, 2, c))
            add((r, 4, 1))
            if wait_end is not None:
                add((wait_end, 2, -c))
                add((wait_end, 4, -1))
        if s is not None and x is not None and x > s:
            add((s, 1, c))
            add((x, 1, -c))
        if x is not None and (e is None or e > x):  # an instant run is never busy
            add((x, 0, c))
            if e is not None:
                add((e, 0, -c))
    ev.sort()
    return ev


def breakdown(tasks: Sequence[TaskRecord], cores: int, t0: float, t1: float) -> Breakdown:
    """What ``cores`` cores did within ``[t0, t1]`` (see :class:`Breakdown`)."""
    b = Breakdown(allocated=cores * max(t1 - t0, 0.0))
    level = [0, 0, 0, 0, 0]
    prev = t0
    for when, what, delta in _events(tasks):
        if when > prev:
            _account(b, level, cores, prev, min(when, t1), t0)
            prev = max(when, prev)
        level[what] += delta
    if t1 > prev:
        _account(b, level, cores, prev, t1, t0)
    return b


def _account(b: Breakdown, level: list[int], cores: int, a: float, z: float, t0: float) -> None:
    a = max(a, t0)
    dt = z - a
    if dt <= 0:
        return
    busy, starting, ready = level[0], level[1], level[2]
    b.busy += busy * dt
    b.starting += starting * dt
    idle = max(cores - busy - starting, 0)
    used = min(idle, ready)
    b.idle_ready += used * dt
    rest = (idle - used) * dt
    if level[3] > 0:
        b.idle_deps += rest
    else:
        b.idle_empty += rest


def timeline(tasks: Sequence[TaskRecord], t0: float, t1: float, bins: int) -> Timeline:
    """Busy cores and queued tasks (ready or not), averaged over ``bins`` equal bins."""
    width = max(t1 - t0, 1e-9) / bins
    busy = [0.0] * bins
    queued = [0.0] * bins
    level = [0, 0, 0, 0, 0]
    prev = t0
    for when, what, delta in _events(tasks):
        if when > prev:
            _spread(busy, queued, level, prev, min(when, t1), t0, width)
            prev = max(when, prev)
        level[what] += delta
    if t1 > prev:
        _spread(busy, queued, level, prev, t1, t0, width)
    return Timeline(t0, width, [v / width for v in busy], [v / width for v in queued])


def _spread(
    busy: list[float],
    queued: list[float],
    level: list[int],
    a: float,
    z: float,
    t0: float,
    width: float,
) -> None:
    a = max(a, t0)
    if z <= a:
        return
    n = len(busy)
    b, q = level[0], level[3] + level[4]
    i = min(int((a - t0) / width), n - 1)
    while a < z and i < n:
        edge = t0 + (i + 1) * width
        seg = min(z, edge) - a
        busy[i] += b * seg
        queued[i] += q * seg
        a = min(z, edge)
        i += 1


@dataclass
class Summary:
    """The numbers of the text report (times in seconds; NaN where there is no data)."""

    jobs: dict[str, int]
    iterations: dict[str, int]
    cores: int
    wall: float
    makespan: float
    start_overhead: float
    finish_overhead: float
    first_start: float | None
    last_end: float | None
    utilisation: float
    utilisation_wall: float
    per_node: dict[str, tuple[int, float, float]]  # cores, busy core-s, utilisation
    usage: Breakdown
    queue_wait: dict[str, float]
    run_time: dict[str, float]
    task_start: dict[str, float]
    unsuccessful: list[TaskRecord] = field(default_factory=list)
    gpus: int = 0  # GPU devices of the pilot
    gpu_busy: float = 0.0  # GPU-seconds held by runs
    gpu_utilisation: float = math.nan  # gpu_busy over gpus x makespan


def summarize(run: RunRecord) -> Summary:
    """All the numbers of the text report of ``run``."""
    tasks = run.tasks
    starts = [t.started for t in tasks if t.started is not None]
    ends = [t.ended for t in tasks if t.ended is not None and t.started is not None]
    running = any(t.started is not None and t.ended is None for t in tasks)
    first = min(starts) if starts else None
    last = max(ends) if ends else None
    if running or (last is None and first is not None):
        last = max(last or 0.0, run.closed or run.now)
    pilot_end = run.closed if run.closed is not None else (run.now if run.alive else last)
    nan = math.nan
    makespan = (last - first) if first is not None and last is not None else nan
    start_ovh = first - run.opened if first is not None and run.opened is not None else nan
    finish_ovh = (
        pilot_end - last if last is not None and pilot_end is not None and run.closed else nan
    )
    wall_s = pilot_end - run.opened if pilot_end is not None and run.opened is not None else nan
    cores = run.total_cores
    per_node: dict[str, tuple[int, float, float]] = {}
    if first is not None and last is not None:
        usage = breakdown(tasks, cores, first, last)
        busy = core_seconds_by_node(tasks, first, last)
        for node, n in run.nodes.items():
            alloc = n * (last - first)
            per_node[node] = (n, busy.get(node, 0.0), busy.get(node, 0.0) / alloc if alloc else nan)
        wall_busy = sum(busy.values())  # every ended run lies within [first, last]
    else:
        usage, wall_busy = Breakdown(), 0.0
    util = usage.busy / usage.allocated if usage.allocated > 0 else nan
    util_wall = wall_busy / (cores * wall_s) if cores and wall_s > 0 else nan
    job_states = state_counts(j.state for j in run.jobs.values())
    gpus = sum(run.gpus.values())
    gpu_busy = sum(
        (t.ended - t.started) * t.gpus
        for t in tasks
        if t.gpus and t.started is not None and t.ended is not None
    )
    gpu_util = gpu_busy / (gpus * makespan) if gpus and makespan > 0 else nan
    return Summary(
        jobs=job_states,
        iterations=state_counts(t.state for t in tasks),
        cores=cores,
        wall=wall_s,
        makespan=makespan,
        start_overhead=start_ovh,
        finish_overhead=finish_ovh,
        first_start=first,
        last_end=last,
        utilisation=util,
        utilisation_wall=util_wall,
        per_node=per_node,
        usage=usage,
        queue_wait=percentiles(
            t.scheduled - t.queued
            for t in tasks
            if t.scheduled is not None and t.queued is not None
        ),
        run_time=percentiles(
            t.ended - t.started for t in tasks if t.started is not None and t.ended is not None
        ),
        task_start=percentiles(
            t.started - t.scheduled
            for t in tasks
            if t.started is not None and t.scheduled is not None
        ),
        unsuccessful=[t for t in tasks if t.state in FINAL and t.state != "SUCCEED"],
        gpus=gpus,
        gpu_busy=gpu_busy,
        gpu_utilisation=gpu_util,
    )
