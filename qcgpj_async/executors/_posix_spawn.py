"""posix_spawn(3) with a working directory, through ctypes: the cheapest start of a process.

``subprocess.Popen`` costs this process about 160 µs of CPU per start (on the
test machine), most of it Python code around the fork; glibc's posix_spawn
costs about a third of that. ``os.posix_spawn`` cannot change the child's
working directory (Python 3.11 has no chdir file action), so this module calls
glibc directly, with ``posix_spawn_file_actions_addchdir_np`` (glibc >= 2.29).

The child gets: a new session (``setsid``: its own process group), SIGPIPE
and SIGXFSZ back to their defaults (Python ignores SIGPIPE; ``Popen`` resets
them too), the three streams given, the directory, the environment. File
descriptors are not closed one by one as ``Popen(close_fds=True)`` does: every
descriptor Python opens is close-on-exec already, and the descriptors this
process inherited open and inheritable are closed in the child explicitly
(:meth:`Spawner.__init__` lists them).

Where this is not glibc, or too old, :func:`spawner` returns None and the
executor uses ``Popen``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
from collections.abc import Mapping, Sequence

__all__ = (
    "LaunchFailure",
    "Launcher",
    "Spawner",
    "env_entry",
    "make_dir",
    "open_stream",
    "spawner",
)

# glibc's flag values (bits/spawn.h); only used where glibc is the C library.
_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSID = 0x80
# Opaque glibc types, allocated generously: posix_spawnattr_t is 336 bytes,
# posix_spawn_file_actions_t 80, sigset_t 128 on x86_64 and aarch64.
_ATTR_SIZE, _ACTIONS_SIZE, _SIGSET_SIZE = 1024, 256, 256

_P = ctypes.c_void_p


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (ValueError, OSError, AttributeError):
        return None


def _inherited_fds() -> list[int]:
    """Descriptors above 2 that are open and inheritable now (``Popen`` would close them)."""
    found = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                pass
    return found


class Spawner:
    """glibc's posix_spawn, bound once; one instance per event loop thread (buffers are reused).

    Raises:
        OSError: the C library lacks a function (use :func:`spawner`).
    """

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            self._fa_init = libc.posix_spawn_file_actions_init
            self._fa_destroy = libc.posix_spawn_file_actions_destroy
            self._fa_chdir = libc.posix_spawn_file_actions_addchdir_np
            self._fa_dup2 = libc.posix_spawn_file_actions_adddup2
            self._fa_close = libc.posix_spawn_file_actions_addclose
            self._spawn = libc.posix_spawn
            attr_init = libc.posix_spawnattr_init
            setflags = libc.posix_spawnattr_setflags
            setsigdefault = libc.posix_spawnattr_setsigdefault
            sigemptyset, sigaddset = libc.sigemptyset, libc.sigaddset
        except AttributeError as e:
            raise OSError(f"posix_spawn with chdir is not available: {e}") from None
        for f in (self._fa_init, self._fa_destroy):
            f.argtypes, f.restype = [_P], ctypes.c_int
        self._fa_chdir.argtypes = [_P, ctypes.c_char_p]
        self._fa_dup2.argtypes = [_P, ctypes.c_int, ctypes.c_int]
        self._fa_close.argtypes = [_P, ctypes.c_int]
        self._spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, _P, _P, _P, _P]
        for f in (self._fa_chdir, self._fa_dup2, self._fa_close, self._spawn):
            f.restype = ctypes.c_int
        self._attr = ctypes.create_string_buffer(_ATTR_SIZE)
        self._sigs = ctypes.create_string_buffer(_SIGSET_SIZE)
        ok = attr_init(self._attr) == 0 and sigemptyset(self._sigs) == 0
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            ok = ok and sigaddset(self._sigs, int(sig)) == 0
        ok = ok and setsigdefault(self._attr, self._sigs) == 0
        ok = (
            ok
            and setflags(self._attr, ctypes.c_short(_POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGDEF))
            == 0
        )
        if not ok:
            raise OSError("posix_spawn attributes cannot be set")
        self._actions = ctypes.create_string_buffer(_ACTIONS_SIZE)
        self._actions_key: tuple[str, int, int, int] | None = None
        self._pid = ctypes.c_int()
        self._argv = (ctypes.c_char_p * 16)()
        self._envp = (ctypes.c_char_p * 128)()
        self.close_fds = _inherited_fds()

    def _array(
        self, arr: ctypes.Array[ctypes.c_char_p], items: list[ctypes.c_char_p | bytes | None]
    ) -> ctypes.Array[ctypes.c_char_p]:
        """``items`` and a NULL in ``arr`` (reused; a longer one when it is too short)."""
        n = len(items)
        if n >= len(arr):
            arr = (ctypes.c_char_p * (2 * n + 1))()
        arr[:n] = items
        arr[n] = None
        return arr

    def spawn(
        self,
        path: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        stdin: int,
        stdout: int,
        stderr: int,
        envp: Sequence[bytes] | None = None,
    ) -> int:
        """Start ``path`` with ``argv`` and ``env`` in ``cwd``, in a new session; its pid.

        ``envp``, when given, is ``env`` already encoded (:func:`env_entry`).

        Raises:
            OSError: it could not start (errno of the chdir, a dup2 or the exec).
            ValueError: a NUL byte in an argument, a variable, or a path; ``=`` in a
                variable's name.
        """
        enc = _encode
        bargv: list[ctypes.c_char_p | bytes | None] = [enc(a) for a in argv]
        benv: list[ctypes.c_char_p | bytes | None] = (
            [env_entry(k, v) for k, v in env.items()] if envp is None else list(envp)
        )
        bpath = enc(path)
        self._argv = argv_arr = self._array(self._argv, bargv)
        self._envp = envp_arr = self._array(self._envp, benv)
        fa = self._file_actions(cwd, stdin, stdout, stderr)
        rc = self._spawn(ctypes.byref(self._pid), bpath, fa, self._attr, argv_arr, envp_arr)
        if rc:
            raise OSError(rc, os.strerror(rc), path)
        return self._pid.value

    def _file_actions(
        self, cwd: str, stdin: int, stdout: int, stderr: int
    ) -> ctypes.Array[ctypes.c_char]:
        """The chdir, the streams' dup2 and the closes, kept for the next start with the
        same wd and descriptor numbers (the actions name numbers, resolved at each start).

        Raises:
            OSError: an action cannot be recorded.
            ValueError: a NUL byte in ``cwd``.
        """
        key = (cwd, stdin, stdout, stderr)
        fa = self._actions
        if key == self._actions_key:
            return fa
        bcwd = _encode(cwd)
        if self._actions_key is not None:
            self._actions_key = None
            self._fa_destroy(fa)
        if self._fa_init(fa) != 0:
            raise OSError(ctypes.get_errno(), "posix_spawn_file_actions_init failed")
        rc = self._fa_chdir(fa, bcwd)
        for src, dst in ((stdin, 0), (stdout, 1), (stderr, 2)):
            rc = rc or self._fa_dup2(fa, src, dst)
        for fd in self.close_fds:
            rc = rc or self._fa_close(fa, fd)
        if rc:
            self._fa_destroy(fa)
            raise OSError(rc, os.strerror(rc))
        self._actions_key = key
        return fa


def env_entry(name: str, value: str) -> bytes:
    """``name=value`` encoded for an environment block.

    Raises:
        ValueError: ``=`` in the name, an empty name, a NUL byte.
    """
    if "=" in name or not name:
        raise ValueError(f"illegal environment variable name {name!r}")
    return _encode(f"{name}={value}")


def _encode(s: str) -> bytes:
    # The str is searched, not the bytes: ``bytes in bytes`` first tries the
    # argument as an int and formats a TypeError (~1,800 instructions a call);
    # UTF-8 with surrogateescape makes a NUL byte only from "\0".
    if "\0" in s:
        raise ValueError(f"embedded null byte in {s!r}")
    return s.encode("utf-8", "surrogateescape")


def spawner() -> Spawner | None:
    """A :class:`Spawner`, or None where glibc's posix_spawn cannot chdir (use ``Popen``)."""
    version = _glibc_version()
    if version is None or version < (2, 29):
        return None
    try:
        return Spawner()
    except OSError:
        return None


