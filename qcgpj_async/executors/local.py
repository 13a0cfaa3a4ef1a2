"""The local executor: each task is a subprocess of this host, in its own process group.

A task starts directly from its argv (no shell unless it is a script), in a
new session so that its whole process tree can be signalled as a group. Its
end is awaited on a pidfd, so no thread or child watcher is involved and it
works the same under asyncio and trio. When the main process ends, whatever
it left behind in its group is killed before it is reaped: no process
outlives its job, and the group id cannot be reused while we signal it.

Inside a pilot, tasks start from the fork server (``_forkserver``), which does
the same (posix_spawn, a session per task, pidfd waits, leftovers killed
before the reap) in a process of its own, and kills every task if the pilot
dies. MPI models with a hostfile, and every task when the server is not
available, start in this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
from typing import Protocol

import anyio

from ._base import Process
from ._forkserver_link import ForkServer
from ._posix_spawn import spawner
from ._spawn import Starter, make_wd
from ._task import Task

__all__ = ("LocalExecutor", "LocalProcess", "local_argv")

_MPI = ("openmpi", "intelmpi", "srunmpi")
#: MPI models given a hostfile: they start in the pilot's process, not the fork server.
_HOSTFILE = ("openmpi", "intelmpi")


_log = logging.getLogger("qcgpj_async.executors.local")
_warned_no_mpirun: set[str] = set()  # jobs told about already: one line per job


def local_argv(task: Task, hostfile: str | None = None) -> tuple[str, ...]:
    """The argv of a task on this host: MPI models run through ``mpirun -n <cores>``.

    Without an MPI launcher installed (and none named in ``model_opts``), the
    program runs once, as the original ran it outside Slurm, with one warning
    line per job.
    """
    if task.model not in _MPI:
        return task.argv
    opts = task.model_opts
    mpirun = str(opts.get("mpirun", "mpirun"))
    if "mpirun" not in opts and shutil.which(mpirun, path=task.env.get("PATH")) is None:
        if task.job not in _warned_no_mpirun:
            _warned_no_mpirun.add(task.job)
            _log.warning(
                "job %s: model %s: no MPI launcher (%s) found: the program runs once",
                task.job,
                task.model,
                mpirun,
            )
        return task.argv
    extra = [str(a) for a in opts.get("mpirun_args", ()) or ()]  # type: ignore[attr-defined]
    host = []
    if hostfile is not None:
        host = ["--hostfile", hostfile] if task.model == "openmpi" else ["-machinefile", hostfile]
    return (mpirun, "-n", str(task.allocation.cores), *host, *extra, *task.argv)


def _pidfds() -> bool:
    """Whether this kernel has pidfds (Linux >= 5.3): the fork server waits on them."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):  # pragma: no cover - older kernels
        return False


def _hostfile_text(task: Task) -> str:
    n = task.allocation.cores
    return f"localhost slots={n}\n" if task.model == "openmpi" else f"localhost:{n}\n"


class Child(Protocol):
    """What :class:`LocalProcess` needs of a started process (``Popen`` has it)."""

    pid: int
    returncode: int | None

    def wait(self) -> int:
        """Reap it."""
        ...


class LocalProcess:
    """A started local task."""

    def __init__(self, popen: Child, cleanup: str | None = None) -> None:
        self._popen = popen
        self.pid: int | None = popen.pid
        self._cleanup = cleanup
        try:
            self._pidfd: int | None = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # pragma: no cover - kernels before 5.3
            self._pidfd = None

    def _signal_group(self, sig: int) -> None:
        # Only while the leader is not reaped: its pid is then still ours, so
        # the group id cannot have been reused by anyone else.
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, sig)

    async def wait(self) -> int:
        """Wait for the end; the exit code, or -N when killed by signal N."""
        if self._pidfd is not None:
            await anyio.wait_readable(self._pidfd)
        else:  # pragma: no cover
            await anyio.to_thread.run_sync(self._wait_exited)
        return self._reap()

    def _wait_exited(self) -> None:  # pragma: no cover
        os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOWAIT)

    def _reap(self) -> int:
        self._signal_group(signal.SIGKILL)  # leftovers of the group die with the job
        code = self._popen.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._cleanup:
            with contextlib.suppress(OSError):
                os.unlink(self._cleanup)
        return code

    def terminate(self) -> None:
        """SIGTERM to the task's process group."""
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the task's process group."""
        self._signal_group(signal.SIGKILL)


class LocalExecutor:
    """Starts tasks as subprocesses of this host.

    Processes start with posix_spawn where glibc allows (a third of
    ``subprocess.Popen``'s cost), else with ``Popen``; see ``_posix_spawn``.
    Inside a pilot (which runs its :meth:`start_queue` in its task group) they
    start from a fork server, a small process beside the pilot that takes the wait
    for each new process and the reaping off the event loop (``_forkserver``).

    Args:
        scratch_dir: where MPI hostfiles are written (default: the task's wd).
        fast_spawn: False to always start with ``Popen``, in this process.
        fork_server: False to start processes in this process.
    """

    instant = False

    def __init__(
        self, scratch_dir: str | None = None, *, fast_spawn: bool = True, fork_server: bool = True
    ) -> None:
        self.scratch_dir = scratch_dir
        self.fast_spawn = fast_spawn
        self._starter: Starter | None = None
        # A frozen program's sys.executable is the program itself, not Python.
        self._server = (
            ForkServer(argv=local_argv, left_out=_HOSTFILE)
            if fork_server
            and fast_spawn
            and spawner() is not None
            and _pidfds()
            and not getattr(sys, "frozen", False)
            else None
        )

    def start_queue(self) -> ForkServer | None:
        """The fork server, the start queue of this node (None: ``fork_server=False``,
        or this host cannot run one)."""
        return self._server

    async def start(self, task: Task) -> Process:
        """Start ``task``; see the module docstring.

        Raises:
            LaunchError: the wd cannot be created, a stream cannot be opened,
                the executable is missing or not executable.
        """
        if self._server is not None:
            starting = self._server.begin(task)
            if starting is not None:
                return await starting.result()
        return self._spawn(task)

    def _spawn(self, task: Task) -> LocalProcess:
        starter = self._starter
        if starter is None:  # made at the first start: it lists the inherited descriptors
            starter = self._starter = Starter(self.fast_spawn)
        hostfile = None
        if task.model in _HOSTFILE:
            make_wd(task)
            hostfile = os.path.join(self.scratch_dir or task.cwd, f".hostfile.{task.run_id}")
            with open(hostfile, "w") as hf:
                hf.write(_hostfile_text(task))
        try:
            popen = starter.start(task, local_argv(task, hostfile))
        except BaseException:
            if hostfile is not None:
                with contextlib.suppress(OSError):
                    os.unlink(hostfile)
            raise
        return LocalProcess(popen, hostfile)

    async def aclose(self) -> None:
        """Stop the fork server (it kills what still runs); close what the starter holds."""
        if self._server is not None:
            await self._server.aclose()
        if self._starter is not None:
            self._starter.close()
