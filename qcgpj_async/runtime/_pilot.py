"""The Pilot: the async API users hold, built on the engine and an executor.

The engine decides; the Pilot carries its decisions out. Every call into the
engine is synchronous and returns instructions, which :meth:`Pilot._dispatch`
runs in order: a :class:`Launch` and a :class:`Kill` go to the
:class:`~._launcher.Launcher` (a start, a signal), a :class:`StateChanged` to
the :class:`~._recorder.Recorder` (a report line, a log line, a journal line,
a woken waiter of :class:`~._waits.Waiters`, an event for subscribers). All
the Pilot starts lives in its one task group: leaving ``async with`` waits for
every job (or, on an exception or a cancellation, cancels them and kills their
processes), and nothing outlives the block."""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..engine import Engine, Instruction, Launch, StateChanged
from ..executors import Executor
from ..model import (
    FINAL_STATES,
    InvalidTransition,
    JobNotFoundError,
    PilotClosedError,
    PilotStartError,
)
from ._events import EventStream
from ._inputs import (
    GpuArg,
    JobsLike,
    as_specs,
    local_nodes,
    names_of,
    pool_of,
    request_variables,
    slurm_resources,
)
from ._journal import find_journal, load_journal, restore_engine
from ._launcher import Launcher, default_executor
from ._recorder import Recorder
from ._service import default_id
from ._view import PilotView
from ._waits import Waiters

#: One-core runs queued in the start queues ahead of free cores (twice the cores if
#: more, at most 1,024 or 16 a node): see ``Engine.lookahead``.
LOOKAHEAD = 64

__all__ = ("EventStream", "JobsLike", "Pilot", "local_nodes")


