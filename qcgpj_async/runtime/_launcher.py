"""How the Pilot carries out the engine's Launch and Kill instructions: the :class:`Launcher`.

A launch becomes a start request at once, to the start queue of the node
(:meth:`Launcher.begin`; the local fork server), followed by callbacks from
the queue's event reader; with other executors, a task of the pilot's task
group awaits the start and the end of its process (:meth:`Launcher.run`).
Either way the engine hears ``started`` and ``exited``, and a kill is a
SIGTERM to the job's process group, then SIGKILL after ``kill_grace``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..engine import Engine, Instruction, Kill, Launch, ResourcePool
from ..executors import (
    Executor,
    LaunchError,
    LocalExecutor,
    Process,
    ServedProcess,
    Starting,
    StartQueue,
    Task,
    TaskCache,
    prepare_task,
)
from ..model import InvalidTransition
from ._places import RunPlaces

__all__ = ("Launcher", "default_executor")


def default_executor(
    under_slurm: bool,
    agents: bool,
    pin: bool,
    scratch_dir: str,
    log: logging.Logger | None = None,
    pool: ResourcePool | None = None,
) -> Executor:
    """Inside an allocation whose resources the pilot uses: launch agents on its nodes
    (``agents``; tasks pinned to their cores with ``pin``; each agent's view of its
    node's GPUs checked against ``pool``'s) or, without, a Slurm step per task. Else
    local processes."""
    if under_slurm and agents:
        from ..executors.agents import AgentExecutor

        gpus = {n.name: n.gpu_ids for n in pool.nodes if n.gpu_ids} if pool else None
        return AgentExecutor(scratch_dir=scratch_dir, pin=pin, log=log, gpus=gpus)
    if under_slurm:
        from ..executors.srun import SrunExecutor

        return SrunExecutor(scratch_dir=scratch_dir)
    return LocalExecutor(scratch_dir=scratch_dir)


class Launcher:
    """The running processes of a pilot: starts, ends, kills, and starts queued ahead.

    Made with the pilot; :meth:`open` gives it the executor and the task group
    when the pilot starts. It reports every start and end to the engine and
    hands the engine's answer to ``dispatch`` (the Pilot's dispatcher).

    Args:
        pilot_id: names the Slurm steps (``<id>.<run>``).
        root_wd: the working directory relative job paths join.
        engine: the pilot's engine.
        dispatch: carries out the instructions of the engine.
        submit_vars: the variables of each job's submit request (``${rcnt}``...).
        kill_grace: seconds between SIGTERM and SIGKILL.
        places: where each run runs, noted when it is launched.
        node_lost_hook: called with ``(node, why, time)`` when a node is lost.
        batch_end: called after each batch of the start queue's answers and ends
            (the dispatches of a batch leave the journal's write to it).
    """

    def __init__(
        self,
        pilot_id: str,
        root_wd: str,
        engine: Engine,
        dispatch: Callable[[list[Instruction]], None],
        submit_vars: Mapping[str, dict[str, str]],
        kill_grace: float,
        places: RunPlaces,
        node_lost_hook: Callable[[str, str, float], None] | None = None,
        batch_end: Callable[[], None] | None = None,
    ) -> None:
        self._id = pilot_id
        self._root_wd = root_wd
        self._engine = engine
        self._dispatch = dispatch
        self._submit_vars = submit_vars
        self._places = places
        self._timer_wake: anyio.Event | None = None
        self.kill_grace = kill_grace
        self.executor: Executor | None = None
        #: The node's start queue, where starts are asked at once; None: each start
        #: is a task of the task group.
        self.queue: StartQueue | None = None
        #: The executor ends every task at once (no process).
        self.instant = False
        self._tg: TaskGroup | None = None
        self._log: logging.Logger | None = None
        #: The base environment of the jobs (never changed in place).
        self.base_env: dict[str, str] = {}
        self._task_cache: TaskCache = {}  # what iterations of one execution share
        self._pname = ("", "")  # the last program started, and its name
        self.procs: dict[int, Process] = {}
        #: Runs with a "run" record in the journal.
        self.journaled_runs: set[int] = set()
        self._kill_pending: set[int] = set()
        #: Begun in the start queue, followed by callbacks: no task of their own.
        self.served: set[int] = set()
        #: Queued in the start queue, not started yet.
        self.queued_starts: dict[int, Starting] = {}
        self._deferred: list[tuple[int, Process]] | None = None  # see signals_last
        #: Starts and processes followed (the pilot waits for none left).
        self.tasks = 0
        self._idle: anyio.Event | None = None
        self._killing = False
        #: Called with ``(node, why, time)`` when a node is lost (the journal notes it).
        self.node_lost_hook = node_lost_hook
        self._batch_end = batch_end
        # The callbacks of served starts, bound once: a partial of them per job holds
        # no method object of its own (fewer objects for the garbage collector).
        self._on_started = partial(self._guarded, self._served_started)
        self._on_exited = partial(self._guarded, self._served_exited)

    async def open(
        self,
        executor: Executor,
        tg: TaskGroup,
        log: logging.Logger,
        base_env: dict[str, str],
    ) -> StartQueue | None:
        """Start with ``executor``; its start queue serves in ``tg``.

        Returns:
            The start queue when it takes starts queued ahead, else None.
        """
        self.executor, self._tg, self._log, self.base_env = executor, tg, log, base_env
        self.instant = executor.instant
        queue = None if self.instant else executor.start_queue()
        if queue is None:
            return None
        queue.on_node_lost(self._node_lost)
        if self._batch_end is not None:
            queue.on_batch_end(self._batch_ended)
        # Shielded: it says "started" at once, and a cancelled start() would wait
        # for the task it cancels, which holds out until aclose(): a deadlock.
        # A cancellation pending now reaches the block's first await instead.
        with anyio.CancelScope(shield=True):
            await tg.start(queue.serve)
        self.queue = queue
        return queue if queue.accepting else None

    def _node_lost(self, node: str, why: str) -> None:
        """A node is lost to the pilot (its launch agent died, did not answer, or never
        joined): its cores leave the engine's pool, before its runs are reported."""
        now = time.time()
        if self._log is not None:
            self._log.warning("%s: its cores leave the pool", why)
        if self.node_lost_hook is not None:
            self.node_lost_hook(node, why, now)
        self._dispatch(self._engine.node_lost(node, now, why))

    def _batch_ended(self) -> None:
        if self._batch_end is not None:
            self._guarded(self._batch_end)

    @property
    def batching(self) -> bool:
        """Whether a batch of the start queue is open: what its end does waits for it."""
        return self.queue is not None and self.queue.batching

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Within: the starts asked go to the start queue together, at the end; and the
        cyclic GC waits. A submit makes the runs of every free core at once, none of
        them garbage: collected as they come, the heap grown by a quarter at each full
        collection, they cost about 5 us of CPU per task at 1,024 nodes x 128 cores."""
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            with self.queue.batch() if self.queue is not None else contextlib.nullcontext():
                yield
        finally:
            if paused:
                gc.enable()

    def set_env(self, name: str, value: str | None) -> None:
        """Set (``value``) or unset (None: as this process has it) a variable of the
        jobs started from now on, queued ones too; before :meth:`open`, nothing."""
        env = self.base_env
        if env:  # running: jobs inherit this copy, built at the start
            # A new dict, never changed in place: the start queue may keep the one it sent.
            env = dict(env)
            if value is not None:
                env[name] = value
            elif name in os.environ:
                env[name] = os.environ[name]
            else:
                env.pop(name, None)
            self.base_env = env
            if self.queue is not None:
                self.queue.set_base_env(env)

    def _task_of(self, launch: Launch) -> Task:
        return prepare_task(
            launch,
            root_wd=self._root_wd,
            base_env=self.base_env,
            step_id=f"{self._id}.{launch.run_id}",
            submit_vars=self._submit_vars.get(launch.job),
            gpu=self._engine.pool.gpu,
            cache=self._task_cache,
        )

    # -- starts asked of the start queue, followed by callbacks ------------------------

    def begin(self, launch: Launch) -> None:
        """Ask the start queue for ``launch``'s start now (the reports can wait, jobs not)."""
        assert self.queue is not None
        run_id = launch.run_id
        try:
            task = self._task_of(launch)
            starting = (
                self.queue.begin(task, queued=True, key=run_id)
                if launch.queued
                else self.queue.begin(task)
            )
        except Exception:  # run() prepares it again, and reports why it fails
            return
        if starting is None:
            return
        if launch.queued:
            self.queued_starts[run_id] = starting
        self._note_run(run_id, task)
        # Followed by callbacks from the queue's event reader: no task per job.
        self.served.add(run_id)
        self.tasks += 1
        starting.on_answer(partial(self._on_started, launch))

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)`` called back by the queue's reader, which must go on: a bug
        is logged and raised in the pilot's task group, as it would from ``run``."""
        try:
            fn(*args)
        except Exception as e:
            if self._log is not None:
                self._log.exception("internal error handling a job's start or end")
            if self._tg is not None:
                self._tg.start_soon(_reraise, e)

    def _task_done(self) -> None:
        self.tasks -= 1
        if self.tasks == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no start or process is followed any more."""
        while self.tasks:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _served_started(self, launch: Launch, starting: Starting) -> None:
        run_id, proc = launch.run_id, starting.proc
        watched = False
        if launch.queued:
            self.queued_starts.pop(run_id, None)
        try:
            if proc is None:
                if starting.gone and launch.queued:  # no cores to start it here: requeued
                    self._kill_pending.discard(run_id)
                    stop = self.queue is None or not self.queue.accepting  # else: a node lost
                    self._dispatch(self._engine.requeue(run_id, time.time(), stop))
                    return
                if starting.gone and self._tg is not None:  # the server died: start it here
                    self._tg.start_soon(self.run, launch)
                    watched = True  # run() ends the count
                    return
                self._kill_pending.discard(run_id)
                self._dispatch(
                    self._engine.exited(run_id, -1, time.time(), starting.error, starting.successor)
                )
                return
            self._run_started(launch, proc, proc.started_at)
            proc.on_exit(partial(self._on_exited, run_id, proc))
            watched = True
        finally:
            if not watched:
                self._task_done()

    def _served_exited(self, run_id: int, proc: ServedProcess, code: int) -> None:
        try:
            self._run_exited(run_id, code, proc.ended_at, proc.successor, proc.reason)
        finally:
            self._task_done()

    # -- both ways -----------------------------------------------------------------------

    def _run_started(self, launch: Launch, proc: Process, started_at: float | None) -> None:
        """The engine hears that ``launch`` started as ``proc``; a kill asked meanwhile is sent."""
        run_id = launch.run_id
        self.procs[run_id] = proc
        self._dispatch(self._engine.started(run_id, started_at or time.time(), proc.pid))
        if launch.spec.resources.wt is not None and self._timer_wake is not None:
            self._timer_wake.set()
        if run_id in self._kill_pending:
            self._kill_pending.discard(run_id)
            self._terminate(run_id, proc)

    def _run_exited(
        self,
        run_id: int,
        code: int,
        now: float | None = None,
        successors: list[int] | None = None,
        reason: str | None = None,
    ) -> None:
        """The engine hears that run ``run_id``'s process ended with ``code`` (and
        which queued runs took its cores; ``reason``: why, when not by itself)."""
        del self.procs[run_id]
        self.journaled_runs.discard(run_id)
        self._dispatch(self._engine.exited(run_id, code, now or time.time(), reason, successors))

    def _note_run(self, run_id: int, task: Task) -> None:
        prog, name = self._pname
        if task.argv[0] is not prog:  # (the same string for every iteration of a job)
            prog = task.argv[0]
            self._pname = prog, (name := os.path.basename(prog))
        self._places.note(run_id, task.cwd, name)

    # -- a task per start ------------------------------------------------------------------

    def spawn(self, launch: Launch) -> None:
        """Start ``launch`` in a task of its own (:meth:`run`)."""
        assert self._tg is not None
        self.tasks += 1
        self._tg.start_soon(self.run, launch)

    async def run(self, launch: Launch) -> None:
        """Start ``launch`` through ``Executor.start`` and await its end (counted in
        :attr:`tasks` by the caller)."""
        run_id = launch.run_id
        engine = self._engine
        proc: Process | None = None
        try:
            if launch.queued:  # queued for a start queue that is gone: back to the queue
                self._kill_pending.discard(run_id)
                self._dispatch(engine.requeue(run_id, time.time()))
                return
            task = self._task_of(launch)
            self._note_run(run_id, task)
            if run_id in self._kill_pending:  # cancelled before it started: never start it
                self._kill_pending.discard(run_id)
                self._dispatch(engine.exited(run_id, -1, time.time(), "stopped before it started"))
                return
            assert self.executor is not None
            try:
                proc = await self.executor.start(task)
            except LaunchError as e:
                self._dispatch(engine.exited(run_id, -1, time.time(), str(e)))
                return
            except Exception as e:  # an executor bug must not take other jobs down
                msg = f"job {task.label}: launch failed: {e!r}"
                self._dispatch(engine.exited(run_id, -1, time.time(), msg))
                return
            self._run_started(launch, proc, None)
            # Shielded: leaving the pilot's block by a cancellation stops the
            # jobs in the Pilot (SIGTERM, SIGKILL after kill_grace), not here.
            with anyio.CancelScope(shield=True):
                code = await proc.wait()
            self._run_exited(run_id, code)
        finally:
            self._task_done()

    # -- kills and deadlines ------------------------------------------------------------

    def kill(self, kill: Kill) -> None:
        """Stop a run: its process, its queued start, or its start when it comes."""
        proc = self.procs.get(kill.run_id)
        if proc is None:
            self._kill_pending.add(kill.run_id)
            starting = self.queued_starts.get(kill.run_id)
            if starting is not None and self.queue is not None:  # still queued: take it out
                self.queue.drop(starting)
        else:
            self._terminate(kill.run_id, proc)

    async def run_timer(self) -> None:
        """Hand the engine the time of each of its deadlines (wall times), as they come."""
        engine = self._engine
        while True:
            deadline = engine.next_deadline()
            delay = math.inf if deadline is None else max(0.0, deadline - time.time())
            wake = self._timer_wake = anyio.Event()
            with anyio.move_on_after(delay):
                await wake.wait()
            self._dispatch(engine.tick(time.time()))

    async def stop(self, names: list[str]) -> None:
        """Cancel the jobs ``names`` (the pilot is leaving): SIGTERM, then SIGKILL to
        whatever runs after ``kill_grace``."""
        now = time.time()
        with self.signals_last():
            for name in names:
                with contextlib.suppress(InvalidTransition):
                    self._dispatch(self._engine.cancel(name, now))
        # The escalation tasks may be cancelled with the block: escalate here.
        with anyio.move_on_after(self.kill_grace):
            await self.wait_idle()
        self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL every running process group now; what starts from now on, at once."""
        self._killing = True
        for proc in list(self.procs.values()):
            proc.kill()

    @contextlib.contextmanager
    def signals_last(self) -> Iterator[None]:
        """Within: the SIGTERMs of running jobs wait for the end, so that every queued
        job cancelled with them is out of the start queue before their cores free
        up (else the server would start one in a core a killed job left)."""
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
        if self.procs.get(run_id) is proc:
            proc.kill()


async def _reraise(error: BaseException) -> None:
    raise error
