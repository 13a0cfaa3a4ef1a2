"""The scheduler: a synchronous state machine with no I/O and no clock.

Feed it what happened (:meth:`Engine.submit`, :meth:`~Engine.started`,
:meth:`~Engine.exited`, :meth:`~Engine.cancel`, :meth:`~Engine.tick`) with the
current time; each call returns the instructions that follow from it: the
commands to carry out (:class:`Launch`, :class:`Kill`) and the state changes
to publish (:class:`StateChanged`), in order.

The ready queue is a set of buckets, one per distinct requirement (see
``_queue``), so a scheduling pass only compares the heads of the buckets: the
cost of an event does not grow with the number of queued jobs. A pass picks,
among the heads that fit the free resources now, the earliest submitted,
which is the original's "walk the queue, skip what doesn't fit" (first fit
with backfill) without walking the queue.

This module holds the engine's state, its public surface, and the launch and
exit path; the rest lives with what it is about: ``_submit`` (checking a
batch), ``_deps`` (dependencies, paired iterations), ``_lifecycle`` (every
state change), ``_queue`` (the buckets), ``_lookahead`` (queued starts),
``_restore`` (resume), ``_compact`` (what ended jobs keep). Those are plain
functions taking the engine: no object and no extra call per job between.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from ..model import FINAL_STATES, JobNotFoundError, JobSpec, JobState
from ..model import InvalidTransition as _Invalid
from . import _restore
from ._compact import SharedParts, exit_message
from ._deps import propagate, unwire, wire
from ._lifecycle import (
    codes,
    end_iteration,
    end_queued_iterations,
    iteration_final,
    job_state,
    maybe_job_final,
    run_state,
    scheduled,
)
from ._lookahead import Ahead, cancel_ahead, launch_ahead, promote, requeue, settle
from ._queue import Buckets, compact, launchable, next_index, sched_req
from ._records import ENTRY, STATES, Job, Kill, Launch, Outcome, Run, StateChanged
from ._resources import Allocation, Requirement, ResourcePool
from ._submit import check_batch, register
from ._unfit import fail_unfit, lose_node

__all__ = ("Engine", "Instruction")

Instruction = Launch | Kill | StateChanged

Q, S, E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING
OK, FAIL, CANCEL, OMIT = JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED
_ENTRY_SIZE = ENTRY.size


class Engine:
    """Jobs, their iterations, the queue, dependencies, and the resource pool."""

    def __init__(self, pool: ResourcePool) -> None:
        """Create an engine scheduling onto ``pool``."""
        self.pool = pool
        self.jobs: dict[str, Job] = {}
        self.runs: dict[int, Run] = {}
        self.job_counts: dict[JobState, int] = dict.fromkeys(STATES, 0)
        self._seq = 0
        self._run_id = 0
        self._buckets: Buckets = {}
        self._waiters: dict[str, list[Job]] = {}  # job name -> jobs waiting for it
        self._it_waiters: dict[str, dict[int, list[Job]]] = {}  # job -> iteration -> waiting
        self._paired_waiters: dict[str, list[Job]] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._reqs: dict[Requirement, Requirement] = {}
        self._fit: dict[Requirement, bool] = {}
        self._dead_in_buckets = 0  # removed jobs still in a bucket
        # Jobs (index None) and iterations that became final and whose dependants
        # are still to be told, first in first out: a job's iterations are told
        # before the job itself, and no chain of dependants is ever walked by recursion.
        self._finished: deque[tuple[Job, Sequence[int] | None]] = deque()
        self._out: list[Instruction] = []
        self._shared = SharedParts()  # what ended jobs' specs share
        #: Launch up to this many one-core runs ahead of free cores (``Launch.queued``),
        #: each node its share: its executor starts each in a core of the run there that
        #: ends first (``exited(..., successors=)``). QUEUED until then. 0: never. Only
        #: jobs ``queueable`` accepts, never past a multi-core job. See ``_lookahead``.
        self.lookahead = 0
        self.queueable: Callable[[JobSpec], bool] = lambda spec: True
        self.queued = 0  # queued runs holding no cores yet (cancelled ones included)
        self._ahead = Ahead()

    # == public surface =========================================================

    @property
    def unfinished(self) -> int:
        """Number of jobs not in a final state."""
        c = self.job_counts
        return c[Q] + c[S] + c[E]

    def submit(self, specs: Sequence[JobSpec], now: float) -> list[Instruction]:
        """Accept a batch of validated jobs, all or none.

        Raises:
            JobDescriptionError: a name is taken, a dependency is unknown or
                cyclic, a job can never fit the resources, ...; lists every problem.
        """
        unfit: dict[str, str] = {}  # jobs that can never fit: they end FAILED, not the batch
        prepared = check_batch(self, specs, unfit)
        # Register the whole batch before wiring dependencies: a job may depend
        # on one listed after it in the same submit.
        jobs = [register(self, spec, req, sched, now) for spec, req, sched, _ in prepared]
        for job, (_, _, _, deps) in zip(jobs, prepared, strict=True):
            wire(self, job, deps, now)
        if unfit:  # once every dependant waits on them
            fail_unfit(self, jobs, unfit, now)
        propagate(self, now)
        self._schedule(now)
        return self._drain()

    def restore(
        self,
        specs: Sequence[JobSpec],
        outcomes: Mapping[str, Mapping[int | None, Outcome]],
        now: float,
    ) -> list[Instruction]:
        """Accept a batch of jobs that a previous run had partly done (resume).

        Like :meth:`submit`, but ``outcomes[name]`` says how the job (key None)
        and any of its iterations (key: index, in any order) already ended. A
        job that ended is registered in its final state and never launched;
        an iteration job goes on with exactly its iterations that have no
        outcome. Dependencies are judged on the restored states. Restored
        finals are published as :class:`StateChanged` at their recorded times.

        Raises:
            JobDescriptionError: as :meth:`submit`.
            ValueError: an outcome for an unknown job or iteration, or not final.
        """
        return _restore.restore(self, specs, outcomes, now)

    def started(self, run_id: int, now: float, pid: int | None = None) -> list[Instruction]:
        """A launched iteration's process is running.

        Raises:
            KeyError: unknown (or already ended) run.
        """
        run = self.runs[run_id]
        run.pid = pid
        if run.state in FINAL_STATES:  # cancelled while queued, started meanwhile: being killed
            return self._drain()
        run.started = now
        run_state(self, run, E, now)
        job = run.job
        if job.iterative and job.state is S:
            job_state(self, job, E, now)
        wt = job.spec.resources.wall_time
        if wt is not None:
            heapq.heappush(self._deadlines, (now + wt, run_id))
        return self._drain()

    def exited(
        self,
        run_id: int,
        exit_code: int,
        now: float,
        message: str | None = None,
        successors: Sequence[int] | None = None,
    ) -> list[Instruction]:
        """A launched iteration ended (or could not start: pass a message).

        Exit 0 after it started is SUCCEED; a cancel makes it CANCELED; the wall
        time or anything else makes it FAILED. ``successors``: the queued runs
        that the executor started in its cores (one core each).

        Raises:
            KeyError: unknown (or already ended) run.
        """
        run = self.runs.pop(run_id)
        settle(self, run, successors, now)
        if run.state in FINAL_STATES:  # cancelled while queued: it ended then
            self._schedule(now)
            return self._drain()
        dl = self._deadlines
        if len(dl) > 64 and len(dl) > 2 * len(self.runs):
            # Deadlines of runs that ended in time: drop them now rather than
            # at their expiry (a wall time of hours would keep them that long).
            dl[:] = [e for e in dl if e[1] in self.runs]
            heapq.heapify(dl)
        run.exit_code = exit_code
        run.finished = now
        job = run.job
        if run.kill_reason == "cancel":
            state = CANCEL
        elif run.kill_reason == "walltime":
            state = FAIL
            message = f"wall time exceeded (wt {job.spec.resources.wt})"
        elif exit_code == 0 and run.state is E:
            state = OK
        else:
            state = FAIL
            if message is None:
                message = exit_message(exit_code)
        if message is not None and state is not OK:
            run.message = message
            if not job.iterative:
                job.messages = [*(job.messages or ()), message]
        job.active -= 1
        run_state(self, run, state, now)
        iteration_final(self, job, run.index, state, now)
        propagate(self, now)
        self._schedule(now)
        return self._drain()

    def node_lost(self, node: str, now: float, why: str = "") -> list[Instruction]:
        """Node ``node`` is lost (its launch agent died or does not answer): its cores
        leave the pool for good, queued work goes to the other nodes, and a queued
        job that no longer fits anywhere ends FAILED (``why`` leads its message).
        Its runs still running are reported by ``exited`` as usual (their cores do
        not come back). A node unknown, or lost already, changes nothing.
        """
        lose_node(self, node, why or f"node {node} lost", now)
        propagate(self, now)
        self._schedule(now)
        return self._drain()

    def requeue(self, run_id: int, now: float, stop: bool = True) -> list[Instruction]:
        """A queued run (``Launch.queued``) that the executor can no longer start goes
        back to the queue, in its place; with ``stop`` (the executor takes no queued
        starts any more), nothing is launched ahead from now on.

        Raises:
            KeyError: unknown (or already ended) run.
        """
        return requeue(self, run_id, now, stop)

    def cancel(self, name: str, now: float) -> list[Instruction]:
        """Cancel a job (``name``) or one iteration (``name:it``).

        Queued work becomes CANCELED at once (its dependants OMITTED); running
        work gets a :class:`Kill` and becomes CANCELED when it exits.

        Raises:
            JobNotFoundError: no such job or iteration.
            InvalidTransition: it already ended.
        """
        job, index = self.lookup(name)
        if index is not None:
            self._cancel_iteration(job, index, now)
        elif job.state in FINAL_STATES or job.canceled:
            raise _Invalid(f"Job {name} already finished")
        elif not job.iterative:
            run = job.run_at(None)
            if run is None:
                job.done = job.failed = 1
                job_state(self, job, CANCEL, now)
                self._finished.append((job, None))
            elif run.queued and run.state is Q:
                cancel_ahead(self, run, now)
            else:
                self._kill(run, "cancel")
        else:
            job.canceled = True
            job.waiting = 0
            # Runs launched ahead (Launch.queued) are QUEUED too, but end as runs: first.
            for r in [r for r in job.runs.values() if r.queued and r.state is Q]:
                cancel_ahead(self, r, now)
            end_queued_iterations(self, job, CANCEL, now)
            for run in list(job.runs.values()):
                if run.state in (S, E):
                    self._kill(run, "cancel")
            maybe_job_final(self, job, now)
        propagate(self, now)
        self._schedule(now)
        return self._drain()

    def remove(self, name: str) -> None:
        """Forget a finished job (frees its memory; the name can be reused).

        The removed :class:`Job` record is detached: its ``runs`` is emptied.

        Raises:
            JobNotFoundError: no such job.
            InvalidTransition: the job has not finished.
        """
        job = self.jobs.get(name)
        if job is None:
            raise JobNotFoundError(name)
        if job.state not in FINAL_STATES:
            raise _Invalid(f"Job '{name}' not finished - can not be removed")
        del self.jobs[name]
        self.job_counts[job.state] -= 1
        job.clear_runs()
        unwire(self, job)
        if job.in_bucket:
            self._dead_in_buckets += 1
            dead = self._dead_in_buckets
            # Sweep the buckets once removed jobs are a good share of them.
            if dead > 64 and dead * 2 >= sum(len(h) for h in self._buckets.values()):
                compact(self._buckets)
                self._dead_in_buckets = 0

    def tick(self, now: float) -> list[Instruction]:
        """Kill what ran past its wall time by ``now``."""
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, run_id = heapq.heappop(dl)
            run = self.runs.get(run_id)
            if run is not None and run.state is E and run.kill_reason is None:
                self._kill(run, "walltime")
        return self._drain()

    def next_deadline(self) -> float | None:
        """When the earliest running wall time expires, or None."""
        dl = self._deadlines
        while dl:
            run = self.runs.get(dl[0][1])
            if run is not None and run.kill_reason is None:
                return dl[0][0]
            heapq.heappop(dl)
        return None

    def iteration_state(self, job: Job, index: int) -> JobState:
        """The state of iteration ``index`` of an iterative job."""
        if job.it_states is not None:
            return STATES[job.it_states[index - job.start]]
        if job.state in (OMIT, CANCEL):
            return job.state
        return Q

    def iteration_counts(self) -> dict[JobState, int]:
        """How many iterations (a plain job counts as one) are in each state."""
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs.values():
            if not job.iterative:
                counts[job.state] += 1
            elif job.it_states is not None:
                for i, s in enumerate(STATES):
                    counts[s] += job.it_states.count(i)
            else:
                counts[job.state if job.state in (OMIT, CANCEL) else Q] += job.total
        return counts

    def lookup(self, name: str) -> tuple[Job, int | None]:
        """The job of ``name`` or ``name:it``, and the iteration index.

        Raises:
            JobNotFoundError: unknown job, or iteration out of range.
        """
        base, sep, it = name.partition(":")
        job = self.jobs.get(base)
        if job is None:
            raise JobNotFoundError(base)
        if not sep:
            return job, None
        if not job.iterative or not it.isdigit() or not job.start <= int(it) < job.stop:
            raise JobNotFoundError(name, f"Unknown iteration {it} for job {base}")
        return job, int(it)

    # == instructions ===========================================================

    def _emit(self, job: str, index: int | None, state: JobState, now: float) -> None:
        self._out.append(StateChanged(job, index, state, now))

    def _drain(self) -> list[Instruction]:
        out, self._out = self._out, []
        return out

    def _kill(self, run: Run, reason: str) -> None:
        if run.kill_reason is None:
            run.kill_reason = reason
            self._out.append(Kill(run.id, run.job.name, run.index, reason))

    def _cancel_iteration(self, job: Job, index: int, now: float) -> None:
        state = self.iteration_state(job, index)
        if state in FINAL_STATES:
            raise _Invalid(f"Job {job.name}:{index} already finished")
        run = job.run_at(index)
        if run is not None and run.queued and run.state is Q:
            cancel_ahead(self, run, now)
        elif run is not None:
            self._kill(run, "cancel")
        else:
            end_iteration(self, job, index, CANCEL, now)

    # == scheduling =============================================================

    def _schedule(self, now: float) -> None:
        pool = self.pool
        buckets = self._buckets
        while pool.free_cores and buckets:
            best: Job | None = None
            best_req: Requirement | None = None
            empty = []
            for key, heap in buckets.items():
                while heap and not launchable(heap[0][1]):
                    heapq.heappop(heap)[1].in_bucket = False
                if not heap:
                    empty.append(key)
                    continue
                job = heap[0][1]
                if best is not None and job.seq > best.seq:
                    continue
                req = job.req if job.req is not None else sched_req(job)
                if pool.fits(req):
                    best, best_req = job, req
            for key in empty:
                del buckets[key]
            if best is None or best_req is None:
                break
            alloc = pool.allocate(best_req)
            assert alloc is not None
            self._launch(best, alloc, now)
        if self._ahead.freed:
            promote(self, now)
        if self.lookahead and buckets and (self._ahead.short or not self._ahead.shapes):
            launch_ahead(self, now)

    def _launch(self, job: Job, alloc: Allocation, now: float, queued: bool = False) -> Run:
        self._run_id += 1
        run_id = self._run_id
        if job.iterative:
            index: int | None = next_index(job)
            assert index is not None
            if job.ready_its is not None:
                heapq.heappop(job.ready_its)
            else:
                job.cursor += 1
            job.peek = None
            codes(job)
        else:
            index = None
        # A plain job has one run and both go through the same states at the same
        # times: the run reads the job's history (None).
        history = bytearray(job.packed_history[:_ENTRY_SIZE]) if job.iterative else None
        run = Run(run_id, job, index, alloc, Q, history)
        if queued:
            run.queued = True
        self.runs[run_id] = run
        if index is None:
            job.run_store = run
        else:
            job.add_run(run)
        job.active += 1
        if not queued:  # a queued run stays QUEUED until it takes cores
            scheduled(self, run, now)
        self._out.append(Launch(run_id, job.name, index, job.spec, alloc, queued))
        return run
