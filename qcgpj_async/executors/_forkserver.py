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
- ``("start", rid, label, argv, set, unset, cwd, stdin, stdout, stderr[, queued,
  slot[, cpus]])``: start run ``rid`` with the base environment plus ``set`` minus
  ``unset``. ``slot``: how many cores the run holds, which queued starts take
  when it ends. ``queued``: the run holds no core yet; it waits in the queue,
  first in first out, and starts the moment a run with a slot ends (or fails
  to start), taking one of its cores, with no round trip through the pilot.
  ``cpus``: CPU ids to pin the run to (posix_spawn cannot set a child's
  affinity: the server sets its own just before the spawn, the child inherits
  it, and the server's is restored at once), named to it in ``QCG_PM_CPU_SET``.
  A queued start that takes the i-th core of a pinned run is pinned to that
  run's i-th CPU;
- ``("ping", n)``: answered at once with ``("pong", n)`` (the pilot's heartbeat);
- ``("drop", rid)``: take a queued run out of the queue, if it is still there
  (answered ``failed``, with "stopped before it started");
- ``("now", rid[, cpus])``: start a queued run now, if it is still in the queue
  (the pilot gave it a free core, pinned to ``cpus``: a run ended before the
  start was queued);
- ``("signal", rid, signum)``: signal run ``rid``'s process group, if it was
  started and is not reaped yet (so a group id is never signalled once it may
  have been reused).

Events (server -> pilot): ``("pong", n)``, ``("started", rid, pid, time)``, ``("failed", rid,
message, successors)``, ``("exited", rid, code, successors, time)`` with ``code``
-N for signal N; ``successors``: the queued runs that took its cores (a list),
or None.

Events are sent in batches: at once when the pilot has something to decide
(an end with cores nobody took, a dropped run), else when
:data:`BATCH` have gathered, the queue runs low, or the oldest has waited
:data:`DELAY` seconds. With short jobs and a queue kept filled, the pilot then
wakes once per batch instead of twice per job: on a machine whose cores all run
jobs, each wake-up of the pilot costs the jobs far more than its CPU time.

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
import time
from collections import deque

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

__all__ = ("BATCH", "DELAY", "HEADER", "LOW", "Reader", "pack", "serve")

HEADER = struct.Struct("<I")
#: Events held back at most: this many ...
BATCH = 64
#: ... or this long (seconds) ...
DELAY = 0.010
#: ... or until the queue holds fewer starts than this.
LOW = 8
#: What a queued start that was dropped answers.
DROPPED = "stopped before it started"


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
            out.append(marshal.loads(data[pos + 4 : pos + 4 + length]))
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
        self.slots: dict[int, int] = {}  # rid -> cores its end frees for queued starts
        self.cpus: dict[int, list[int]] = {}  # rid -> the CPUs of those cores, if pinned
        self.queue: deque[tuple[Any, ...]] = deque()  # queued start requests
        self.taken: deque[tuple[Any, ...]] = deque()  # queued starts given cores: start now
        self.out = bytearray()
        self.affinity = os.sched_getaffinity(0)  # restored after each pinned start
        self.held = 0  # events in ``out`` not yet due
        self.since = 0.0  # when the oldest of them came
        self.urgent = False  # the pilot must hear now
        self.sel = selectors.DefaultSelector()
        self.sel.register(rfd, selectors.EVENT_READ, None)
        os.set_blocking(wfd, False)

    def emit(self, msg: tuple[Any, ...], urgent: bool = False) -> None:
        if not self.held:
            self.since = time.monotonic()
        self.held += 1
        self.out += pack(msg)
        if urgent:
            self.urgent = True

    def run(self) -> None:
        reader = Reader(self.rfd)
        writing = False
        timeout: float | None = None
        while True:
            for key, _ in self.sel.select(timeout):
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
            while self.taken:  # a loop, not recursion: a start that fails passes its core on
                self.start(self.taken.popleft())
            timeout = None
            if self.held:
                waited = time.monotonic() - self.since
                if self.urgent or self.held >= BATCH or len(self.queue) < LOW or waited >= DELAY:
                    self.held, self.urgent = 0, False
                else:
                    timeout = DELAY - waited
            if self.out and not self.held:
                try:  # noqa: SIM105 - contextlib costs the server's start 4 ms
                    self.out = self.out[os.write(self.wfd, self.out) :]
                except BlockingIOError:
                    pass
            if bool(self.out and not self.held) != writing:  # wait for room only while due
                writing = not writing
                if writing:
                    self.sel.register(self.wfd, selectors.EVENT_WRITE, "out")
                else:
                    self.sel.unregister(self.wfd)

    def handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "start":
            if len(msg) > 10 and msg[10]:
                self.queue.append(msg)
            else:
                self.start(msg)
        elif kind == "signal":
            target = self.pids.get(msg[1])
            if target is not None:
                _killpg(target, msg[2])
        elif kind == "now":
            for queued in self.queue:
                if queued[1] == msg[1]:
                    self.queue.remove(queued)
                    self.start((*queued[:12], msg[2]) if len(msg) > 2 else queued)
                    break
        elif kind == "drop":
            for queued in self.queue:
                if queued[1] == msg[1]:
                    self.queue.remove(queued)
                    self.emit(("failed", msg[1], DROPPED, None), urgent=True)
                    break
        elif kind == "ping":
            self.emit(("pong", msg[1]), urgent=True)
        elif kind == "env":
            self.env = msg[1]
            try:
                self.entries = {k: env_entry(k, v) for k, v in self.env.items()}
                self.envp = list(self.entries.values())
            except ValueError:  # a bad variable: encoded per start, the launcher says which
                self.entries, self.envp = {}, None

    def start(self, msg: tuple[Any, ...]) -> bool:
        """Start one request; whether it started (else ``failed`` is sent, and the
        cores it held go to the next queued starts)."""
        _, rid, label, argv, set_, unset, cwd, stdin, stdout, stderr = msg[:10]
        slot = msg[11] if len(msg) > 11 else 0
        cpus = msg[12] if len(msg) > 12 else None
        if cpus:
            set_ = {**set_, "QCG_PM_CPU_SET": ",".join(map(str, cpus))}
        env, envp = self.environment(set_, unset)
        pinned = False
        if cpus:
            try:
                os.sched_setaffinity(0, cpus)
                pinned = True
            except (OSError, ValueError):  # not ours to use: the run starts unpinned
                pass
        try:
            pid = self.launcher.launch(label, argv, env, cwd, stdin, stdout, stderr, envp)
        except Exception as e:  # a bug must not stop the other jobs
            error = (
                str(e) if isinstance(e, LaunchFailure) else (f"job {label}: launch failed: {e!r}")
            )
            self.pass_on(("failed", rid, error), slot, None, cpus)
            return False
        finally:
            if pinned:
                os.sched_setaffinity(0, self.affinity)
        self.pids[rid] = pid
        if slot:
            self.slots[rid] = slot
            if cpus:
                self.cpus[rid] = cpus
        fd = os.pidfd_open(pid)
        self.sel.register(fd, selectors.EVENT_READ, (rid, pid))
        self.emit(("started", rid, pid, time.time()))
        return True

    def environment(
        self, set_: dict[str, str], unset: list[str]
    ) -> tuple[dict[str, str], list[bytes] | None]:
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
        slot = self.slots.pop(rid, 0)
        self.pass_on(("exited", rid, code), slot, time.time(), self.cpus.pop(rid, None))

    def pass_on(
        self, head: tuple[Any, ...], cores: int, t: float | None, cpus: list[int] | None
    ) -> None:
        """Send an end (``head`` + successors [+ ``t``]); the first queued starts take
        its ``cores``, now (the i-th pinned to ``cpus[i]``). Urgent when cores are left
        free: the pilot decides then."""
        queue = self.queue
        taken = [queue.popleft() for _ in range(min(cores, len(queue)))]
        end = (*head, [m[1] for m in taken] if taken else None)
        self.emit(end if t is None else (*end, t), urgent=len(taken) < cores or not cores)
        if cpus:
            taken = [(*m[:12], [cpus[i]]) if i < len(cpus) else m for i, m in enumerate(taken)]
        self.taken.extend(taken)

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
