"""Queued starts: runs launched ahead of free cores (:attr:`Engine.lookahead`).

With ``lookahead`` N > 0, the engine launches up to N one-core runs more than
the free cores hold (``Launch.queued``), in the order free cores would go to
them. The executor queues them and starts each in the core of the run that
ends first, which it reports as that run's successors
(``Engine.exited(..., successors=)``): the next job starts without waiting
for the engine. Such a run is QUEUED, holding no cores, until then (a
:class:`Run` with ``queued`` set, counted in ``Engine.queued``, and, unless
cancelled, in ``Engine._ahead``, oldest first).

Free cores go to these runs first (:func:`promote`: a ``Launch.promote``
tells the executor to start one now). A queued run cancelled ends CANCELED at
once (:func:`cancel_ahead`); one the executor can no longer start goes back
to the queue in its place (:func:`requeue`), and then nothing is launched
ahead any more.

Only on one node (its cores are all alike), only jobs ``Engine.queueable``
accepts, and never past a job that needs more than one core: the jobs behind
it wait behind it, as they would for free cores.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from ..model import FINAL_STATES, JobState
from ._lifecycle import iteration_final, run_state, scheduled
from ._queue import enqueue, launchable, sched_req
from ._records import Job, Launch, Run
from ._resources import Allocation, NodePart, Requirement

if TYPE_CHECKING:
    from ._engine import Engine, Instruction

__all__ = ("ONE_CORE", "cancel_ahead", "launch_ahead", "promote", "requeue", "take_core")

Q, CANCEL = JobState.QUEUED, JobState.CANCELED
#: What a queued launch may ask for: one core, no consumables.
ONE_CORE = Requirement()


def promote(eng: Engine, now: float) -> None:
    """Free cores go to the runs queued in the executor first (one ended before they
    got there): the executor is told to start them now."""
    pool, ahead, out = eng.pool, eng._ahead, eng._out
    while ahead and pool.free_cores:
        run = ahead[next(iter(ahead))]
        core = take_core(eng, run, now)
        job = run.job
        out.append(Launch(run.id, job.name, run.index, job.spec, core, promote=True))


def launch_ahead(eng: Engine, now: float) -> None:
    """Queued launches of the earliest jobs, while they take one core each: what
    the next free cores would go to, in the order they would."""
    buckets = eng._buckets
    if eng._shape is None:
        eng._shape = Allocation((NodePart(eng.pool.nodes[0].name, (-1,)),))
    while eng.queued < eng.lookahead:
        best: Job | None = None
        for heap in buckets.values():
            while heap and not launchable(heap[0][1]):
                heapq.heappop(heap)[1].in_bucket = False
            if heap and (best is None or heap[0][1].seq < best.seq):
                best = heap[0][1]
        if best is None:
            return
        req = best.req if best.req is not None else sched_req(best)
        if req != ONE_CORE or best.sched is not None or not eng.queueable(best.spec):
            return  # it waits for free cores, and the jobs after it wait behind it
        eng.queued += 1
        run = eng._launch(best, eng._shape, now, queued=True)
        eng._ahead[run.id] = run


def take_core(eng: Engine, run: Run, now: float) -> Allocation:
    """A queued run takes one core: from the run that ended before it, or free."""
    alloc = eng.pool.allocate(ONE_CORE)
    assert alloc is not None, "a queued run and no core for it"
    run.allocation, run.queued = alloc, False
    eng.queued -= 1
    eng._ahead.pop(run.id, None)
    if run.state not in FINAL_STATES:
        scheduled(eng, run, now)
    return alloc


def cancel_ahead(eng: Engine, run: Run, now: float) -> None:
    """Cancel a run launched ahead, still queued: CANCELED now, as a queued job is.

    Its record stays in ``runs`` until the executor answers the :class:`Kill`
    (dropped from its queue; or started meanwhile, then killed, and ended):
    ``Engine.started`` and ``Engine.exited`` of it only settle its cores.
    """
    eng._kill(run, "cancel")
    eng._ahead.pop(run.id, None)
    run.finished = now
    job = run.job
    job.active -= 1
    run_state(eng, run, CANCEL, now)
    # Reported and shown as a job or iteration cancelled in the queue: it never ran.
    job.drop_run(run.index)
    iteration_final(eng, job, run.index, CANCEL, now)


def requeue(eng: Engine, run_id: int, now: float) -> list[Instruction]:
    """See :meth:`Engine.requeue`."""
    run = eng.runs[run_id]
    eng.lookahead = 0
    if not run.queued or run.state is not Q:  # it holds cores, or was cancelled
        return eng.exited(run_id, -1, now, "the executor could not start it")
    del eng.runs[run_id]
    eng.queued -= 1
    eng._ahead.pop(run_id, None)
    job = run.job
    job.active -= 1
    job.drop_run(run.index)
    if run.index is not None:
        if job.ready_its is not None:
            heapq.heappush(job.ready_its, run.index)
        else:
            job.cursor = min(job.cursor, run.index)
    enqueue(eng._buckets, job)
    eng._schedule(now)
    return eng._drain()
