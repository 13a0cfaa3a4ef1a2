"""The Pilot: the async API users hold, built on the engine and an executor.

The engine decides; the Pilot carries its decisions out. Every call into the
engine is synchronous and returns instructions, which :meth:`Pilot._dispatch`
runs in order: a :class:`Launch` becomes a task in the Pilot's task group, a
:class:`Kill` a signal, a :class:`StateChanged` a report line, a log line, a
woken waiter and an event for subscribers. Everything the Pilot starts lives
in its one task group: leaving ``async with`` waits for every job (or, on an
exception or a cancellation, cancels them and kills their processes), and
nothing outlives the block.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ..engine import (
    Engine,
    Instruction,
    Launch,
    ResourcePool,
    StateChanged,
    parse_nodes,
)
from ..executors import Executor, LocalExecutor, Process, Task
from ..model import (
    FINAL_STATES,
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    JobState,
    PilotClosedError,
    PilotStartError,
)
from ._events import EventStream
from ._info import Interfaces, JobInfo, ResourcesInfo, iteration_info, job_info
from ._inputs import JobsLike, as_specs, discover, local_nodes, names_of
from ._journal import (
    JOURNAL,
    Journal,
    Recovered,
    find_journal,
    load_journal,
    restore_engine,
    stop_orphans,
)
from ._runs import RunsMixin
from ._service import ServiceDir, default_id, service_stats, user_name
from ._waits import WaitsMixin

#: Seconds by which lines of jobs.report and service.log may follow a job's end.
REPORT_DELAY = 0.02
#: One-core runs queued in the fork server ahead of free cores (twice the cores if
#: more, at most 1,024): see ``Engine.lookahead``.
LOOKAHEAD = 64

__all__ = ("EventStream", "JobsLike", "Pilot", "local_nodes")


class Pilot(RunsMixin, WaitsMixin):
    """A pilot job: runs jobs on a set of nodes and cores, honouring dependencies.

    Use it as an async context manager (asyncio or trio)::

        async with Pilot(nodes="n1:2,n2:2", wd="run") as pilot:
            names = await pilot.submit(Jobs().add(name="a", exec="/bin/echo", iteration=4))
            print(await pilot.wait4(names))

    Args:
        nodes: ``"[name:]cores,..."`` (``"4"``, ``"n1:4,n2:4"``), a number of cores
            on one node (``4``), or ``(name, cores)`` pairs; None: discover (``resources``).
        wd: the working directory; relative job paths join it (default: the
            current directory; with ``resume``, the working directory of the run
            resumed, so that its jobs' relative paths and the new service
            directory land where the old ones are).
        system_core: reserve core 0 of the first node for the manager.
        report_format: ``json``, ``text`` or ``none`` for ``jobs.report``.
        report_file: the report's name inside the service directory.
        executor: what starts tasks (default: Slurm steps when the resources come
            from a Slurm allocation, else local subprocesses).
        instance_id: the ``<id>`` of ``.qcgpjm-service-<id>`` (default ``<host>.<pid>``).
        resources: ``auto`` (Slurm inside an allocation, else this host),
            ``local`` or ``slurm``; used when ``nodes`` is None.
        log_level: the level of ``service.log``.
        kill_grace: seconds between SIGTERM and SIGKILL when stopping a job.
        env: extra environment of every job (e.g. ``QCG_PM_ZMQ_ADDRESS``).
        crs: consumables per node, e.g. ``{"n1": {"gpu": 2}}``.
        resume: a service directory (or a working directory: its newest one)
            whose journal this pilot goes on from: jobs that ended keep their
            state, the others run (again). See docs/reliability.md.
        journal_sync: at most this many seconds between fsyncs of the journal.

    Raises:
        JournalError: ``resume`` has no usable journal.
        JobDescriptionError: a journaled job does not fit these resources.
    """

    def __init__(
        self,
        nodes: str | int | Sequence[tuple[str, int]] | None = None,
        wd: str | os.PathLike[str] | None = None,
        *,
        system_core: bool = False,
        report_format: str = "json",
        report_file: str = "jobs.report",
        executor: Executor | None = None,
        instance_id: str | None = None,
        resources: str = "auto",
        log_level: str = "info",
        kill_grace: float = 10.0,
        env: Mapping[str, str] | None = None,
        crs: Mapping[str, Mapping[str, int]] | None = None,
        resume: str | os.PathLike[str] | None = None,
        journal_sync: float = 1.0,
    ) -> None:
        if isinstance(nodes, (str, int)):  # 4 is "4": one node of 4 cores
            node_list = parse_nodes(str(nodes))
        elif nodes is None:
            node_list = discover(resources)
        else:
            node_list = list(nodes)
        self.id = instance_id or default_id()
        if wd is None:  # a service directory's parent is its run's working directory
            wd = os.path.dirname(os.path.dirname(find_journal(resume))) if resume else "."
        self.root_wd = os.path.abspath(os.fspath(wd))
        self.engine = Engine(ResourcePool(node_list, system_core=system_core, crs=crs))
        self._executor = executor
        self._under_slurm = nodes is None and (
            resources == "slurm" or (resources == "auto" and bool(os.environ.get("SLURM_JOB_ID")))
        )
        self._report_format = report_format
        self._report_file = report_file
        self._log_level = log_level
        self.kill_grace = kill_grace
        self.env = dict(env or {})
        self.service: ServiceDir | None = None
        #: What ``service_status`` and final_status.json advertise (set by the adapters).
        self.interfaces = Interfaces()
        self._tg: TaskGroup | None = None
        self._open = False
        self._closing = False
        self._used = False  # entered once: a Pilot runs once
        self._closed = False  # its block has ended: nothing may change any more
        self._started_at = 0.0
        self._rcnt = 0
        self._procs: dict[int, Process] = {}
        self._kill_pending: set[int] = set()
        # executor.begin(task): ask for a start at once (the fork server), then
        # its answer and its end come as callbacks (``on_answer``, ``on_exit``)
        self._begin: Callable[[Task], Any] | None = None
        self._served: set[int] = set()  # begun with callbacks: no _run task
        self._deferred: list[tuple[int, Process]] | None = None  # see _signals_last
        self._queued_starts: dict[int, Any] = {}  # queued in the fork server, not started
        self._tasks = 0
        self._idle: anyio.Event | None = None
        self._final_events: dict[str, anyio.Event] = {}
        self._any_waiters: list[tuple[set[str] | None, anyio.Event, list[str]]] = []
        self._all_done: anyio.Event | None = None
        self._subscribers: list[MemoryObjectSendStream[StateChanged]] = []
        self._timer_wake: anyio.Event | None = None
        self._report_wake: anyio.Event | None = None  # lines of jobs.report/service.log wait
        self._submit_vars: dict[str, dict[str, str]] = {}
        self._base_env: dict[str, str] = {}
        self.journal: Journal | None = None
        self.journal_sync = journal_sync
        self._journaled_runs: set[int] = set()  # runs with a "run" record
        self._interrupted: set[str] = set()  # jobs stopped because the pilot is leaving
        self._killing = False
        self._last_wd = self._last_pname = ""
        self._recovered: Recovered | None = None
        self._restored: list[Instruction] = []
        if resume is not None:  # pure engine work, here: a bad journal fails the constructor
            rec = self._recovered = load_journal(resume)
            self._restored = restore_engine(self.engine, rec, time.time())
            self._submit_vars.update(zip((s.name for s in rec.specs), rec.variables, strict=True))
            self._rcnt = rec.rcnt

    # == lifetime ===============================================================

    async def __aenter__(self) -> Pilot:
        if self._used:
            raise PilotClosedError(
                f"pilot {self.id} has run already: a Pilot runs once, make a new one"
            )
        self._used = True
        try:
            os.makedirs(self.root_wd, exist_ok=True)
        except OSError as e:
            raise PilotStartError(
                f"cannot create the working directory {self.root_wd!r}: {e.strerror or e}"
            ) from None
        self.service = ServiceDir(
            self.root_wd,
            self.id,
            report_format=self._report_format,
            report_file=self._report_file,
            log_level=self._log_level,
        )
        if self._executor is None:
            if self._under_slurm:  # inside an allocation: every job a Slurm step
                from ..executors.srun import SrunExecutor

                self._executor = SrunExecutor(scratch_dir=self.service.path)
            else:
                self._executor = LocalExecutor(scratch_dir=self.service.path)
        self._instant = self._executor.instant
        self._begin = None if self._instant else getattr(self._executor, "begin", None)
        self._base_env = {**os.environ, **self.env}
        self._started_at = time.time()
        pool = self.engine.pool
        log = self.service.log
        log.info(
            "pilot %s started: %d nodes, %d cores, wd %s",
            self.id,
            pool.total_nodes,
            pool.total_cores,
            self.root_wd,
        )
        rec = self._recovered
        self.journal = Journal(
            os.path.join(self.service.path, JOURNAL),
            self.id,
            self._started_at,
            rec.path if rec else None,
            {n.name: len(n.free) for n in pool.nodes},
        )
        try:
            if rec is not None:
                log.info(
                    "resuming from %s: %d jobs, %d ended",
                    rec.path,
                    len(rec.specs),
                    sum(1 for j in self.engine.jobs.values() if j.state in FINAL_STATES),
                )
                self.journal.restored(rec, self._started_at)
                await stop_orphans(rec, log, max(self.kill_grace, 1.0))
            tg = anyio.create_task_group()
            await tg.__aenter__()
            self._tg = tg
            self._open = True
            tg.start_soon(self._timer)
            tg.start_soon(self._journal_syncer)
            tg.start_soon(self._report_flusher)
            serve = getattr(self._executor, "serve", None)  # e.g. the local fork server
            if serve is not None:
                # Shielded: it says "started" at once, and a cancelled start() would wait
                # for the task it cancels, which holds out until aclose(): a deadlock.
                # A cancellation pending now reaches the block's first await instead.
                with anyio.CancelScope(shield=True):
                    await tg.start(serve)
            if getattr(self._executor, "queues", False) and self._begin is not None:
                # Short jobs start in the core the last one left, with no round trip here.
                queueable = self._executor.queueable  # type: ignore[attr-defined]
                self.engine.queueable = lambda spec: queueable(spec.execution.model or "default")
                self.engine.lookahead = min(max(LOOKAHEAD, 2 * pool.total_cores), 1024)
        except BaseException:  # e.g. cancelled while entering: undo, then let it through
            with anyio.CancelScope(shield=True):
                await self._abort_enter()
            raise
        restored, self._restored = self._restored, []
        self._dispatch(restored)  # also writes the journal's first lines, atomically
        return self

    async def _abort_enter(self) -> None:
        """Undo a start that did not finish: nothing ran, nothing is journaled."""
        self._closing = True
        if self._executor is not None:
            await self._executor.aclose()  # releases the fork server's task
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            with contextlib.suppress(Exception):  # the cause propagates, not this
                await tg.__aexit__(None, None, None)
        self.journal = None  # never written: a resume does not take this directory
        self._end_waits()
        if self.service is not None:
            self.service.log.info("pilot %s did not start", self.id)
            self.service.close()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        kill = et is not None
        try:
            if not kill:
                await self.wait4all()
        except BaseException:
            kill = True
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_jobs(kill)
                if self._executor is not None:
                    await self._executor.aclose()  # e.g. steps an srun executor left
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            try:
                # The block's own exception propagates as it is; the task group
                # only reports crashes of its own tasks.
                await self._tg.__aexit__(None, None, None)
            finally:
                self._finish()
        return None

    async def _stop_jobs(self, kill: bool) -> None:
        self._closing = True
        if kill:
            now = time.time()
            # Interrupted, not cancelled by the user (nor omitted because of one
            # another): not journaled as ended, so a resume runs them again.
            left = [
                n
                for n, j in self.engine.jobs.items()
                if j.state not in FINAL_STATES and not j.canceled
            ]
            self._interrupted.update(left)
            with self._signals_last():
                for name in left:
                    with contextlib.suppress(InvalidTransition):
                        self._dispatch(self.engine.cancel(name, now))
            # The escalation tasks may be cancelled with the block: escalate here.
            with anyio.move_on_after(self.kill_grace):
                await self._wait_idle()
            self.kill_all()
        await self._wait_idle()

    async def _wait_idle(self) -> None:
        while self._tasks:
            self._idle = anyio.Event()
            await self._idle.wait()

    def set_env(self, name: str, value: str | None) -> None:
        """Set (``value``) or unset (None) a variable of the jobs started from now on.

        Works before and inside ``async with``; jobs already started keep their
        environment. Unset, jobs get the variable as this process has it, or not
        at all.
        """
        if value is None:
            self.env.pop(name, None)
        else:
            self.env[name] = value
        if self._base_env:  # running: jobs inherit this copy, built at the start
            # A new dict, never changed in place: executors may keep the one they sent.
            env = dict(self._base_env)
            if value is not None:
                env[name] = value
            elif name in os.environ:
                env[name] = os.environ[name]
            else:
                env.pop(name, None)
            self._base_env = env
            push = getattr(self._executor, "set_base_env", None)
            if push is not None:  # jobs queued in the executor start with it too
                push(env)

    def kill_all(self) -> None:
        """SIGKILL every running job's process group now (the CLI's second Ctrl-C).

        The jobs end (FAILED, or CANCELED when they were being cancelled) as
        their processes are reaped; what starts from now on is killed at once.
        """
        self._killing = True
        for proc in list(self._procs.values()):
            proc.kill()

    def _end_waits(self) -> None:
        """Closed: waits on future ends and event subscriptions end (nothing more happens)."""
        self._open = False
        self._closed = True
        for _, wake, _ in self._any_waiters:
            wake.set()
        for s in self._subscribers:
            s.close()
        self._subscribers.clear()

    def _finish(self) -> None:
        self._end_waits()
        if self.journal is not None:
            self.journal.close(time.time(), len(self._interrupted))
        if self.service is not None:
            status = self.service_status()
            # Beside the original's fields: every state counted as itself (the
            # original counts CANCELED as finished and OMITTED as failed).
            status["JobStates"] = {s.value: n for s, n in self.engine.job_counts.items()}
            status["IterationStates"] = {
                s.value: n for s, n in self.engine.iteration_counts().items()
            }
            self.service.write_final_status(status)
            self.service.log.info("pilot %s finished", self.id)
            self.service.close()

    def _check_not_closed(self) -> None:
        """Changes after the block would be lost (the journal is closed)."""
        if self._closed:
            raise PilotClosedError(f"pilot {self.id} is closed")

    def _check_open(self) -> None:
        if not self._open or self._closing:
            raise PilotClosedError(f"pilot {self.id} is not running")

    # == the dispatcher =========================================================

    def _dispatch(self, instructions: list[Instruction]) -> None:
        if self._begin is not None:  # starts asked first: the reports can wait, jobs not
            for ins in instructions:
                if isinstance(ins, Launch):
                    if ins.promote:  # queued in the fork server: now it has a core
                        starting = self._queued_starts.get(ins.run_id)
                        if starting is not None:
                            self._executor.start_now(starting)  # type: ignore[union-attr]
                    else:
                        self._begin_launch(ins)
        queue = deque(instructions)
        engine = self.engine
        while queue:
            ins = queue.popleft()
            if isinstance(ins, StateChanged):
                self._on_state(ins)
            elif isinstance(ins, Launch):
                if ins.promote:  # begun when it was queued
                    pass
                elif self._instant:
                    now = time.time()
                    queue.extend(engine.started(ins.run_id, now))
                    queue.extend(engine.exited(ins.run_id, 0, now))
                elif ins.run_id in self._served:  # begun, followed by callbacks
                    self._served.discard(ins.run_id)
                else:
                    assert self._tg is not None
                    self._tasks += 1
                    self._tg.start_soon(self._run, ins)
            else:
                self._kill(ins)
        if self._report_wake is not None and self.service is not None and self.service.dirty:
            self._report_wake.set()  # within REPORT_DELAY, in one write
            self._report_wake = None
        if self.journal is not None:
            self.journal.flush()  # now: it is what a resume relies on

    def _on_state(self, ev: StateChanged) -> None:
        state = ev.state
        for s in self._subscribers:
            s.send_nowait(ev)
        if state not in FINAL_STATES:
            if ev.iteration is None and state is JobState.EXECUTING:
                pass
            elif self.service is not None and self.service.log_debug:
                self.service.log.debug(
                    "%s%s %s",
                    ev.job,
                    "" if ev.iteration is None else f":{ev.iteration}",
                    state.value,
                )
            return
        job = self.engine.jobs[ev.job]
        svc = self.service
        assert svc is not None
        if ev.iteration is not None and (self._final_events or self._any_waiters):
            self._iteration_ended_waits(f"{ev.job}:{ev.iteration}")  # woken after this call
        if self.journal is not None and (
            ev.job not in self._interrupted or state not in (JobState.CANCELED, JobState.OMITTED)
        ):
            self.journal.job_ended(job, ev.iteration, state, ev.time)
        try:
            if ev.iteration is not None:
                it_run = job.run_at(ev.iteration)
                if it_run is not None:
                    svc.report_run(job, it_run)
                else:  # cancelled while queued, or omitted (a:${it} dependency)
                    svc.report_iteration(job.name, ev.iteration, state, ev.time)
                return
            run = job.run_at(None)
            if run is not None:
                svc.report_run(job, run)
            else:
                svc.report_job(job)
        except Exception:  # a report line that cannot be written must not stop the pilot
            svc.log.exception(
                "cannot report %s%s", ev.job, "" if ev.iteration is None else f":{ev.iteration}"
            )
            if ev.iteration is not None:
                return
        self._submit_vars.pop(ev.job, None)  # only launches need them
        if self._final_events or self._any_waiters:
            self._job_ended_waits(ev.job)
        if self._all_done is not None and self.engine.unfinished == 0:
            self._all_done.set()
            self._all_done = None

    def _reports_now(self) -> None:
        """The ended jobs' report lines written now (a waiter may read them next)."""
        if self.service is not None and self.service.dirty:
            self.service.flush()

    async def _report_flusher(self) -> None:
        """Push jobs.report and service.log lines to their files REPORT_DELAY after the
        first unwritten one: one write per file for many jobs' ends (at the close, all)."""
        svc = self.service
        assert svc is not None
        while True:
            wake = self._report_wake = anyio.Event()
            await wake.wait()
            await anyio.sleep(REPORT_DELAY)
            svc.flush()

    async def _journal_syncer(self) -> None:
        """fsync the journal at most every ``journal_sync`` s; record long-running processes."""
        journal = self.journal
        assert journal is not None
        while True:
            await anyio.sleep(self.journal_sync)
            journal.running(self._procs, self.engine.runs, self._journaled_runs)
            journal.flush()
            if journal.unsynced:
                await anyio.to_thread.run_sync(journal.sync)

    async def _timer(self) -> None:
        while True:
            deadline = self.engine.next_deadline()
            delay = math.inf if deadline is None else max(0.0, deadline - time.time())
            wake = self._timer_wake = anyio.Event()
            with anyio.move_on_after(delay):
                await wake.wait()
            self._dispatch(self.engine.tick(time.time()))

    # == the API ================================================================

    async def submit(self, jobs: JobsLike) -> list[str]:
        """Submit jobs; all of them or, if any is invalid, none.

        Args:
            jobs: a :class:`Jobs`, a :class:`JobSpec`, a standard-format dict, or a
                list of specs and dicts.

        Returns:
            The job names, in order.

        Raises:
            JobDescriptionError: listing every problem of every invalid job.
            PilotClosedError: the pilot is not running.
        """
        self._check_open()
        stds: list[dict[str, Any]] = []
        specs = as_specs(jobs, stds)
        if not specs:
            return []
        now = time.time()
        stamp = _dt.datetime.fromtimestamp(now)
        request_vars = {
            "rcnt": str(self._rcnt + 1),
            "uniq": uuid.uuid4().hex,
            "sname": "local",
            "date": stamp.strftime("%Y-%m-%d"),
            "time": stamp.strftime("%H:%M:%S"),
            "dateTime": stamp.isoformat(),
        }
        record = None
        if self.journal is not None:
            # Before the engine accepts anything: what cannot be journaled is refused.
            try:
                record = self.journal.submit_record(specs, request_vars, now, stds)
            except (RecursionError, ValueError, TypeError) as e:
                raise JobDescriptionError([f"the jobs cannot be recorded: {e}"]) from None
        instructions = self.engine.submit(specs, now)
        self._rcnt += 1
        for spec in specs:
            self._submit_vars[spec.name] = request_vars
        if record is not None and self.journal is not None:
            self.journal.append(record)
        self._dispatch(instructions)
        return [s.name for s in specs]

    async def status(self, names: str | Iterable[str]) -> dict[str, JobState]:
        """The current state of each job (``name``) or iteration (``name:it``).

        Raises:
            JobNotFoundError: an unknown job or iteration.
        """
        out = {}
        for n in names_of(names):
            job, index = self.engine.lookup(n)
            out[n] = job.state if index is None else self.engine.iteration_state(job, index)
        return out

    async def info(
        self, names: str | Iterable[str], with_childs: bool = False
    ) -> dict[str, JobInfo]:
        """Everything known about each job (``name``) or iteration (``name:it``);
        ``to_dict()`` gives the original's form.

        Raises:
            JobNotFoundError: an unknown job or iteration.
        """
        out = {}
        for n in names_of(names):
            job, index = self.engine.lookup(n)
            out[n] = (
                job_info(self.engine, job, with_childs)
                if index is None
                else iteration_info(self.engine, job, index)
            )
        return out

    async def list(self) -> dict[str, JobState]:
        """Every job the pilot knows, with its state, in submission order."""
        return {n: j.state for n, j in self.engine.jobs.items()}

    async def cancel(self, names: str | Iterable[str]) -> int:
        """Cancel jobs (``name``) or iterations (``name:it``).

        Queued work is CANCELED at once; running work gets SIGTERM (SIGKILL
        after ``kill_grace``) and is CANCELED when it has exited. Already
        finished jobs are left as they are.

        Returns:
            How many of the names were cancelled.

        Raises:
            JobNotFoundError: an unknown name (checked before anything is cancelled).
            PilotClosedError: the pilot's block has ended.
        """
        self._check_not_closed()
        names = list(dict.fromkeys(names_of(names)))  # a name given twice counts once
        for n in names:
            self.engine.lookup(n)
        if self.journal is not None:
            self.journal.cancel(names)
        count = 0
        with self._signals_last():
            for n in names:
                try:
                    self._dispatch(self.engine.cancel(n, time.time()))
                    count += 1
                except InvalidTransition:
                    pass
        return count

    async def remove(self, names: str | Iterable[str]) -> int:
        """Forget finished jobs (their names can be used again).

        Raises:
            JobNotFoundError: an unknown name (nothing is removed then).
            InvalidTransition: a job has not finished (nothing is removed then).
            PilotClosedError: the pilot's block has ended.
        """
        self._check_not_closed()
        names = list(dict.fromkeys(names_of(names)))  # a name given twice counts once
        for n in names:
            job = self.engine.jobs.get(n)
            if job is None:
                raise JobNotFoundError(n)
            if job.state not in FINAL_STATES:
                raise InvalidTransition(f"Job '{n}' not finished - can not be removed")
        for n in names:
            self.engine.remove(n)
            self._submit_vars.pop(n, None)
        if self.journal is not None:
            self.journal.remove(names)
            self.journal.flush()
        return len(names)

    async def resources(self) -> ResourcesInfo:
        """Nodes and cores: total, used, free.

        With ``system_core`` the reserved core counts in the total and as used,
        as in the original (4 cores: total 4, used 1, free 3).
        """
        pool = self.engine.pool
        return ResourcesInfo(pool.total_nodes, *self._core_counts())

    def _core_counts(self) -> tuple[int, int, int]:
        """Total, used and free cores, the system core counted as used."""
        pool = self.engine.pool
        system = 1 if pool.system_core else 0
        return pool.total_cores + system, pool.used_cores + system, pool.free_cores

    def events(self) -> EventStream:
        """Every state change from this call on, until the pilot closes.

        Subscribes at once, so nothing that happens after the call is missed::

            async with pilot.events() as events:
                async for ev in events:   # StateChanged(job, iteration, state, time)
                    ...

        Returns:
            An async iterator of :class:`StateChanged`; close it (``aclose()`` or
            ``async with``) when done, or it keeps collecting until the pilot closes.
        """
        stream = EventStream(self._subscribers)
        if self._closed:  # nothing more will happen: the stream ends at once
            stream.end()
        return stream

    # == service-level status ==================================================

    def service_status(
        self, *, zmq_address: str | None = None, publisher: str | None = None
    ) -> dict[str, Any]:
        """The original's ``status`` data (also written to final_status.json).

        ``zmq_address`` and ``publisher`` default to those in :attr:`interfaces`.
        """
        engine, pool = self.engine, self.engine.pool
        zmq_address = zmq_address or self.interfaces.zmq_address
        publisher = publisher or self.interfaces.publisher
        ifaces = list(self.interfaces.names)
        if zmq_address and "ZMQ" not in ifaces:  # a Protocol given an address by hand
            ifaces.append("ZMQ")
        c = engine.job_counts
        it = engine.iteration_counts()
        now = time.time()
        total, used, free = self._core_counts()
        return {
            "System": {
                "InstanceId": self.id,
                "Started": str(_dt.datetime.fromtimestamp(self._started_at)),
                "Generated": str(_dt.datetime.fromtimestamp(now)),
                "Uptime": str(_dt.timedelta(seconds=now - self._started_at)),
                "Zmqaddress": zmq_address,
                "Ifaces": ifaces,
                "StatusPublisher": publisher,
                "Host": socket.gethostname(),
                "Account": user_name(),
                "Wd": self.root_wd,
                "PythonVersion": sys.version.replace("\n", " "),
                "Python": sys.executable,
                "Platform": sys.platform,
            },
            "Resources": {
                "TotalNodes": pool.total_nodes,
                "TotalCores": total,
                "UsedCores": used,
                "FreeCores": free,
            },
            "JobStats": service_stats(c, "Jobs"),
            "IterationStats": service_stats(it, "Iterations"),
        }
