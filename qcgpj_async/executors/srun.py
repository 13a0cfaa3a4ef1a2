"""The srun executor: inside a Slurm allocation, every task is a step of its own.

Each task runs as ``srun --exact`` on exactly the nodes and cores the engine
gave it (see :mod:`._srun_argv` for the command lines and the measured facts
behind them); ``openmpi``/``intelmpi`` tasks run ``mpirun`` on this host,
which starts its own daemons through Slurm. The srun (or mpirun) process is
a child of the pilot in a session of its own, like a local task. The job's
streams are opened on its node by Slurm (checked and created here first, so
that a bad path fails at launch as it does locally); srun's own messages go
to ``.<step>.srun.log`` in ``scratch_dir``, kept only when srun ended
non-zero without being asked to stop (and wrote something).
The job's wd is srun's wd, its environment the task's, with its share of the
allocation in the ``SLURM_*`` variables and (not for mpirun, which it
confuses) ``SLURM_HOSTFILE`` (one line per core, written to ``scratch_dir``).

Stopping a step (measured on Slurm 22.05):

- SIGTERM to srun SIGKILLs the step's tasks at once (no trap runs) and srun
  exits; SIGKILL to srun leaves the step running until the allocation ends.
  So srun is never SIGKILLed here.
- ``scancel --signal=TERM <job>.<step>`` delivers SIGTERM to the tasks, which
  may clean up; srun exits when they have. ``scancel`` exits non-zero even
  when it worked (a spurious "Invalid job id"), so its status is ignored.

:meth:`SrunProcess.terminate` therefore finds the step by its unique name
(listed by ``squeue -s``) and scancels it with TERM; a step not created yet is
stopped by SIGTERM to srun. :meth:`SrunProcess.kill` SIGTERMs srun, and
scancels the step if srun is still there after :data:`KILL_BACKSTOP` s.
Those commands run in :meth:`SrunProcess.wait`, which the pilot awaits for
every process: ``terminate()``/``kill()`` stay synchronous and never block.
An mpirun gets SIGTERM alone to terminate (it stops its ranks), its whole
group (the sruns of its daemons) to be killed; its daemons' steps carry the
task's step name, and whatever of them is left when it ends is scancelled.
A step whose srun died of a signal nobody sent through us is scancelled when
the death is noticed, and :meth:`SrunExecutor.aclose` scancels whatever step
of this executor Slurm still lists: no step outlives the pilot.

Exit codes (measured on Slurm 22.05; rule in :func:`step_exit_code`): srun
exits with the highest exit code of the step's tasks, or 128+N when a task
was killed by signal N, and says which in its messages (``srun: error: n1:
task 0: Killed`` against ``... task 0: Exited with exit code 137``). Any
task killed by a signal makes srun's status that of a signal (the highest
signal number of the tasks), whatever exit codes the others had. So a step
is reported as the local executor reports a process: -N when srun exited
128+N and its messages name signal N as the death of a task; a task that
itself exits 137 stays 137. -N also when srun itself died of signal N.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Sequence

import anyio

from ._base import LaunchError
from ._spawn import make_wd, prepare_streams, spawn
from ._srun_argv import (
    MPIRUN_MODELS,
    hostfile_text,
    mpirun_argv,
    mpirun_environment,
    rankfile_text,
    slurm_environment,
    srun_argv,
    srun_environment,
    step_environment,
)
from ._task import Task
from .local import LocalProcess

__all__ = (
    "KILL_BACKSTOP",
    "MESSAGES_READ_LIMIT",
    "SLURM_COMMAND_TIMEOUT",
    "SrunExecutor",
    "SrunProcess",
    "slurm_environment",
    "srun_argv",
    "step_exit_code",
)

SLURM_COMMAND_TIMEOUT = 20.0
"""Seconds granted to one ``squeue`` or ``scancel``."""

KILL_BACKSTOP = 2.0
"""Seconds after ``kill()`` before the step is also scancelled (srun takes ~20 ms)."""


MESSAGES_READ_LIMIT = 1 << 20
"""Bytes of srun's messages read to tell a signal from an exit code."""

