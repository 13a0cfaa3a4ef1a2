"""Start one subprocess of a task: working directory, streams, process group, errors.

Shared by the executors that run a program on this host: the local executor
runs the task itself, the srun executor runs ``srun`` (which forwards the
task's streams to and from the files opened here) or ``mpirun``.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO

import attrs

from ._base import LaunchError
from ._posix_spawn import Spawner, spawner
from ._task import Task

__all__ = ("Child", "Starter", "make_wd", "prepare_streams", "spawn")


def _open(path: str | None, mode: str, what: str, label: str) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        if mode[0] == "w":
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, mode)
    except OSError as e:
        raise LaunchError(f"job {label}: cannot open {what} {path!r}: {e.strerror}") from None


def make_wd(task: Task, known: set[str] | None = None) -> None:
    """Create the task's working directory.

    Args:
        task: the task.
        known: directories made before (skipped; ``task.cwd`` is added).

    Raises:
        LaunchError: it cannot be created.
    """
    if known is not None and task.cwd in known:
        return
    try:
        os.makedirs(task.cwd, exist_ok=True)
    except OSError as e:
        msg = f"job {task.label}: cannot create working directory {task.cwd!r}: {e.strerror}"
        raise LaunchError(msg) from None
    if known is not None:
        if len(known) > 4096:
            known.clear()
        known.add(task.cwd)


def prepare_streams(task: Task) -> None:
    """Check what a job's streams need, for a launcher that opens them itself.

    stdin must be readable; stdout and stderr are created (empty) with their
    directories, as :func:`spawn` would, so the same errors come at launch.

    Raises:
        LaunchError: a stream cannot be opened.
    """
    for path, mode, what in ((task.stdin, "rb", "stdin"), (task.stdout, "wb", "stdout"),
                             (task.stderr, "wb", "stderr")):
        f = _open(path, mode, what, task.label)
        if f is not None:
            f.close()


def spawn(
    task: Task, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
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
    files: list[IO[bytes]] = []
    try:
        fin = _open(task.stdin, "rb", "stdin", label)
        if fin:
            files.append(fin)
        fout = _open(task.stdout, "wb", "stdout", label)
        if fout:
            files.append(fout)
        if task.stderr is not None and task.stderr == task.stdout:
            ferr = fout
        else:
            ferr = _open(task.stderr, "wb", "stderr", label)
            if ferr:
                files.append(ferr)
        try:
            return subprocess.Popen(
                argv,
                cwd=task.cwd,
                env=task.env if env is None else env,
                stdin=fin or subprocess.DEVNULL,
                stdout=fout or subprocess.DEVNULL,
                stderr=ferr or subprocess.DEVNULL,
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
        for f in files:
            f.close()


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
    same :class:`LaunchError` messages. Working directories made once are
    remembered (a ``makedirs`` per start costs more than the spawn saves).

    Args:
        fast: use posix_spawn where it is available (False: always Popen).
    """

    def __init__(self, fast: bool = True) -> None:
        self._spawner: Spawner | None = spawner() if fast else None
        self._devnull = -1
        self._wds: set[str] = set()
        self._paths: dict[tuple[str, str], str] = {}

    @property
    def fast(self) -> bool:
        """Whether posix_spawn is used."""
        return self._spawner is not None

    def start(self, task: Task, argv: Sequence[str],
              env: Mapping[str, str] | None = None) -> Child | subprocess.Popen[bytes]:
        """Make the task's wd, open its streams and start ``argv`` there.

        Raises:
            LaunchError: the wd or a stream cannot be made, the program is
                missing or not executable.
        """
        if self._spawner is None:
            make_wd(task)
            return spawn(task, argv, env)
        make_wd(task, self._wds)  # a wd removed since: the start fails, _spawn makes it again
        env = task.env if env is None else env
        label = task.label
        path = self._which(argv[0], env)
        if path is None:
            make_wd(task)
            return spawn(task, argv, env)
        if not path:
            raise LaunchError(f"job {label}: executable {argv[0]!r} not found")
        files: list[IO[bytes]] = []
        try:
            fds = []
            for name, mode, what in ((task.stdin, "rb", "stdin"), (task.stdout, "wb", "stdout")):
                f = _open(name, mode, what, label)
                if f is not None:
                    files.append(f)
                fds.append(f.fileno() if f is not None else self._null())
            if task.stderr is not None and task.stderr == task.stdout:
                fds.append(fds[1])
            else:
                f = _open(task.stderr, "wb", "stderr", label)
                if f is not None:
                    files.append(f)
                fds.append(f.fileno() if f is not None else self._null())
            if min(fds) <= 2:  # our own 0-2 are closed: Popen sorts the dup2s out
                make_wd(task)
                return spawn(task, argv, env)
            return Child(self._spawn(task, path, argv, env, fds))
        finally:
            for f in files:
                f.close()

    def make_wd(self, task: Task) -> None:
        """:func:`make_wd`."""
        make_wd(task)

    def _null(self) -> int:
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        return self._devnull

    def _spawn(self, task: Task, path: str, argv: Sequence[str], env: Mapping[str, str],
               fds: list[int]) -> int:
        assert self._spawner is not None
        label, prog = task.label, argv[0]
        for attempt in (1, 2):
            try:
                return self._spawner.spawn(path, argv, env, task.cwd, fds[0], fds[1], fds[2])
            except ValueError as e:
                raise LaunchError(f"job {label}: cannot start {prog!r}: {e}") from None
            except OSError as e:
                self._paths.pop((prog, env.get("PATH", os.defpath)), None)
                if attempt == 1 and not os.path.isdir(task.cwd):  # removed since it was made
                    self._wds.discard(task.cwd)
                    make_wd(task, self._wds)
                    continue
                if e.errno == errno.ENOENT:
                    raise LaunchError(f"job {label}: executable {prog!r} not found") from None
                if e.errno == errno.EACCES:
                    raise LaunchError(f"job {label}: {prog!r} is not executable") from None
                raise LaunchError(f"job {label}: cannot start {prog!r}: {e}") from None
        raise AssertionError("unreachable")

    def _which(self, prog: str, env: Mapping[str, str]) -> str | None:
        """``prog`` searched in the job's PATH as Popen does, remembered; with a ``/``: itself.

        None when the search meets a relative PATH entry (it is relative to the
        job's wd: Popen searches it from there); ``""`` when it is not found.
        """
        if "/" in prog:
            return prog
        search = env.get("PATH", os.defpath)
        key = (prog, search)
        path = self._paths.get(key)
        if path is None:
            first = None
            for d in search.split(os.pathsep):
                if not os.path.isabs(d):
                    return None
                cand = os.path.join(d, prog)
                if os.path.isfile(cand):
                    first = first or cand
                    if os.access(cand, os.X_OK):
                        path = cand
                        break
            path = path or first
            if path is None:  # not remembered: it may appear later
                return ""
            if len(self._paths) > 1024:
                self._paths.clear()
            self._paths[key] = path
        return path

    def close(self) -> None:
        """Close ``/dev/null``."""
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
