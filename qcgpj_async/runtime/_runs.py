"""How the Pilot carries out the engine's Launch and Kill instructions.

A launch becomes a start request at once (the fork server's, through
``executor.begin``), followed by callbacks from the executor's event reader;
with other executors, a task of the pilot's task group awaits the start and
the end of its process (:meth:`RunsMixin._run`). Either way the engine hears
``started`` and ``exited``, and a kill is a SIGTERM to the job's process
group, then SIGKILL after ``kill_grace``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..engine import Engine, Instruction, Kill, Launch
from ..executors import Executor, LaunchError, Process, Task, prepare_task

if TYPE_CHECKING:
    from ._service import ServiceDir

__all__ = ("RunsMixin",)


class RunsMixin:
    """The launching half of :class:`~._pilot.Pilot` (its state is the Pilot's)."""

    id: str
    root_wd: str
    engine: Engine
    kill_grace: float
    service: ServiceDir | None
    _tg: TaskGroup | None
    _executor: Executor | None
    _procs: dict[int, Process]
    _kill_pending: set[int]
    _tasks: int
    _idle: anyio.Event | None
    _timer_wake: anyio.Event | None
    _submit_vars: dict[str, dict[str, str]]
    _base_env: dict[str, str]
    _journaled_runs: set[int]
    _killing: bool
    _last_wd: str
    _last_pname: str
    _begin: Callable[..., Any] | None
    _served: set[int]
    _queued_starts: dict[int, Any]
    _deferred: list[tuple[int, Process]] | None

    def _dispatch(self, instructions: list[Instruction]) -> None:
        raise NotImplementedError  # the Pilot's

    def _task_of(self, launch: Launch) -> Task:
        return prepare_task(
            launch,
            root_wd=self.root_wd,
            base_env=self._base_env,
            step_id=f"{self.id}.{launch.run_id}",
            submit_vars=self._submit_vars.get(launch.job),
        )

    def _begin_launch(self, launch: Launch) -> None:
        assert self._begin is not None
        run_id = launch.run_id
        try:
            task = self._task_of(launch)
            starting = (
                self._begin(task, queued=True, key=run_id) if launch.queued else self._begin(task)
            )
        except Exception:  # _run prepares it again, and reports why it fails
            return
        if starting is None:
            return
        if launch.queued:
            self._queued_starts[run_id] = starting
        self._note_run(run_id, task)
        # Followed by callbacks from the executor's event reader: no task per job.
        self._served.add(run_id)
        self._tasks += 1
        starting.on_answer(lambda st: self._guarded(self._served_started, launch, st))

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)`` called back by the executor's reader, which must go on: a bug
        is logged and raised in the pilot's task group, as it would from ``_run``."""
        try:
            fn(*args)
        except Exception as e:
            if self.service is not None:
                self.service.log.exception("internal error handling a job's start or end")
            if self._tg is not None:
                self._tg.start_soon(_reraise, e)

    def _task_done(self) -> None:
        self._tasks -= 1
        if self._tasks == 0 and self._idle is not None:
            self._idle.set()

    def _served_started(self, launch: Launch, starting: Any) -> None:
        run_id, proc = launch.run_id, starting.proc
        watched = False
        if launch.queued:
            self._queued_starts.pop(run_id, None)
        try:
            if proc is None:
                if starting.gone and launch.queued:  # no cores to start it here: requeued
                    self._kill_pending.discard(run_id)
                    self._dispatch(self.engine.requeue(run_id, time.time()))
                    return
                if starting.gone and self._tg is not None:  # the server died: start it here
                    self._tg.start_soon(self._run, launch)
                    watched = True  # _run ends the count
                    return
                self._kill_pending.discard(run_id)
                self._dispatch(
                    self.engine.exited(run_id, -1, time.time(), starting.error, starting.successor)
                )
                return
            self._run_started(launch, proc)
            proc.on_exit(lambda code: self._guarded(self._served_exited, run_id, code, proc))
            watched = True
        finally:
            if not watched:
                self._task_done()

    def _served_exited(self, run_id: int, code: int, proc: Any) -> None:
        try:
            self._run_exited(run_id, code, proc.ended_at, proc.successor)
        finally:
            self._task_done()

    def _run_started(self, launch: Launch, proc: Process) -> None:
        """The engine hears that ``launch`` started as ``proc``; a kill asked meanwhile is sent."""
        run_id = launch.run_id
        self._procs[run_id] = proc
        self._dispatch(
            self.engine.started(run_id, getattr(proc, "started_at", None) or time.time(), proc.pid)
        )
        if launch.spec.resources.wt is not None and self._timer_wake is not None:
            self._timer_wake.set()
        if run_id in self._kill_pending:
            self._kill_pending.discard(run_id)
            self._terminate(run_id, proc)

    def _run_exited(
        self, run_id: int, code: int, now: float | None = None, successors: list[int] | None = None
    ) -> None:
        """The engine hears that run ``run_id``'s process ended with ``code`` (and
        which queued runs took its cores)."""
        del self._procs[run_id]
        self._journaled_runs.discard(run_id)
        self._dispatch(self.engine.exited(run_id, code, now or time.time(), None, successors))

    def _note_run(self, run_id: int, task: Task) -> None:
        run = self.engine.runs.get(run_id)
        if run is not None:
            # Kept for every ended job: share the strings that repeat (memory per job).
            wd, pname = task.cwd, os.path.basename(task.argv[0])
            run.wd = self._last_wd = wd if wd != self._last_wd else self._last_wd
            run.pname = self._last_pname = pname if pname != self._last_pname else self._last_pname

    async def _run(self, launch: Launch) -> None:
        run_id = launch.run_id
        engine = self.engine
        proc: Process | None = None
        try:
            if launch.queued:  # queued for a fork server that is gone: back to the queue
                self._kill_pending.discard(run_id)
                self._dispatch(engine.requeue(run_id, time.time()))
                return
            task = self._task_of(launch)
            self._note_run(run_id, task)
            if run_id in self._kill_pending:  # cancelled before it started: never start it
                self._kill_pending.discard(run_id)
                self._dispatch(engine.exited(run_id, -1, time.time(), "stopped before it started"))
                return
            assert self._executor is not None
            try:
                proc = await self._executor.start(task)
            except LaunchError as e:
                self._dispatch(engine.exited(run_id, -1, time.time(), str(e)))
                return
            except Exception as e:  # an executor bug must not take other jobs down
                msg = f"job {task.label}: launch failed: {e!r}"
                self._dispatch(engine.exited(run_id, -1, time.time(), msg))
                return
            self._run_started(launch, proc)
            # Shielded: leaving the pilot's block by a cancellation stops the
            # jobs in _stop_jobs (SIGTERM, SIGKILL after kill_grace), not here.
            with anyio.CancelScope(shield=True):
                code = await proc.wait()
            self._run_exited(run_id, code)
        finally:
            self._task_done()

    def _kill(self, kill: Kill) -> None:
        proc = self._procs.get(kill.run_id)
        if proc is None:
            self._kill_pending.add(kill.run_id)
            starting = self._queued_starts.get(kill.run_id)
            if starting is not None:  # still queued in the fork server: take it out
                self._executor.drop(starting)  # type: ignore[union-attr]
        else:
            self._terminate(kill.run_id, proc)

    @contextlib.contextmanager
    def _signals_last(self) -> Iterator[None]:
        """Within: the SIGTERMs of running jobs wait for the end, so that every queued
        job cancelled with them is out of the fork server's queue before their cores
        free up (else the server would start one in a core a killed job left)."""
        outer = self._deferred is None
        if outer:
            self._deferred = []
        try:
            yield
        finally:
            if outer:
                deferred, self._deferred = self._deferred or [], None
                for run_id, proc in deferred:
                    self._terminate(run_id, proc)

    def _terminate(self, run_id: int, proc: Process) -> None:
        if self._deferred is not None:
            self._deferred.append((run_id, proc))
            return
        if self._killing:
            proc.kill()
            return
        proc.terminate()
        assert self._tg is not None
        self._tg.start_soon(self._escalate, run_id, proc)

    async def _escalate(self, run_id: int, proc: Process) -> None:
        await anyio.sleep(self.kill_grace)
        if self._procs.get(run_id) is proc:
            proc.kill()


async def _reraise(error: BaseException) -> None:
    raise error