# srun's line for tasks that ended abnormally (src/srun/launch.c, _task_finish):
# "srun: error: <hosts>: task[s] <ids>: <what>", <what> being "Exited with exit
# code N", "Out Of Memory", or strsignal() of the signal, maybe "(core dumped)".
_TASK_END = re.compile(
    r"^srun: error: .*?: tasks? [0-9,\[\]-]+: (.*?)(?: \(core dumped\))?\s*$", re.MULTILINE
)


def _signal_descriptions() -> dict[str, int]:
    # The same libc strsignal() srun calls, in the C locale: srun runs on this host.
    found: dict[str, int] = {}
    for n in range(1, signal.NSIG):
        try:
            text = signal.strsignal(n)
        except ValueError:
            continue
        if text:
            found.setdefault(text, n)
    return found


_SIGNALS = _signal_descriptions()


def step_exit_code(code: int, messages: str) -> int:
    """A step's exit code as the local executor would report it: -N for signal N.

    srun exits 128+N both when a task was killed by signal N and when a task
    exited with code 128+N itself; only its messages tell them apart. The
    code becomes -N when some task is reported killed by signal N, by that
    signal's description (``Killed``, ``Terminated``, ``Segmentation fault``,
    with or without ``(core dumped)``). srun gives a signal precedence over
    every exit code and keeps the highest signal number, so its 128+N then
    comes from that signal. In every other case the code is returned as is:
    a task that ran ``exit 137`` (``Exited with exit code 137``), messages
    missing or unreadable, or worded otherwise (a translated strsignal).

    Args:
        code: srun's exit status (negative: srun itself died of a signal).
        messages: what srun wrote to its stderr.

    Returns:
        ``-(code - 128)`` when a task's death by that signal is reported, else ``code``.
    """
    sig = code - 128
    if sig <= 0 or sig >= signal.NSIG:
        return code
    for m in _TASK_END.finditer(messages):
        if _SIGNALS.get(m.group(1)) == sig:
            return -sig
    return code


