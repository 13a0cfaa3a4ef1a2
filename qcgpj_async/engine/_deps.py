"""Dependencies: jobs waiting for jobs, for one iteration, or iteration by iteration.

A job's ``dependencies.after`` names jobs (``a``), iterations (``a:3``) or the
iteration of the same index (``a:${it}``, "paired"). A job waits, counting its
open job-level dependencies in ``Job.waiting``, in one of the engine's waiting
lists: ``_waiters`` (job name -> jobs), ``_it_waiters`` (job name -> iteration
-> jobs) and ``_paired_waiters`` (job name -> jobs paired with it). A paired
job's iteration i is ready once iteration i of every job it is paired with
succeeded (``Job.paired_left`` counts what is left, ``Job.ready_its`` is the
heap of ready iterations).

What became final is queued on ``Engine._finished`` by ``_lifecycle``;
:func:`propagate` tells the dependants, in a loop over that queue, never by
recursion: chains of dependants can be long. A dependency that did not
succeed omits its dependant (or, paired, the dependant's iteration).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import FINAL_STATES, JobState
from ._lifecycle import end_iteration, end_queued_iterations, job_state
from ._queue import enqueue
from ._records import STATES, Job
from ._submit import Dep, parse_dep

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ("omit", "propagate", "unwire", "wire")

Q, OK, OMIT = JobState.QUEUED, JobState.SUCCEED, JobState.OMITTED


def wire(eng: Engine, job: Job, deps: list[Dep], now: float) -> None:
    """Make ``job`` wait for its dependencies (or omit it), and queue it when none is open."""
    paired = []
    for name, index, is_paired in deps:
        target = eng.jobs[name]
        if is_paired:
            paired.append(target)
            continue
        state = target.state if index is None else eng.iteration_state(target, index)
        if state is OK:
            continue
        if state in FINAL_STATES:
            dep = name if index is None else f"{name}:{index}"
            omit(eng, job, f"dependency {dep} ended {state.value}", now)
            return
        job.waiting += 1
        if index is None:
            eng._waiters.setdefault(name, []).append(job)
        else:
            eng._it_waiters.setdefault(name, {}).setdefault(index, []).append(job)
    if paired:
        job.paired = tuple(t.name for t in paired)
        job.ready_its = []
        job.paired_left = {}
        for target in paired:
            eng._paired_waiters.setdefault(target.name, []).append(job)
        for target in paired:
            if target.it_states is not None or target.state in FINAL_STATES:
                for i in range(job.start, job.stop):
                    st = eng.iteration_state(target, i)
                    if st in FINAL_STATES:
                        _paired_done(eng, job, i, target.name, st, now)
    if job.waiting == 0:
        enqueue(eng._buckets, job)


def unwire(eng: Engine, job: Job) -> None:
    """Drop a removed job from the waiting lists it may still be in (when it was
    cancelled or omitted while waiting for other dependencies)."""
    for dep in job.spec.dependencies.after if job.spec.dependencies else ():
        name, index, _ = parse_dep(dep)
        lists = (
            eng._waiters.get(name),
            eng._paired_waiters.get(name),
            (eng._it_waiters.get(name) or {}).get(index) if index is not None else None,
        )
        for lst in lists:
            if lst is not None:
                lst[:] = [w for w in lst if w is not job]


def propagate(eng: Engine, now: float) -> None:
    """Tell the dependants of every job and iteration that became final.

    A loop over a queue, not recursion: chains of dependants can be long.
    """
    fin = eng._finished
    while fin:
        job, indexes = fin.popleft()
        name = job.name
        if indexes is not None:
            _tell_iterations(eng, job, indexes, now)
            continue
        if job.paired:
            for target in job.paired:
                lst = eng._paired_waiters.get(target)
                if lst is not None and job in lst:
                    lst[:] = [w for w in lst if w is not job]
        for w in eng._waiters.pop(name, ()):
            _dep_resolved(eng, w, name, job.state, now)
        if job.iterative:
            # Every iteration was told before the job (first in, first out).
            eng._paired_waiters.pop(name, None)
            eng._it_waiters.pop(name, None)


def _tell_iterations(eng: Engine, job: Job, indexes: Sequence[int], now: float) -> None:
    name = job.name
    its = job.it_states
    assert its is not None
    by_index = eng._it_waiters.get(name)
    paired = eng._paired_waiters.get(name)
    for i in indexes:
        state = STATES[its[i - job.start]]
        if by_index:
            for w in by_index.pop(i, ()):
                _dep_resolved(eng, w, f"{name}:{i}", state, now)
        if paired:
            for w in paired:
                _paired_done(eng, w, i, name, state, now)


def _dep_resolved(eng: Engine, job: Job, dep: str, state: JobState, now: float) -> None:
    if job.state in FINAL_STATES or job.waiting == 0:
        return
    if state is OK:
        job.waiting -= 1
        if job.waiting == 0:
            enqueue(eng._buckets, job)
    else:
        omit(eng, job, f"dependency {dep} ended {state.value}", now)


def omit(eng: Engine, job: Job, why: str, now: float) -> None:
    """``job`` (QUEUED) never runs: OMITTED, its queued iterations too."""
    job.waiting = 0
    job.messages = [*(job.messages or ()), why]
    if job.iterative:
        end_queued_iterations(eng, job, OMIT, now)
    else:
        job.done = job.failed = 1
    job_state(eng, job, OMIT, now)
    eng._finished.append((job, None))


def _paired_done(eng: Engine, job: Job, index: int, dep: str, state: JobState, now: float) -> None:
    """Iteration ``index`` of ``dep``, which ``job`` is paired with, ended ``state``."""
    if job.state in FINAL_STATES or not job.start <= index < job.stop:
        return
    if eng.iteration_state(job, index) is not Q:
        return
    left = job.paired_left
    assert left is not None and job.ready_its is not None
    if state is OK:
        n = left.get(index, len(job.paired)) - 1
        if n:
            left[index] = n
            return
        left.pop(index, None)
        heapq.heappush(job.ready_its, index)
        if job.waiting == 0:
            enqueue(eng._buckets, job)
    else:
        left.pop(index, None)
        job.messages = [
            *(job.messages or ()),
            f"iteration {index}: dependency {dep}:{index} ended {state.value}",
        ]
        end_iteration(eng, job, index, OMIT, now)
