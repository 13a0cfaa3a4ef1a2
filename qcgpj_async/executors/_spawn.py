"""Start one subprocess of a task: working directory, streams, process group, errors.

Shared by the executors that run a program on this host: the local executor
runs the task itself, the srun executor runs ``srun`` (which forwards the
task's streams to and from the files opened here) or ``mpirun``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

import attrs

from ._base import LaunchError
from ._posix_spawn import WRITE, Launcher, LaunchFailure, make_dir, open_stream, spawner
from ._task import Task

__all__ = ("Child", "Starter", "make_wd", "prepare_streams", "spawn")


def _open(path: str | None, flags: int, what: str, label: str) -> int | None:
    if path is None:
        return None
    try:
        return open_stream(label, path, flags, what)
    except LaunchFailure as e:
        raise LaunchError(str(e)) from None


def make_wd(task: Task) -> None:
    """Create the task's working directory.

    Raises:
        LaunchError: it cannot be created.
    """
    try:
        make_dir(task.label, task.cwd)
    except LaunchFailure as e:
        raise LaunchError(str(e)) from None


def prepare_streams(task: Task) -> None:
    """Check what a job's streams need, for a launcher that opens them itself.

    stdin must be readable; stdout and stderr are created (empty) with their
    directories, as :func:`spawn` would, so the same errors come at launch.

    Raises:
        LaunchError: a stream cannot be opened.
    """
    for path, flags, what in (
        (task.stdin, os.O_RDONLY, "stdin"),
        (task.stdout, WRITE, "stdout"),
        (task.stderr, WRITE, "stderr"),
    ):
        fd = _open(path, flags, what, task.label)
        if fd is not None:
            os.close(fd)


def spawn(
    task: Task,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    log: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` for ``task`` in the task's wd, with its streams, in a new session.

    The working directory must exist (:func:`make_wd`). Unset streams are
    ``/dev/null``; stdout and stderr naming the same file share one open file.

    Args:
        task: the task (wd, streams, label for messages).
        argv: what to run (the task's own argv, or a launcher's).
        env: the environment (default: the task's).
        log: instead of the task's streams (a launcher that opens them
            itself), stdin from ``/dev/null`` and stdout and stderr to this file.

    Returns:
        The started process, leader of its own process group.

    Raises:
        LaunchError: a stream cannot be opened, the program is missing or
            not executable.
    """
    label = task.label
    if log is not None:
        task = attrs.evolve(task, stdin=None, stdout=log, stderr=log)
    fds: list[int] = []
    try:
        fin = _open(task.stdin, os.O_RDONLY, "stdin", label)
        if fin is not None:
            fds.append(fin)
        fout = _open(task.stdout, WRITE, "stdout", label)
        if fout is not None:
            fds.append(fout)
        if task.stderr is not None and task.stderr == task.stdout:
            ferr = fout
        else:
            ferr = _open(task.stderr, WRITE, "stderr", label)
            if ferr is not None:
                fds.append(ferr)
        dn = subprocess.DEVNULL
        try:
            return subprocess.Popen(
                argv,
                cwd=task.cwd,
                env=task.env if env is None else env,
                stdin=dn if fin is None else fin,
                stdout=dn if fout is None else fout,
                stderr=dn if ferr is None else ferr,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise LaunchError(f"job {label}: executable {argv[0]!r} not found") from None
        except PermissionError:
            raise LaunchError(f"job {label}: {argv[0]!r} is not executable") from None
        except OSError as e:
            raise LaunchError(f"job {label}: cannot start {argv[0]!r}: {e}") from None
    finally:
        for fd in fds:
            os.close(fd)


class Child:
    """A process started by :class:`Starter` (``Popen``'s ``pid``/``returncode``/``wait``)."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        """Reap it (blocks until it ends); the exit code, or -N when killed by signal N."""
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped elsewhere: Popen says 0 too
                self.returncode = 0
        return self.returncode


class Starter:
    """Starts tasks on this host: posix_spawn where glibc can (:mod:`._posix_spawn`), else Popen.

    Both ways give the same child: the task's wd, streams (``/dev/null`` when
    unset), environment, a session of its own, SIGPIPE at its default, and the
    same :class:`LaunchError` messages.

    Args:
        fast: use posix_spawn where it is available (False: always Popen).
    """

    def __init__(self, fast: bool = True) -> None:
        sp = spawner() if fast else None
        self._launcher = Launcher(sp) if sp is not None else None

    @property
    def fast(self) -> bool:
        """Whether posix_spawn is used."""
        return self._launcher is not None

    def start(
        self, task: Task, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Child | subprocess.Popen[bytes]:
        """Make the task's wd, open its streams and start ``argv`` there.

        Raises:
            LaunchError: the wd or a stream cannot be made, the program is
                missing or not executable.
        """
        if self._launcher is None:
            make_wd(task)
            return spawn(task, argv, env)
        try:
            return Child(
                self._launcher.launch(
                    task.label,
                    argv,
                    task.env if env is None else env,
                    task.cwd,
                    task.stdin,
                    task.stdout,
                    task.stderr,
                )
            )
        except LaunchFailure as e:
            raise LaunchError(str(e)) from None

    def close(self) -> None:
        """Close what the launcher holds open."""
        if self._launcher is not None:
            self._launcher.close()
