"""The scheduler: a synchronous state machine with no I/O and no clock.

Feed it what happened (:meth:`Engine.submit`, :meth:`~Engine.started`,
:meth:`~Engine.exited`, :meth:`~Engine.cancel`, :meth:`~Engine.tick`) with the
current time; each call returns the instructions that follow from it: the
commands to carry out (:class:`Launch`, :class:`Kill`) and the state changes
to publish (:class:`StateChanged`), in order.

The ready queue is a set of buckets, one per distinct requirement (a heap by
arrival order in each). Jobs with the same requirement fit or don't fit
together, so a scheduling pass only compares the heads of the buckets: the
cost of an event does not grow with the number of queued jobs. A pass picks,
among the heads that fit the free resources now, the earliest submitted,
which is the original's "walk the queue, skip what doesn't fit" (first fit
with backfill) without walking the queue.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from ..model import FINAL_STATES, JobDescriptionError, JobNotFoundError, JobSpec, JobState
from ..model import InvalidTransition as _Invalid
from . import _lifecycle, _restore
from ._compact import SharedParts, compact_runs, exit_message
from ._itersched import plan
from ._records import CODE, ENTRY, STATES, Job, Kill, Launch, Outcome, Run, StateChanged
from ._resources import Allocation, NodePart, Requirement, ResourcePool
from ._submit import find_cycles, parse_dep, requirement, sched_min_req
from ._unfit import fail_unfit, unfit_message

__all__ = ("Engine", "Instruction")

Instruction = Launch | Kill | StateChanged

Q, S, E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING
OK, FAIL, CANCEL, OMIT = JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED
QCODE = CODE[Q]
_pack = ENTRY.pack
_ENTRY_SIZE = ENTRY.size
_TO_CANCELED = bytes(CODE[CANCEL] if i == QCODE else i for i in range(256))
_TO_OMITTED = bytes(CODE[OMIT] if i == QCODE else i for i in range(256))
#: Up to this many iterations, a bulk cancel or omit publishes one event per iteration.
_EMIT_LIMIT = 100_000
#: At most this many iterations in one job (a byte of state each: 1 GB).
MAX_ITERATIONS = 1_000_000_000
#: What a queued launch may ask for: one core, no consumables.
_ONE_CORE = Requirement()


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
        self._buckets: dict[Hashable, list[tuple[int, Job]]] = {}
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
        #: in the order free cores would go to them: the executor queues them and starts
        #: each in a core of the run that ends first (``exited(..., successors=)``); free
        #: cores go to them first (``Launch.promote``). They are QUEUED until then. 0:
        #: never. Only on one node (its cores are all alike), only jobs ``queueable``
        #: accepts, never past a job that needs more than one core.
        self.lookahead = 0
        self.queueable: Callable[[JobSpec], bool] = lambda spec: True
        self.queued = 0  # queued runs holding no cores yet (cancelled ones included)
        self._ahead: dict[int, Run] = {}  # those not cancelled, oldest first
        self._shape: Allocation | None = None

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
        prepared = self._check_batch(specs, unfit)
        # Register the whole batch before wiring dependencies: a job may depend
        # on one listed after it in the same submit.
        jobs = [self._register(spec, req, sched, now) for spec, req, sched, _ in prepared]
        for job, (_, _, _, deps) in zip(jobs, prepared, strict=True):
            self._wire(job, deps, now)
        for job in jobs:  # once every dependant waits on it (unless already omitted)
            if job.name in unfit and job.state not in FINAL_STATES:
                fail_unfit(self, job, unfit[job.name], now)
        self._propagate(now)
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
        self._run_state(run, E, now)
        job = run.job
        if job.iterative and job.state is S:
            self._job_state(job, E, now)
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
        if run.queued:  # dropped before it took any cores
            run.queued = False
            self.queued -= 1
        else:
            self.pool.release(run.allocation)
        for succ in successors or ():  # they took its cores: one each
            nxt = self.runs.get(succ)
            if nxt is not None and nxt.queued:  # (else it was given free cores already)
                self._take_core(nxt, now)
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
        self._run_state(run, state, now)
        self._iteration_final(job, run.index, state, now)
        self._propagate(now)
        self._schedule(now)
        return self._drain()

    def requeue(self, run_id: int, now: float) -> list[Instruction]:
        """A queued run (``Launch.queued``) that the executor can no longer start goes
        back to the queue, in its place; nothing is launched ahead from now on.

        Raises:
            KeyError: unknown (or already ended) run.
        """
        run = self.runs[run_id]
        self.lookahead = 0
        if not run.queued or run.state is not Q:  # it holds cores, or was cancelled
            return self.exited(run_id, -1, now, "the executor could not start it")
        del self.runs[run_id]
        self.queued -= 1
        self._ahead.pop(run_id, None)
        job = run.job
        job.active -= 1
        if run.index is None:
            job.run_store = None
        else:
            if isinstance(job.run_store, dict):
                job.run_store.pop(run.index, None)
            if job.ready_its is not None:
                heapq.heappush(job.ready_its, run.index)
            else:
                job.cursor = min(job.cursor, run.index)
        self._enqueue(job)
        self._schedule(now)
        return self._drain()

    def cancel(self, name: str, now: float) -> list[Instruction]:
        """Cancel a job (``name``) or one iteration (``name:it``).

        Queued work becomes CANCELED at once (its dependants OMITTED); running
        work gets a :class:`Kill` and becomes CANCELED when it exits.

        Raises:
            JobNotFoundError: no such job or iteration.
            InvalidTransition: it already ended.
        """
        job, index = self._lookup(name)
        if index is not None:
            self._cancel_iteration(job, index, now)
        elif job.state in FINAL_STATES or job.canceled:
            raise _Invalid(f"Job {name} already finished")
        elif not job.iterative:
            run = job.run_at(None)
            if run is None:
                job.done = job.failed = 1
                self._job_state(job, CANCEL, now)
                self._finished.append((job, None))
            elif run.queued and run.state is Q:
                self._cancel_ahead(run, now)
            else:
                self._kill(run, "cancel")
        else:
            job.canceled = True
            job.waiting = 0
            # Runs launched ahead (Launch.queued) are QUEUED too, but end as runs: first.
            for r in [r for r in job.runs.values() if r.queued and r.state is Q]:
                self._cancel_ahead(r, now)
            self._end_queued_iterations(job, CANCEL, now)
            for run in list(job.runs.values()):
                if run.state in (S, E):
                    self._kill(run, "cancel")
            self._maybe_job_final(job, now)
        self._propagate(now)
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
        # Runs point at their job and the job at its runs: emptying ``runs``
        # breaks that cycle, so the memory is freed now, not at the next
        # full collection of the cyclic GC.
        job.run_store = None
        self._unwire(job)
        if job.in_bucket:
            self._dead_in_buckets += 1
            if self._dead_in_buckets > 64:
                self._compact_buckets()

    def _unwire(self, job: Job) -> None:
        """Drop a removed job from the waiting lists it may still be in (when it was
        cancelled or omitted while waiting for other dependencies)."""
        for dep in job.spec.dependencies.after if job.spec.dependencies else ():
            name, index, _ = parse_dep(dep)
            lists = (
                self._waiters.get(name),
                self._paired_waiters.get(name),
                (self._it_waiters.get(name) or {}).get(index) if index is not None else None,
            )
            for lst in lists:
                if lst is not None:
                    lst[:] = [w for w in lst if w is not job]

    def _compact_buckets(self) -> None:
        """Forget ended jobs still queued in the buckets, once they are a good share."""
        total = sum(len(h) for h in self._buckets.values())
        if self._dead_in_buckets * 2 < total:
            return
        for key, heap in list(self._buckets.items()):
            live = []
            for entry in heap:
                if entry[1].state in FINAL_STATES:
                    entry[1].in_bucket = False
                else:
                    live.append(entry)
            if live:
                heapq.heapify(live)
                self._buckets[key] = live
            else:
                del self._buckets[key]
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
        return self._lookup(name)

    # == submit =================================================================

    def _check_batch(
        self, specs: Sequence[JobSpec], unfit: dict[str, str] | None = None
    ) -> list[tuple[JobSpec, Requirement | None, Any, list[tuple[str, int | None, bool]]]]:
        # unfit: where jobs that can never fit go, by name, with why (else a problem)
        problems: list[str] = []
        batch: dict[str, JobSpec] = {}
        for spec in specs:
            if spec.name in self.jobs or spec.name in batch:
                problems.append(f"job {spec.name!r}: name: Job {spec.name} already exist")
            it = spec.iteration
            if it is not None and it.stop - it.start > MAX_ITERATIONS:
                # one byte of state per iteration, allocated at the first launch
                problems.append(
                    f"job {spec.name!r}: iteration: {it.stop - it.start} "
                    f"iterations, more than {MAX_ITERATIONS} in one job"
                )
            batch[spec.name] = spec
        out = []
        for spec in specs:
            prefix = f"job {spec.name!r}"
            if (
                problems
                and spec.iteration is not None
                and (spec.iteration.stop - spec.iteration.start > MAX_ITERATIONS)
            ):
                continue
            req, sched = None, None
            try:
                req, sched = self._requirement(spec)
            except ValueError as e:
                problems.append(f"{prefix}: resources: {e}")
            else:
                # from the spec, not req: a job with an iteration scheduler has no req
                crs = spec.resources.node_crs
                missing = set(crs) - self.pool.consumables if crs else None
                if missing:
                    problems.append(
                        f"{prefix}: resources.nodeCrs: no node has {', '.join(sorted(missing))}"
                    )
                elif not self._can_ever_fit(need := sched_min_req(spec) if req is None else req):
                    if unfit is None:
                        problems.append(f"Not enough resources for job {spec.name}")
                    else:
                        unfit[spec.name] = unfit_message(spec.name, need, self.pool)
            deps = []
            for dep in spec.dependencies.after if spec.dependencies else ():
                name, index, paired = parse_dep(dep)
                target = batch.get(name) or (self.jobs[name].spec if name in self.jobs else None)
                if target is None:
                    problems.append(f"{prefix}: dependencies.after: unknown job {name!r}")
                    continue
                if index is not None or paired:
                    it = target.iteration
                    if it is None:
                        problems.append(
                            f"{prefix}: dependencies.after: {dep!r}: job {name!r} has no iterations"
                        )
                        continue
                    if index is not None and not it.start <= index < it.stop:
                        problems.append(
                            f"{prefix}: dependencies.after: {dep!r}: job {name!r} "
                            f"has no iteration {index}"
                        )
                        continue
                    mine = spec.iteration
                    if paired and (mine is None or mine.start < it.start or mine.stop > it.stop):
                        problems.append(
                            f"{prefix}: dependencies.after: {dep!r}: needs iterations "
                            f"within {name!r}'s {it.start}..{it.stop - 1}"
                        )
                        continue
                deps.append((name, index, paired))
            out.append((spec, req, sched, deps))
        problems.extend(find_cycles(batch))
        if problems:
            raise JobDescriptionError(problems)
        return out

    def _requirement(
        self, spec: JobSpec, iterations: int | None = None
    ) -> tuple[Requirement | None, Any]:
        r = spec.resources
        for count, nodes in ((r.num_cores, False), (r.num_nodes, True)):
            if count is not None and count.scheduler is not None:
                pool = self.pool
                if not nodes:
                    total = pool.total_cores
                elif r.num_cores is None:  # whole nodes: the system core's node is never whole
                    total = sum(1 for n in pool.nodes if pool.usable(n) == n.total)
                else:
                    total = pool.total_nodes
                n = iterations or (len(spec.iteration) if spec.iteration else 1)
                s = count.scheduler
                return None, (plan(s.name, s.params, total, n, count.lower), nodes)
        return self._intern(requirement(spec, self.pool.largest_node)), None

    def _can_ever_fit(self, req: Requirement) -> bool:
        # The nodes never change: one answer per distinct requirement.
        fit = self._fit.get(req)
        if fit is None:
            fit = self._fit[req] = self.pool.can_ever_fit(req)
        return fit

    def _intern(self, req: Requirement) -> Requirement:
        # One object per distinct requirement: less memory, and the bucket
        # lookup finds an identical key at once.
        return self._reqs.setdefault(req, req)

    def _register(
        self, spec: JobSpec, req: Requirement | None, sched: Any, now: float, emit: bool = True
    ) -> Job:
        it = spec.iteration
        job = Job(spec.name, spec, self._seq, Q, bytearray(_pack(QCODE, now)), req)
        self._seq += 1
        if it is not None:
            job.iterative = True
            job.start, job.stop, job.cursor = it.start, it.stop, it.start
        if sched is not None:
            job.sched, job.sched_nodes = sched
        self.jobs[spec.name] = job
        self.job_counts[Q] += 1
        if emit:
            self._emit(job.name, None, Q, now)
        return job

    def _wire(self, job: Job, deps: list[tuple[str, int | None, bool]], now: float) -> None:
        """Make ``job`` wait for its dependencies (or omit it), and queue it when none is open."""
        paired = []
        for name, index, is_paired in deps:
            target = self.jobs[name]
            if is_paired:
                paired.append(target)
                continue
            state = target.state if index is None else self.iteration_state(target, index)
            if state is OK:
                continue
            if state in FINAL_STATES:
                dep = name if index is None else f"{name}:{index}"
                self._omit(job, f"dependency {dep} ended {state.value}", now)
                return
            job.waiting += 1
            if index is None:
                self._waiters.setdefault(name, []).append(job)
            else:
                self._it_waiters.setdefault(name, {}).setdefault(index, []).append(job)
        if paired:
            job.paired = tuple(t.name for t in paired)
            job.ready_its = []
            job.paired_left = {}
            for target in paired:
                self._paired_waiters.setdefault(target.name, []).append(job)
            for target in paired:
                if target.it_states is not None or target.state in FINAL_STATES:
                    for i in range(job.start, job.stop):
                        st = self.iteration_state(target, i)
                        if st in FINAL_STATES:
                            self._paired_done(job, i, target.name, st, now)
        if job.waiting == 0:
            self._enqueue(job)

    # == state changes ==========================================================

    def _emit(self, job: str, index: int | None, state: JobState, now: float) -> None:
        self._out.append(StateChanged(job, index, state, now))

    def _drain(self) -> list[Instruction]:
        out, self._out = self._out, []
        return out

    def _job_state(self, job: Job, state: JobState, now: float) -> None:
        old = job.state
        if state not in _lifecycle.ALLOWED[old]:
            _lifecycle.check(f"job {job.name!r}", old, state)
        job.state = state
        h = job.packed_history
        h += _pack(CODE[state], now)  # a bytearray while the job lives: in place
        if state in FINAL_STATES:
            # What an ended job keeps is compact: bytes, and its runs in columns.
            job.packed_history = bytes(h)
            if job.iterative:
                compact_runs(job)
            self._shared.share(job)
        counts = self.job_counts
        counts[old] -= 1
        counts[state] += 1
        self._emit(job.name, None, state, now)

    def _run_state(self, run: Run, state: JobState, now: float) -> None:
        old = run.state
        if state not in _lifecycle.ALLOWED[old]:
            _lifecycle.check(f"job {run.job.name!r} iteration {run.index}", old, state)
        run.state = state
        job = run.job
        if job.iterative:
            h = run.packed_history
            assert h is not None
            h += _pack(CODE[state], now)  # a bytearray while the run lives: in place
            if state in FINAL_STATES:
                run.packed_history = bytes(h)
            assert job.it_states is not None
            job.it_states[run.index - job.start] = CODE[state]  # type: ignore[operator]
            self._emit(job.name, run.index, state, now)
        else:
            self._job_state(job, state, now)  # the job's history is its run's

    def _its(self, job: Job) -> bytearray:
        if job.it_states is None:
            job.it_states = bytearray(job.total)
        return job.it_states

    def _iteration_final(self, job: Job, index: int | None, state: JobState, now: float) -> None:
        """Bookkeeping once iteration ``index`` (None: the plain job) is final."""
        job.done += 1
        if state is not OK:
            job.failed += 1
        if not job.iterative:
            self._finished.append((job, None))
            return
        assert index is not None
        self._finished.append((job, (index,)))
        self._maybe_job_final(job, now)

    def _maybe_job_final(self, job: Job, now: float) -> None:
        if job.done < job.total or job.active or job.state in FINAL_STATES:
            return
        if job.canceled:
            final = CANCEL
        elif job.failed == 0:
            final = OK
        else:
            final = FAIL
        self._job_state(job, final, now)
        self._finished.append((job, None))

    def _propagate(self, now: float) -> None:
        """Tell the dependants of every job and iteration that became final.

        A loop over a queue, not recursion: chains of dependants can be long.
        """
        fin = self._finished
        while fin:
            job, indexes = fin.popleft()
            name = job.name
            if indexes is not None:
                self._tell_iterations(job, indexes, now)
                continue
            if job.paired:
                for target in job.paired:
                    lst = self._paired_waiters.get(target)
                    if lst is not None and job in lst:
                        lst[:] = [w for w in lst if w is not job]
            for w in self._waiters.pop(name, ()):
                self._dep_resolved(w, name, job.state, now)
            if job.iterative:
                # Every iteration was told before the job (first in, first out).
                self._paired_waiters.pop(name, None)
                self._it_waiters.pop(name, None)

    def _tell_iterations(self, job: Job, indexes: Sequence[int], now: float) -> None:
        name = job.name
        its = job.it_states
        assert its is not None
        by_index = self._it_waiters.get(name)
        paired = self._paired_waiters.get(name)
        for i in indexes:
            state = STATES[its[i - job.start]]
            if by_index:
                for w in by_index.pop(i, ()):
                    self._dep_resolved(w, f"{name}:{i}", state, now)
            if paired:
                for w in paired:
                    self._paired_done(w, i, name, state, now)

    def _has_iteration_dependants(self, job: Job) -> bool:
        return bool(self._it_waiters.get(job.name) or self._paired_waiters.get(job.name))

    def _end_queued_iterations(self, job: Job, state: JobState, now: float) -> None:
        """Every still-queued iteration of ``job`` ends ``state`` (CANCELED or OMITTED) at once.

        One byte per iteration is rewritten; per-iteration events and
        notifications are only made when someone can see them (up to
        ``_EMIT_LIMIT`` iterations, or dependants waiting on iterations).
        """
        its = self._its(job)
        n = its.count(QCODE)
        if n == 0:
            return
        tell = self._has_iteration_dependants(job)
        emit = len(its) <= _EMIT_LIMIT
        queued = [job.start + i for i, c in enumerate(its) if c == QCODE] if tell or emit else []
        its[:] = its.translate(_TO_CANCELED if state is CANCEL else _TO_OMITTED)
        job.done += n
        job.failed += n
        if job.paired_left is not None:
            job.paired_left.clear()
        if emit:
            for i in queued:
                self._emit(job.name, i, state, now)
        if tell:
            self._finished.append((job, queued))

    def _dep_resolved(self, job: Job, dep: str, state: JobState, now: float) -> None:
        if job.state in FINAL_STATES or job.waiting == 0:
            return
        if state is OK:
            job.waiting -= 1
            if job.waiting == 0:
                self._enqueue(job)
        else:
            self._omit(job, f"dependency {dep} ended {state.value}", now)

    def _omit(self, job: Job, why: str, now: float) -> None:
        job.waiting = 0
        job.messages = [*(job.messages or ()), why]
        if job.iterative:
            self._end_queued_iterations(job, OMIT, now)
        else:
            job.done = job.failed = 1
        self._job_state(job, OMIT, now)
        self._finished.append((job, None))

    def _paired_done(self, job: Job, index: int, dep: str, state: JobState, now: float) -> None:
        if job.state in FINAL_STATES or not job.start <= index < job.stop:
            return
        if self.iteration_state(job, index) is not Q:
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
                self._enqueue(job)
        else:
            left.pop(index, None)
            self._its(job)[index - job.start] = CODE[OMIT]
            self._emit(job.name, index, OMIT, now)
            job.done += 1
            job.failed += 1
            job.messages = [
                *(job.messages or ()),
                f"iteration {index}: dependency {dep}:{index} ended {state.value}",
            ]
            self._finished.append((job, (index,)))
            self._maybe_job_final(job, now)

    # == cancel =================================================================

    def _lookup(self, name: str) -> tuple[Job, int | None]:
        base, sep, it = name.partition(":")
        job = self.jobs.get(base)
        if job is None:
            raise JobNotFoundError(base)
        if not sep:
            return job, None
        if not job.iterative or not it.isdigit() or not job.start <= int(it) < job.stop:
            raise JobNotFoundError(name, f"Unknown iteration {it} for job {base}")
        return job, int(it)

    def _take_core(self, run: Run, now: float) -> Allocation:
        """A queued run takes one core: from the run that ended before it, or free."""
        alloc = self.pool.allocate(_ONE_CORE)
        assert alloc is not None, "a queued run and no core for it"
        run.allocation, run.queued = alloc, False
        self.queued -= 1
        self._ahead.pop(run.id, None)
        if run.state not in FINAL_STATES:
            self._scheduled(run, now)
        return alloc

    def _cancel_ahead(self, run: Run, now: float) -> None:
        """Cancel a run launched ahead, still queued: CANCELED now, as a queued job is.

        Its record stays in ``runs`` until the executor answers the :class:`Kill`
        (dropped from its queue; or started meanwhile, then killed, and ended):
        :meth:`started` and :meth:`exited` of it only settle its cores.
        """
        self._kill(run, "cancel")
        self._ahead.pop(run.id, None)
        run.finished = now
        job = run.job
        job.active -= 1
        self._run_state(run, CANCEL, now)
        # Reported and shown as a job or iteration cancelled in the queue: it never ran.
        if run.index is None:
            job.run_store = None
        elif isinstance(job.run_store, dict):
            job.run_store.pop(run.index, None)
        self._iteration_final(job, run.index, CANCEL, now)

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
            self._cancel_ahead(run, now)
            return
        if run is not None:
            self._kill(run, "cancel")
            return
        self._its(job)[index - job.start] = CODE[CANCEL]
        self._emit(job.name, index, CANCEL, now)
        job.done += 1
        job.failed += 1
        if job.paired_left is not None:
            job.paired_left.pop(index, None)
        self._finished.append((job, (index,)))
        self._maybe_job_final(job, now)

    # == scheduling =============================================================

    def _bucket_key(self, job: Job) -> Hashable:
        return job.req if job.req is not None else ("job", job.seq)

    def _enqueue(self, job: Job) -> None:
        if job.in_bucket or job.state in FINAL_STATES:
            return
        if job.iterative and job.ready_its is not None and not job.ready_its:
            return
        job.in_bucket = True
        heapq.heappush(self._buckets.setdefault(self._bucket_key(job), []), (job.seq, job))

    def _next_index(self, job: Job) -> int | None:
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

    def _launchable(self, job: Job) -> bool:
        if job.state in FINAL_STATES or job.canceled or job.waiting:
            return False
        if not job.iterative:
            return job.active == 0 and job.state is Q
        return self._next_index(job) is not None

    def _sched_req(self, job: Job) -> Requirement:
        extra = job.attrs_extra if job.attrs_extra is not None else {}
        job.attrs_extra = extra
        if "peek" not in extra:
            assert job.sched is not None
            extra["peek"] = next(job.sched, 1)
        amount: int = extra["peek"]
        base = requirement(job.spec)
        if job.sched_nodes:
            return Requirement(base.cores_lo, base.cores_hi, amount, amount, base.crs)
        return Requirement(amount, amount, base.nodes_lo, base.nodes_hi, base.crs)

    def _schedule(self, now: float) -> None:
        pool = self.pool
        buckets = self._buckets
        ahead = self._ahead
        while ahead and pool.free_cores:
            # Free cores and runs queued in the executor (one ended before they got
            # there): they are first in line; the executor is told to start them now.
            run = ahead[next(iter(ahead))]
            core = self._take_core(run, now)
            job = run.job
            self._out.append(Launch(run.id, job.name, run.index, job.spec, core, promote=True))
        while pool.free_cores and buckets:
            best: Job | None = None
            best_req: Requirement | None = None
            empty = []
            for key, heap in buckets.items():
                while heap and not self._launchable(heap[0][1]):
                    heapq.heappop(heap)[1].in_bucket = False
                if not heap:
                    empty.append(key)
                    continue
                job = heap[0][1]
                if best is not None and job.seq > best.seq:
                    continue
                req = job.req if job.req is not None else self._sched_req(job)
                if pool.fits(req):
                    best, best_req = job, req
            for key in empty:
                del buckets[key]
            if best is None or best_req is None:
                break
            alloc = pool.allocate(best_req)
            assert alloc is not None
            self._launch(best, alloc, now)
        if self.queued < self.lookahead and buckets and len(pool.nodes) == 1:
            self._launch_ahead(now)

    def _launch_ahead(self, now: float) -> None:
        """Queued launches of the earliest jobs, while they take one core each: what
        the next free cores would go to, in the order they would."""
        buckets = self._buckets
        if self._shape is None:
            self._shape = Allocation((NodePart(self.pool.nodes[0].name, (-1,)),))
        while self.queued < self.lookahead:
            best: Job | None = None
            for heap in buckets.values():
                while heap and not self._launchable(heap[0][1]):
                    heapq.heappop(heap)[1].in_bucket = False
                if heap and (best is None or heap[0][1].seq < best.seq):
                    best = heap[0][1]
            if best is None:
                return
            req = best.req if best.req is not None else self._sched_req(best)
            if req != _ONE_CORE or best.sched is not None or not self.queueable(best.spec):
                return  # it waits for free cores, and the jobs after it wait behind it
            self.queued += 1
            run = self._launch(best, self._shape, now, queued=True)
            self._ahead[run.id] = run

    def _launch(self, job: Job, alloc: Allocation, now: float, queued: bool = False) -> Run:
        self._run_id += 1
        run_id = self._run_id
        if job.iterative:
            index: int | None = self._next_index(job)
            assert index is not None
            if job.ready_its is not None:
                heapq.heappop(job.ready_its)
            else:
                job.cursor += 1
            if job.attrs_extra is not None:
                job.attrs_extra.pop("peek", None)
            self._its(job)
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
            self._scheduled(run, now)
        self._out.append(Launch(run_id, job.name, index, job.spec, alloc, queued))
        return run

    def _scheduled(self, run: Run, now: float) -> None:
        self._run_state(run, S, now)
        job = run.job
        if job.iterative and job.state is Q:
            self._job_state(job, S, now)
