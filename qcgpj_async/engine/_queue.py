"""The ready queue: one bucket per distinct requirement, a heap by arrival in each.

Jobs with the same requirement fit or don't fit together, so a scheduling
pass (``Engine._schedule``) only compares the heads of the buckets: the cost
of an event does not grow with the number of queued jobs. The key of a bucket
is the job's interned :class:`Requirement`; a job with an iteration scheduler
(whose iterations ask for different amounts) has a bucket of its own.

A job stays in its bucket while it has something to launch (an iteration
job: until its last iteration started); heads that have nothing left are
dropped lazily, as a pass meets them. Removed jobs still in a bucket are
dropped in one sweep (:func:`compact`) once they are a good share.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable

from ..model import FINAL_STATES, JobState
from ._records import CODE, Job
from ._resources import Requirement
from ._submit import requirement

__all__ = ("Buckets", "compact", "enqueue", "launchable", "next_index", "sched_req")

#: Bucket key -> heap of ``(seq, job)``.
Buckets = dict[Hashable, list[tuple[int, Job]]]

Q = JobState.QUEUED
QCODE = CODE[Q]


def enqueue(buckets: Buckets, job: Job) -> None:
    """Put ``job`` in its bucket, unless it is there, ended, or has nothing ready."""
    if job.in_bucket or job.state in FINAL_STATES:
        return
    if job.iterative and job.ready_its is not None and not job.ready_its:
        return
    job.in_bucket = True
    key = job.req if job.req is not None else ("job", job.seq)
    heapq.heappush(buckets.setdefault(key, []), (job.seq, job))


def next_index(job: Job) -> int | None:
    """The next iteration of ``job`` to start, or None (never for plain jobs)."""
    its = job.it_states
    if job.ready_its is not None:
        ready = job.ready_its
        while ready:
            i = ready[0]
            if its is None or its[i - job.start] == QCODE:
                return i
            heapq.heappop(ready)
        return None
    while job.cursor < job.stop:
        if its is None or its[job.cursor - job.start] == QCODE:
            return job.cursor
        job.cursor += 1
    return None


def launchable(job: Job) -> bool:
    """Whether ``job`` has something to launch now."""
    if job.state in FINAL_STATES or job.canceled or job.waiting:
        return False
    if not job.iterative:
        return job.active == 0 and job.state is Q
    return next_index(job) is not None


def sched_req(job: Job) -> Requirement:
    """What the next iteration of a job with an iteration scheduler asks for."""
    amount = job.peek
    if amount is None:
        assert job.sched is not None
        amount = job.peek = next(job.sched, 1)
    base = requirement(job.spec)
    if job.sched_nodes:
        return Requirement(base.cores_lo, base.cores_hi, amount, amount, base.crs)
    return Requirement(amount, amount, base.nodes_lo, base.nodes_hi, base.crs)


def compact(buckets: Buckets) -> None:
    """Drop the ended jobs from the buckets (and the buckets left empty)."""
    for key, heap in list(buckets.items()):
        live = []
        for entry in heap:
            if entry[1].state in FINAL_STATES:
                entry[1].in_bucket = False
            else:
                live.append(entry)
        if live:
            heapq.heapify(live)
            buckets[key] = live
        else:
            del buckets[key]
