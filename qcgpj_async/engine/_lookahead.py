"""Queued starts: runs launched ahead of free cores (:attr:`Engine.lookahead`).

With ``lookahead`` N > 0, the engine launches one-core runs beyond the free
cores (``Launch.queued``), each into the start queue of one node: the
executor queues it there and starts it in a core of that node's run that ends
first, which it reports as that run's successors (``Engine.exited(...,
successors=)``): the next job starts without waiting for the engine. Such a
run is QUEUED, holding no cores, until then (a :class:`Run` with ``queued``
set, counted in ``Engine.queued``); the i-th successor of a run takes the
i-th core of its allocation (the core whose CPU the executor pinned it to).

Each node holds up to its share of N (N times its part of the pool's cores,
at least one), filled in turn, node after node, in the order free cores would
go to the jobs. A run that ends before the queued starts reached the executor
frees its cores: the scheduler starts the next jobs there, and what no job
takes goes to the runs queued on that node (:func:`promote`: a
``Launch.promote`` tells the executor to start one now). A
queued run cancelled ends CANCELED at once (:func:`cancel_ahead`); one the
executor can no longer start goes back to the queue in its place
(:func:`requeue`), and the lookahead stops where the executor takes no more
starts at all (a lost node's share is never filled again).

Only jobs ``Engine.queueable`` accepts, and never past a job that needs more
than one core: the jobs behind it wait behind it, as they would for free cores.
Several nodes need an executor with a queue per node (launch agents); the
runtime sets ``lookahead`` only then, or on one node.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import FINAL_STATES, JobState
from ._lifecycle import iteration_final, run_state, scheduled
from ._queue import enqueue, launchable, sched_req
from ._records import Job, Launch, Run
from ._resources import Allocation, NodePart, Requirement

if TYPE_CHECKING:
    from ._engine import Engine, Instruction

__all__ = (
    "ONE_CORE",
    "Ahead",
    "cancel_ahead",
    "launch_ahead",
    "promote",
    "requeue",
    "settle",
    "successors_take",
    "unqueue",
)

Q, CANCEL = JobState.QUEUED, JobState.CANCELED
#: What a queued launch may ask for: one core, no consumables.
ONE_CORE = Requirement()


class Ahead:
    """The runs queued on each node (by node index), and the room left in each queue."""

    __slots__ = ("by_node", "freed", "listed", "room", "shapes", "short")

    def __init__(self) -> None:
        #: Per node: its queued runs not cancelled, oldest first (set up at the first use).
        self.by_node: list[dict[int, Run]] = []
        #: Per node: how many more runs may be queued there.
        self.room: list[int] = []
        #: Nodes with room, in turn; ``listed``: whether each node is in ``short``.
        self.short: deque[int] = deque()
        self.listed = bytearray()
        #: Per node: the shape of a run queued there (one core, not known yet).
        self.shapes: list[Allocation] = []
        #: Nodes where cores were freed and runs are queued (see :func:`promote`).
        self.freed: list[int] = []

    def setup(self, eng: Engine) -> None:
        """Each node's share of ``eng.lookahead``."""
        pool = eng.pool
        total = max(pool.total_cores, 1)
        nodes = pool.nodes
        self.by_node = [{} for _ in nodes]
        usable = [0 if n.lost else pool.usable(n) for n in nodes]  # no core: no queue
        self.room = [min(u, 1) * max(1, eng.lookahead * u // total) for u in usable]
        self.listed = bytearray(r > 0 for r in self.room)
        self.short = deque(i for i, r in enumerate(self.room) if r > 0)
        self.shapes = [Allocation((NodePart(n.name, (-1,), None, n.index),)) for n in nodes]


def launch_ahead(eng: Engine, now: float) -> None:
    """Queued launches of the earliest jobs, while they take one core each: what
    the next free cores would go to, in the order they would, a node at a time."""
    ahead = eng._ahead
    if not ahead.shapes:
        ahead.setup(eng)
    short, room, nodes = ahead.short, ahead.room, eng.pool.nodes
    buckets = eng._buckets
    while short:
        i = short.popleft()
        if nodes[i].lost or room[i] <= 0:
            ahead.listed[i] = 0
            continue
        best: Job | None = None
        for heap in buckets.values():
            while heap and not launchable(heap[0][1]):
                heapq.heappop(heap)[1].in_bucket = False
            if heap and (best is None or heap[0][1].seq < best.seq):
                best = heap[0][1]
        if (
            best is None
            or best.sched is not None
            or (best.req if best.req is not None else sched_req(best)) != ONE_CORE
            or not eng.queueable(best.spec)
        ):
            short.appendleft(i)  # its turn comes first next time
            return  # it waits for free cores, and the jobs after it wait behind it
        room[i] -= 1
        if room[i]:
            short.append(i)
        else:
            ahead.listed[i] = 0
        eng.queued += 1
        run = eng._launch(best, ahead.shapes[i], now, queued=True)
        ahead.by_node[i][run.id] = run


def unqueue(eng: Engine, run: Run) -> None:
    """``run`` is no longer queued (it takes cores, or leaves): its node has room again."""
    run.queued = False
    eng.queued -= 1
    ahead = eng._ahead
    i = run.allocation.parts[0].index
    ahead.by_node[i].pop(run.id, None)
    ahead.room[i] += 1
    if not ahead.listed[i]:
        ahead.listed[i] = 1
        ahead.short.append(i)


def _takes(eng: Engine, run: Run, alloc: Allocation, now: float) -> None:
    unqueue(eng, run)
    run.allocation = alloc
    if run.state not in FINAL_STATES:
        scheduled(eng, run, now)


def settle(eng: Engine, run: Run, successors: Sequence[int] | None, now: float) -> None:
    """The cores of ``run``, which ended: to the queued runs the executor started in
    them (``successors``), else back to the pool, where the runs queued on its node
    take them first. A run that was still queued leaves its node's queue."""
    if run.queued:  # dropped before it took any cores
        unqueue(eng, run)
        return
    if successors:
        successors_take(eng, run, successors, now)
    else:
        eng.pool.release(run.allocation)
    if eng.queued:
        ahead = eng._ahead
        for part in run.allocation.parts:
            if ahead.by_node[part.index]:
                ahead.freed.append(part.index)


def successors_take(eng: Engine, ended: Run, successors: Sequence[int], now: float) -> None:
    """The queued runs the executor started in ``ended``'s cores take them: the i-th
    its i-th core; cores left (and one named for a run no longer queued: it was given
    free cores already) go back to the pool."""
    runs = eng.runs
    picked: list[tuple[int, Run]] = []
    for i, rid in enumerate(successors):
        nxt = runs.get(rid)
        if nxt is not None and nxt.queued:
            picked.append((i, nxt))
    allocs = eng.pool.hand_over(ended.allocation, [i for i, _ in picked])
    for (_, nxt), alloc in zip(picked, allocs, strict=True):
        _takes(eng, nxt, alloc, now)


def promote(eng: Engine, now: float) -> None:
    """Cores freed on nodes where runs are queued (a run ended before they reached
    the executor) and that no job took: the runs queued there take them, and the
    executor is told to start them now. (A job the scheduler starts in such a core
    costs one request; a queued run started now, two, and its place in the queue
    is filled again.)"""
    ahead, pool, out = eng._ahead, eng.pool, eng._out
    for i in ahead.freed:
        queued = ahead.by_node[i]
        while queued:
            core = pool.allocate_on(i)
            if core is None:
                break
            run = queued[next(iter(queued))]
            _takes(eng, run, core, now)
            job = run.job
            out.append(Launch(run.id, job.name, run.index, job.spec, core, promote=True))
    ahead.freed.clear()


def cancel_ahead(eng: Engine, run: Run, now: float) -> None:
    """Cancel a run launched ahead, still queued: CANCELED now, as a queued job is.

    Its record stays in ``runs`` until the executor answers the :class:`Kill`
    (dropped from its queue; or started meanwhile, then killed, and ended):
    ``Engine.started`` and ``Engine.exited`` of it only settle its cores.
    """
    eng._kill(run, "cancel")
    eng._ahead.by_node[run.allocation.parts[0].index].pop(run.id, None)
    run.finished = now
    job = run.job
    job.active -= 1
    run_state(eng, run, CANCEL, now)
    # Reported and shown as a job or iteration cancelled in the queue: it never ran.
    job.drop_run(run.index)
    iteration_final(eng, job, run.index, CANCEL, now)


def requeue(eng: Engine, run_id: int, now: float, stop: bool = True) -> list[Instruction]:
    """See :meth:`Engine.requeue`."""
    run = eng.runs[run_id]
    if stop:
        eng.lookahead = 0
    if not run.queued or run.state is not Q:  # it holds cores, or was cancelled
        return eng.exited(run_id, -1, now, "the executor could not start it")
    del eng.runs[run_id]
    unqueue(eng, run)
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