class Pilot(PilotView):
    """A pilot job: runs jobs on a set of nodes and cores, honouring dependencies.

    Use it as an async context manager (asyncio or trio)::

        async with Pilot(nodes="n1:2,n2:2", wd="run") as pilot:
            names = await pilot.submit(Jobs().add(name="a", exec="/bin/echo", iteration=4))
            print(await pilot.wait4(names))

    Args:
        nodes: ``"[name:]cores,..."`` (``"4"``, ``"n1:4,n2:4"``), a number of cores
            on one node (``4``), or ``(name, cores)`` pairs; None: discover (``resources``).
        wd: the working directory; relative job paths join it (default: the current
            directory; with ``resume``, the run resumed's, where its files are).
        system_core: reserve core 0 of the first node for the manager.
        report_format: ``json``, ``text`` or ``none`` for ``jobs.report``.
        report_file: the report's name inside the service directory.
        executor: what starts tasks (default: inside a Slurm allocation, launch agents
            or, ``agents=False``, a Slurm step per task; else local subprocesses).
        instance_id: the ``<id>`` of ``.qcgpjm-service-<id>`` (default ``<host>.<pid>``).
        resources: ``auto`` (Slurm inside an allocation, else this host),
            ``local`` or ``slurm``; used when ``nodes`` is None.
        log_level: the level of ``service.log``.
        kill_grace: seconds between SIGTERM and SIGKILL when stopping a job.
        env: extra environment of every job (e.g. ``QCG_PM_ZMQ_ADDRESS``).
        crs: consumables per node, e.g. ``{"n1": {"gpu": 2}}``.
        gpus: GPU ids of every node (``"0,1"``) or per node; default: declared or found.
        gpu_vendor: ``nvidia`` or ``amd`` (default: as found; see docs/slurm.md#gpus).
        resume: a service directory (or a working directory: its newest one)
            whose journal this pilot goes on from: jobs that ended keep their
            state, the others run (again). See docs/reliability.md.
        journal_sync: at most this many seconds between fsyncs of the journal.
        agents, pin: launch agents in an allocation (docs/slurm.md), pinning tasks.

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
        gpus: GpuArg = None,
        gpu_vendor: str | None = None,
        resume: str | os.PathLike[str] | None = None,
        journal_sync: float = 1.0,
        agents: bool = True,
        pin: bool = True,
    ) -> None:
        pilot_id = instance_id or default_id()
        if wd is None:  # a service directory's parent is its run's working directory
            wd = os.path.dirname(os.path.dirname(find_journal(resume))) if resume else "."
        root_wd = os.path.abspath(os.fspath(wd))
        engine = Engine(pool_of(nodes, resources, system_core, crs, gpus, gpu_vendor))
        self._executor = executor
        self._slurm = (slurm_resources(nodes, resources), agents, pin)  # default executor
        self._service_args = (report_format, report_file, log_level)
        self.env = dict(env or {})
        self._tg: TaskGroup | None = None
        self._open = self._closing = self._used = False  # used: a Pilot runs once
        self._submit_vars: dict[str, dict[str, str]] = {}
        # Report lines are written before a wait returns (the waiter may read them).
        waiters = Waiters(pilot_id, engine, lambda: recorder.reports_now())
        recorder = Recorder(engine, waiters, self._submit_vars, journal_sync)
        args = (pilot_id, root_wd, engine, self._dispatch, self._submit_vars, kill_grace)
        self._launcher = Launcher(*args, recorder.places, recorder.node_lost, recorder.batch_end)
        super().__init__(pilot_id, root_wd, engine, waiters, recorder)
        # Pure engine work, here: a bad journal fails the constructor.
        self._recovered = rec = load_journal(resume) if resume is not None else None
        self._restored = restore_engine(engine, rec, time.time()) if rec is not None else []
        self._rcnt = rec.rcnt if rec is not None else 0
        if rec is not None:
            self._submit_vars.update(zip((s.name for s in rec.specs), rec.variables, strict=True))

    @property
    def kill_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when stopping a job."""
        return self._launcher.kill_grace

    @kill_grace.setter
    def kill_grace(self, value: float) -> None:
        self._launcher.kill_grace = value

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
        engine, pool, recorder = self._engine, self._engine.pool, self._recorder
        svc = recorder.open(self.root_wd, self.id, time.time(), self._recovered, self._service_args)
        log = svc.log
        if self._executor is None:
            self._executor = default_executor(*self._slurm, svc.path, log, pool)
        log.info("pilot %s started: %s, wd %s", self.id, pool.summary(), self.root_wd)
        try:
            if self._recovered is not None:
                await recorder.resume(self._recovered, max(self.kill_grace, 1.0))
            tg = self._tg = anyio.create_task_group()
            await tg.__aenter__()
            self._open = True
            tg.start_soon(self._launcher.run_timer)
            tg.start_soon(recorder.sync_journal, self._launcher)
            tg.start_soon(recorder.flush_reports)
            base_env = {**os.environ, **self.env}
            queue = await self._launcher.open(self._executor, tg, log, base_env)
            if queue is not None and (queue.per_node or len(pool.nodes) == 1):
                # Short jobs start in the core the last one left, with no round trip here.
                queueable, n = queue.queueable, len(pool.nodes)
                engine.queueable = lambda spec: queueable(spec.execution.model or "default")
                engine.lookahead = min(max(LOOKAHEAD, 2 * pool.total_cores), max(1024, 16 * n))
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
        self._end_waits()
        self._recorder.close(self.id, time.time(), None)  # a resume does not take it

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
                self._closing = True
                if kill:  # interrupted, not cancelled by the user: a resume runs them again
                    left = self.unfinished_jobs(cancelling=False)
                    self._recorder.interrupted.update(left)
                    await self._launcher.stop(left)
                await self._launcher.wait_idle()
                if self._executor is not None:
                    await self._executor.aclose()  # e.g. steps an srun executor left
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            try:
                # The block's own exception propagates as it is; the task group
                # only reports crashes of its own tasks.
                await self._tg.__aexit__(None, None, None)
            finally:
                self._end_waits()
                self._recorder.close(self.id, time.time(), self.final_status())
        return None

    def _end_waits(self) -> None:
        """Closed: waits on future ends and event subscriptions end (nothing more happens)."""
        self._open = False
        self._closed = True
        self._waiters.close()
        self._recorder.end_subscriptions()

    def _check_not_closed(self) -> None:
        if self._closed:  # changes after the block would be lost (the journal is closed)
            raise PilotClosedError(f"pilot {self.id} is closed")

    def _check_open(self) -> None:
        if not self._open or self._closing:
            raise PilotClosedError(f"pilot {self.id} is not running")

    # == the dispatcher =========================================================

    def _dispatch(self, instructions: list[Instruction]) -> None:
        launcher = self._launcher
        start_queue = launcher.queue
        if start_queue is not None:  # starts asked first: the reports can wait, jobs not
            for ins in instructions:
                if isinstance(ins, Launch):
                    if ins.promote:  # queued in the start queue: now it has a core
                        starting = launcher.queued_starts.get(ins.run_id)
                        if starting is not None:
                            start_queue.promote(starting, ins.allocation.parts[0].cores)
                    else:
                        launcher.begin(ins)
        queue = deque(instructions)
        engine, recorder = self._engine, self._recorder
        while queue:
            ins = queue.popleft()
            if isinstance(ins, StateChanged):
                recorder.state_changed(ins)
            elif isinstance(ins, Launch):
                if ins.promote:  # begun when it was queued
                    pass
                elif launcher.instant:
                    now = time.time()
                    queue.extend(engine.started(ins.run_id, now))
                    queue.extend(engine.exited(ins.run_id, 0, now))
                elif ins.run_id in launcher.served:  # begun, followed by callbacks
                    launcher.served.discard(ins.run_id)
                else:
                    launcher.spawn(ins)
            else:
                launcher.kill(ins)
        wake, svc = recorder.report_wake, recorder.service
        if wake is not None and svc is not None and svc.dirty:
            wake.set()  # within REPORT_DELAY, in one write
            recorder.report_wake = None
        if recorder.journal is not None and not launcher.batching:  # (else at the batch's end)
            recorder.journal.flush()  # now: it is what a resume relies on

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
        request_vars = request_variables(self._rcnt + 1, now)
        # Before the engine accepts anything: what cannot be journaled is refused.
        record = self._recorder.submit_record(specs, request_vars, now, stds)
        with self._launcher.batch():  # many runs and starts at once (see Launcher.batch)
            instructions = self._engine.submit(specs, now)
            self._rcnt += 1
            for spec in specs:
                self._submit_vars[spec.name] = request_vars
            self._recorder.journal_line(record)
            self._dispatch(instructions)
        return [s.name for s in specs]

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
            self._engine.lookup(n)
        self._recorder.cancelled(names)
        count = 0
        with self._launcher.signals_last():
            for n in names:
                with contextlib.suppress(InvalidTransition):
                    self._dispatch(self._engine.cancel(n, time.time()))
                    count += 1
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
            job = self._engine.jobs.get(n)
            if job is None:
                raise JobNotFoundError(n)
            if job.state not in FINAL_STATES:
                raise InvalidTransition(f"Job '{n}' not finished - can not be removed")
        for n in names:
            self._engine.remove(n)
            self._submit_vars.pop(n, None)
        self._recorder.removed(names)
        return len(names)

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
        self._launcher.set_env(name, value)

    def kill_all(self) -> None:
        """SIGKILL every running job's process group now (the CLI's second Ctrl-C).

        The jobs end (FAILED, or CANCELED when they were being cancelled) as
        their processes are reaped; what starts from now on is killed at once.
        """
        self._launcher.kill_all()