def _unlink(paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


class _SlurmCommands:
    """``squeue``/``scancel`` for the steps of one allocation (beside the srun in use)."""

    def __init__(self, srun: str) -> None:
        where = os.path.dirname(srun)
        self.squeue = os.path.join(where, "squeue") if where else "squeue"
        self.scancel = os.path.join(where, "scancel") if where else "scancel"

    async def _run(self, argv: Sequence[str]) -> str:
        with anyio.move_on_after(SLURM_COMMAND_TIMEOUT):
            try:
                done = await anyio.run_process(list(argv), check=False, stdin=subprocess.DEVNULL)
            except OSError:
                return ""
            return done.stdout.decode(errors="replace")
        return ""

    async def steps(self, job_id: str, name: str | None = None) -> list[tuple[str, str]]:
        """``(step id, step name)`` of the job's running steps (only those named ``name``).

        ``squeue --steps`` ignores ``--name`` (Slurm 22.05 lists every step
        whatever it says), so the names are matched here.
        """
        argv = [self.squeue, "--noheader", "--steps", f"--jobs={job_id}", "--format=%i %j"]
        out = await self._run(argv)
        pairs = (line.split(None, 1) for line in out.splitlines())
        found = [(p[0], p[1].strip()) for p in pairs if len(p) == 2]
        return found if name is None else [p for p in found if p[1] == name]

    async def cancel(self, step_ids: Sequence[str], sig: str | None = None) -> None:
        """``scancel`` the steps (SIGKILL, or ``sig`` such as ``TERM``)."""
        if step_ids:
            opt = [f"--signal={sig}"] if sig else []
            await self._run([self.scancel, "--quiet", *opt, *step_ids])


class SrunProcess:
    """A task running as a Slurm step, or as an mpirun whose daemons are steps.

    See the module docstring for how each is stopped.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        job_id: str,
        step_name: str,
        files: Sequence[str],
        slurm: _SlurmCommands,
        executor: SrunExecutor,
        mpirun: bool = False,
        log: str | None = None,
    ) -> None:
        self._proc = LocalProcess(popen)
        self.pid: int | None = popen.pid
        self.step_name = step_name
        self.mpirun = mpirun
        self._job_id = job_id
        self._files = tuple(files)
        self._log = log
        self._slurm = slurm
        self._executor = executor
        self._wake = anyio.Event()
        self._want_term = False
        self._want_kill = False
        self._handled_term = False
        self._handled_kill = False
        self._code: int | None = None

    def terminate(self) -> None:
        """Ask it to stop: SIGTERM to the step's tasks (through ``scancel``), or to mpirun."""
        if self._code is not None or self._want_term:
            return
        self._want_term = True
        if self.mpirun:
            # mpirun alone: it forwards the signal to the ranks and stops its daemons.
            if self._proc._popen.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc._popen.pid, signal.SIGTERM)
        else:
            self._wake.set()  # scancel needs squeue first: done in wait()

    def kill(self) -> None:
        """Stop it now: SIGTERM to srun (which SIGKILLs the tasks), ``scancel`` as backstop.

        For mpirun: SIGTERM to its whole group, so the sruns of its daemons
        end their steps, then SIGKILL and ``scancel`` as backstop.
        """
        if self._code is None:
            self._proc._signal_group(signal.SIGTERM)
            if not self._want_kill:
                self._want_kill = True
                self._wake.set()

    async def wait(self) -> int:
        """Wait for srun (or mpirun) to end, carrying out stop requests meanwhile.

        Returns:
            The step's exit code: the highest of the tasks' exit codes; -N
            when a task was killed by signal N (the highest N if several
            were), or when srun itself was (see :func:`step_exit_code`). An
            mpirun's exit status as it is.
        """
        if self._code is not None:
            return self._code
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._stopper)
            code = await self._proc.wait()
            tg.cancel_scope.cancel()
        if code < 0 or self.mpirun:
            # srun died of a signal (the OOM killer's SIGKILL, say) and its
            # step may run on without it; or mpirun left daemon steps.
            with anyio.CancelScope(shield=True):
                await self._cancel_steps(None)
        elif code > 128 and self._log is not None:
            code = step_exit_code(code, self._read_log())
        self._code = code
        keep = code != 0 and not (self._want_term or self._want_kill) and self._log_written()
        _unlink([f for f in self._files if not (keep and f == self._log)])
        self._executor._forget(self)
        return code

    def _read_log(self) -> str:
        assert self._log is not None
        try:
            with open(self._log, "rb") as f:
                return f.read(MESSAGES_READ_LIMIT).decode(errors="replace")
        except OSError:
            return ""

    def _log_written(self) -> bool:
        try:
            return self._log is not None and os.path.getsize(self._log) > 0
        except OSError:
            return False

    async def _cancel_steps(self, sig: str | None) -> bool:
        found = await self._slurm.steps(self._job_id, self.step_name)
        await self._slurm.cancel([sid for sid, _ in found], sig)
        return bool(found)

    async def _stopper(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._want_term and not self._handled_term and not self.mpirun:
                self._handled_term = True
                if not await self._cancel_steps("TERM"):
                    # No step yet (srun still creating it): nothing runs that
                    # could stop gracefully.
                    self._proc._signal_group(signal.SIGTERM)
            if self._want_kill and not self._handled_kill:
                self._handled_kill = True
                await anyio.sleep(KILL_BACKSTOP)
                await self._cancel_steps(None)
                if self.mpirun:
                    self._proc.kill()


class SrunExecutor:
    """Starts every task as a Slurm step (``srun --exact``) of the allocation we run in.

    Args:
        scratch_dir: where ``SLURM_HOSTFILE`` files and rankfiles are written
            (default: the task's wd); on a file system the nodes share.
        srun: the srun program; ``squeue``/``scancel`` are taken from the
            same directory when it is a path.
        extra_args: srun options for every step (e.g. ``["--mem-per-cpu=0"]``
            where memory is a consumable resource), before a job's own
            ``model_opts.srun_args``.
    """

    instant = False

    def __init__(
        self, scratch_dir: str | None = None, *, srun: str = "srun", extra_args: Sequence[str] = ()
    ) -> None:
        self.scratch_dir = scratch_dir
        self.srun = srun
        self.extra_args = tuple(extra_args)
        self._slurm = _SlurmCommands(srun)
        # Step names: unique to this executor, so only our steps are ever cancelled.
        self.prefix = f"qcgpj-{uuid.uuid4().hex[:10]}-"
        self._live: dict[int, SrunProcess] = {}
        self._job_ids: set[str] = set()

    async def start(self, task: Task) -> SrunProcess:
        """Start ``task`` as a step (or an mpirun); see the module docstring.

        Raises:
            LaunchError: not inside an allocation, the wd or a file cannot be
                created, a stream cannot be opened, srun/mpirun is missing.
        """
        job_id = task.env.get("SLURM_JOB_ID", "").strip()
        if not job_id:
            raise LaunchError(
                f"job {task.label}: the srun executor runs inside a Slurm"
                " allocation, and SLURM_JOB_ID is not set"
            )
        make_wd(task)
        step = f"{self.prefix}{task.run_id}"
        scratch = self.scratch_dir or task.cwd
        files: list[str] = []
        try:
            if task.model in MPIRUN_MODELS:
                rankfile = None
                if task.model == "openmpi":
                    rankfile = os.path.join(scratch, f".{step}.rankfile")
                    self._write(task, rankfile, rankfile_text(task.allocation))
                    files.append(rankfile)
                popen = spawn(task, mpirun_argv(task, rankfile), mpirun_environment(task, step))
                proc = SrunProcess(
                    popen,
                    job_id=job_id,
                    step_name=step,
                    files=files,
                    slurm=self._slurm,
                    executor=self,
                    mpirun=True,
                )
            else:
                hostfile = os.path.join(scratch, f".{step}.hostfile")
                self._write(task, hostfile, hostfile_text(task.allocation))
                files.append(hostfile)
                try:
                    argv = srun_argv(
                        task,
                        step_name=step,
                        step_env=step_environment(task, hostfile),
                        srun=self.srun,
                        extra_args=self.extra_args,
                    )
                except ValueError as e:
                    raise LaunchError(f"job {task.label}: {e}") from None
                prepare_streams(task)
                log = os.path.join(scratch, f".{step}.srun.log")
                files.append(log)
                popen = spawn(task, argv, srun_environment(task.env, hostfile), log=log)
                proc = SrunProcess(
                    popen,
                    job_id=job_id,
                    step_name=step,
                    files=files,
                    slurm=self._slurm,
                    executor=self,
                    log=log,
                )
        except BaseException:
            _unlink(files)
            raise
        self._job_ids.add(job_id)
        self._live[id(proc)] = proc
        return proc

    @staticmethod
    def _write(task: Task, path: str, text: str) -> None:
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError as e:
            raise LaunchError(f"job {task.label}: cannot write {path!r}: {e.strerror}") from None

    def _forget(self, proc: SrunProcess) -> None:
        self._live.pop(id(proc), None)

    def start_queue(self) -> None:
        """None: every task starts through :meth:`start`."""
        return

    async def aclose(self) -> None:
        """Stop what is left: SIGTERM to any srun still running, ``scancel`` of our steps.

        Only steps named by this executor are cancelled; after a normal pilot
        run there are none and this costs one ``squeue`` per allocation.
        """
        with anyio.CancelScope(shield=True):
            for proc in list(self._live.values()):
                proc.kill()
            for job_id in sorted(self._job_ids):
                steps = await self._slurm.steps(job_id)
                ours = [sid for sid, name in steps if name.startswith(self.prefix)]
                await self._slurm.cancel(ours)

    @property
    def running(self) -> int:
        """srun/mpirun processes started and not yet reaped."""
        return len(self._live)
