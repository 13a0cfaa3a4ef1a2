"""The fork server: a small process that starts the local executor's processes and reaps them.

Starting a process blocks its caller while the kernel builds the child and
loads the program (posix_spawn returns once the child has called exec): about
200 µs per start on the test machine, a third of the event loop's time per
job when thousands of short jobs run. This process takes that wait, and the
reaping, off the event loop; it runs beside it, on another core when there is
one. It imports only the standard library and :mod:`._posix_spawn` (it is
started as a script: ``python -I -S _forkserver.py RFD WFD``).

Protocol: messages are ``marshal``-ed tuples, each after a 4-byte length.
Requests (pilot -> server):

- ``("env", {name: value})``: the base environment of later starts;
- ``("start", rid, label, argv, set, unset, cwd, stdin, stdout, stderr)``: start
  run ``rid`` with the base environment plus ``set`` minus ``unset``;
- ``("signal", rid, signum)``: signal run ``rid``'s process group, if it was
  started and is not reaped yet (so a group id is never signalled once it may
  have been reused).

Events (server -> pilot): ``("started", rid, pid)``, ``("failed", rid,
message)``, ``("exited", rid, code)`` with ``code`` -N for signal N.

Every process starts in a session of its own. When it ends, what it left in
its group is SIGKILLed before it is reaped. When the request pipe closes (the
pilot closed it, or died), every process still running is SIGKILLed with its
group and reaped, then the server exits: no job outlives its pilot. SIGINT and
SIGTERM do not stop the server (the pilot decides; its jobs get them back at
their defaults).
"""

from __future__ import annotations

import marshal
import os
import selectors
import signal
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the server's start 4 ms
    from typing import Any

if __package__:
    from ._posix_spawn import Launcher, LaunchFailure, Spawner, env_entry
else:  # run as a script (python -I: its folder is not on sys.path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _posix_spawn import (  # type: ignore[import-not-found,no-redef]
        Launcher,
        LaunchFailure,
        Spawner,
        env_entry,
    )

__all__ = ("HEADER", "Reader", "pack", "serve")

HEADER = struct.Struct("<I")


def pack(msg: tuple[Any, ...]) -> bytes:
    """One message, framed."""
    data = marshal.dumps(msg)
    return HEADER.pack(len(data)) + data


class Reader:
    """The messages coming in on a pipe.

    Each read lands in one buffer, reused: a new 64 KiB object per read left
    the C heap fragmented (the pilot's RSS grew ~120 KB per 1,000 jobs).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray(1 << 16)
        self._view = memoryview(self._buf)
        self._rest = b""

    def read(self) -> list[Any] | None:
        """The whole messages of one read (maybe none); None at the end of the pipe."""
        n = os.readv(self.fd, [self._buf])
        if n == 0:
            return None
        data: bytes | memoryview = self._rest + self._view[:n] if self._rest else self._view[:n]
        out, pos, size = [], 0, len(data)
        while size - pos >= 4:
            length = HEADER.unpack_from(data, pos)[0]
            if size - pos - 4 < length:
                break
            out.append(marshal.loads(data[pos + 4:pos + 4 + length]))
            pos += 4 + length
        self._rest = bytes(data[pos:])
        return out


class _Server:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.launcher = Launcher(Spawner())
        self.env: dict[str, str] = {}
        self.entries: dict[str, bytes] = {}  # the base environment, encoded
        self.envp: list[bytes] | None = []
        self.pids: dict[int, int] = {}  # rid -> pid, until reaped
        self.out = bytearray()
        self.sel = selectors.DefaultSelector()
        self.sel.register(rfd, selectors.EVENT_READ, None)
        os.set_blocking(wfd, False)

    def run(self) -> None:
        reader = Reader(self.rfd)
        writing = False
        while True:
            for key, _ in self.sel.select():
                if key.data is None:
                    msgs = reader.read()
                    if msgs is None:
                        return
                    for msg in msgs:
                        self.handle(msg)
                elif key.data == "out":
                    pass  # written below
                else:
                    self.reap(key.fd, *key.data)
            if self.out:
                try:  # noqa: SIM105 - contextlib costs the server's start 4 ms
                    self.out = self.out[os.write(self.wfd, self.out):]
                except BlockingIOError:
                    pass
            if bool(self.out) != writing:  # wait for room only while there is output
                writing = bool(self.out)
                if writing:
                    self.sel.register(self.wfd, selectors.EVENT_WRITE, "out")
                else:
                    self.sel.unregister(self.wfd)

    def handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "start":
            _, rid, label, argv, set_, unset, cwd, stdin, stdout, stderr = msg
            env, envp = self.environment(set_, unset)
            try:
                pid = self.launcher.launch(label, argv, env, cwd, stdin, stdout, stderr, envp)
            except LaunchFailure as e:
                self.out += pack(("failed", rid, str(e)))
                return
            except Exception as e:  # a bug must not stop the other jobs
                self.out += pack(("failed", rid, f"job {label}: launch failed: {e!r}"))
                return
            self.pids[rid] = pid
            fd = os.pidfd_open(pid)
            self.sel.register(fd, selectors.EVENT_READ, (rid, pid))
            self.out += pack(("started", rid, pid))
        elif kind == "signal":
            target = self.pids.get(msg[1])
            if target is not None:
                _killpg(target, msg[2])
        elif kind == "env":
            self.env = msg[1]
            try:
                self.entries = {k: env_entry(k, v) for k, v in self.env.items()}
                self.envp = list(self.entries.values())
            except ValueError:  # a bad variable: encoded per start, the launcher says which
                self.entries, self.envp = {}, None

    def environment(self, set_: dict[str, str],
                    unset: list[str]) -> tuple[dict[str, str], list[bytes] | None]:
        """A start's environment, and encoded (None: the launcher encodes it, and says
        what is wrong). Only what differs from the base is encoded per start."""
        if not set_ and not unset:
            return self.env, self.envp
        env = dict(self.env)
        env.update(set_)
        for k in unset:
            env.pop(k, None)
        if self.envp is None:
            return env, None
        entries = self.entries.copy()
        try:
            for k, v in set_.items():
                entries[k] = env_entry(k, v)
        except ValueError:
            return env, None
        for k in unset:
            entries.pop(k, None)
        return env, list(entries.values())

    def reap(self, fd: int, rid: int, pid: int) -> None:
        _killpg(pid, signal.SIGKILL)  # leftovers of the group die with the job
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # pragma: no cover - reaped by someone else
            code = 0
        self.sel.unregister(fd)
        os.close(fd)
        del self.pids[rid]
        self.out += pack(("exited", rid, code))

    def stop_all(self) -> None:
        """SIGKILL every running group and reap it (the pilot is gone)."""
        for pid in self.pids.values():
            _killpg(pid, signal.SIGKILL)
        for pid in self.pids.values():
            try:  # noqa: SIM105 - contextlib costs the server's start 4 ms
                os.waitpid(pid, 0)
            except ChildProcessError:  # pragma: no cover
                pass
        self.pids.clear()


def _killpg(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib costs the server's start 4 ms
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # it ended meanwhile
        pass


def serve(rfd: int, wfd: int) -> None:
    """Serve requests from ``rfd``, events to ``wfd``, until ``rfd`` closes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)  # handled: back at the default in every child
    server = _Server(rfd, wfd)
    try:
        server.run()
    finally:
        server.stop_all()
        server.launcher.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