class LaunchFailure(Exception):
    """A process could not start; the message names the job and says why."""


WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def make_dir(label: str, cwd: str) -> None:
    """Create job ``label``'s working directory.

    Raises:
        LaunchFailure: it cannot be created.
    """
    try:
        os.makedirs(cwd, exist_ok=True)
    except OSError as e:
        msg = f"job {label}: cannot create working directory {cwd!r}: {e.strerror}"
        raise LaunchFailure(msg) from None


def open_stream(label: str, path: str, flags: int, what: str) -> int:
    """Open job ``label``'s ``what`` (stdin, stdout, stderr); written ones with their folder.

    Raises:
        LaunchFailure: it cannot be opened.
    """
    try:
        if flags & os.O_CREAT:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return _high(os.open(path, flags | os.O_CLOEXEC, 0o666))
    except OSError as e:
        raise LaunchFailure(f"job {label}: cannot open {what} {path!r}: {e.strerror}") from None


class Launcher:
    """Starts one job's process from plain data: wd, streams, program search, errors.

    Used in this process (:class:`..._spawn.Starter`) and in the fork server
    (:mod:`._forkserver`), which imports nothing but the standard library and
    this module. Working directories made once, and programs found in a PATH,
    are remembered (a ``makedirs`` or a PATH search per start costs more than
    the spawn saves); a wd removed since is made again.
    """

    def __init__(self, spawner: Spawner) -> None:
        self._spawner = spawner
        self._devnull = -1
        self._wds: set[str] = set()
        self._paths: dict[tuple[str, str], str] = {}

    def launch(
        self,
        label: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        stdin: str | None,
        stdout: str | None,
        stderr: str | None,
        envp: Sequence[bytes] | None = None,
    ) -> int:
        """Start ``argv`` for job ``label`` (``job`` or ``job:it``); its pid.

        Unset streams are ``/dev/null``; stdout and stderr naming the same file
        share one open file. ``envp``: ``env`` encoded, where the caller has it.

        Raises:
            LaunchFailure: the wd or a stream cannot be made, the program is
                missing or not executable, an argument holds a NUL byte.
        """
        self._make_wd(label, cwd)
        prog = argv[0]
        path = self._which(prog, env, cwd)
        if path is None:
            raise LaunchFailure(f"job {label}: executable {prog!r} not found")
        fds: list[int] = []
        try:
            fds.append(self._open(label, stdin, os.O_RDONLY, "stdin"))
            fds.append(self._open(label, stdout, WRITE, "stdout"))
            if stderr is not None and stderr == stdout:
                fds.append(fds[1])
            else:
                fds.append(self._open(label, stderr, WRITE, "stderr"))
            return self._spawn(label, path, argv, env, cwd, fds, envp)
        finally:
            for fd in set(fds):
                if fd != self._devnull:
                    os.close(fd)

    def _open(self, label: str, path: str | None, flags: int, what: str) -> int:
        if path is None:
            if self._devnull < 0:
                self._devnull = _high(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
            return self._devnull
        return open_stream(label, path, flags, what)

    def _make_wd(self, label: str, cwd: str) -> None:
        if cwd in self._wds:
            return
        make_dir(label, cwd)
        if len(self._wds) > 4096:
            self._wds.clear()
        self._wds.add(cwd)

    def _spawn(
        self,
        label: str,
        path: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        fds: list[int],
        envp: Sequence[bytes] | None,
    ) -> int:
        prog = argv[0]
        for attempt in (1, 2):
            try:
                return self._spawner.spawn(path, argv, env, cwd, fds[0], fds[1], fds[2], envp)
            except ValueError as e:
                raise LaunchFailure(f"job {label}: cannot start {prog!r}: {e}") from None
            except OSError as e:
                self._paths.pop((prog, env.get("PATH", os.defpath)), None)
                if attempt == 1 and not os.path.isdir(cwd):  # removed since it was made
                    self._wds.discard(cwd)
                    self._make_wd(label, cwd)
                    continue
                if e.errno == errno.ENOENT:
                    raise LaunchFailure(f"job {label}: executable {prog!r} not found") from None
                if e.errno == errno.EACCES:
                    raise LaunchFailure(f"job {label}: {prog!r} is not executable") from None
                raise LaunchFailure(f"job {label}: cannot start {prog!r}: {e}") from None
        raise AssertionError("unreachable")

    def _which(self, prog: str, env: Mapping[str, str], cwd: str) -> str | None:
        """``prog`` searched in the job's PATH as Popen does (None: not found); ``a/b``: itself.

        A relative PATH entry is relative to the job's wd (Popen's exec runs
        there); a program found through one is not remembered.
        """
        if "/" in prog:
            return prog
        search = env.get("PATH", os.defpath)
        key = (prog, search)
        path = self._paths.get(key)
        if path is not None:
            return path
        first, keep = None, True
        for d in search.split(os.pathsep):
            if not os.path.isabs(d):
                keep = False
                d = os.path.join(cwd, d)
            cand = os.path.join(d, prog)
            if os.path.isfile(cand):
                first = first or cand
                if os.access(cand, os.X_OK):
                    path = cand
                    break
        path = path or first
        if path is not None and keep:  # not found: not remembered, it may appear later
            if len(self._paths) > 1024:
                self._paths.clear()
            self._paths[key] = path
        return path

    def close(self) -> None:
        """Close ``/dev/null``."""
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1


def _high(fd: int) -> int:
    """``fd`` moved above 2 when it took a standard stream's number (ours were closed)."""
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)
