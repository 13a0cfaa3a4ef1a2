"""The pilot's side of the fork server (:mod:`._forkserver`): requests out, events in.

:meth:`ForkServer.serve` runs in the pilot's task group. It starts the server
process at once (killed at the close if it never started a job) and reads its events (on
asyncio in a reader callback of the loop) and hands each to whoever asked:
a task awaiting :meth:`Starting.result` or :meth:`ServedProcess.wait`, or a
callback (:meth:`Starting.on_answer`, :meth:`ServedProcess.on_exit`), which
the pilot uses so that no task per job is needed. The base environment is sent
once; each start sends only the job's own variables. If the server cannot start,
or ends, :attr:`ForkServer.running` turns False and the executor starts jobs
in the pilot's process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ._base import LaunchError
from ._forkserver import Reader, pack

__all__ = ("ForkServer", "ServedProcess", "Starting")

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_forkserver.py")


class ServedProcess:
    """A process the fork server started (the executor's ``Process``).

    Its end is awaited (:meth:`wait`) or called back (:meth:`on_exit`).
    """

    __slots__ = (
        "_callback",
        "_done",
        "_server",
        "code",
        "ended_at",
        "pid",
        "rid",
        "started_at",
        "successor",
    )

    def __init__(
        self, server: ForkServer, rid: int, pid: int, started_at: float | None = None
    ) -> None:
        self._server, self.rid = server, rid
        self.pid: int | None = pid
        self.code: int | None = None
        #: When the server started it and saw its end (its clock, ``time.time()``).
        self.started_at, self.ended_at = started_at, None
        #: The ``key`` of each queued start that took one of its cores when it ended.
        self.successor: list[Any] | None = None
        self._done: anyio.Event | None = None
        self._callback: Callable[[int], object] | None = None

    async def wait(self) -> int:
        """Wait for the end; the exit code, or -N when killed by signal N."""
        if self.code is None:
            self._done = self._done or anyio.Event()
            await self._done.wait()
        assert self.code is not None
        return self.code

    def on_exit(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(code)`` when it ends (in the event loop, from the event reader)."""
        if self.code is not None:
            callback(self.code)
        else:
            self._callback = callback

    def _exited(self, code: int) -> None:
        self.code = code
        if self._done is not None:
            self._done.set()
        if self._callback is not None:
            self._callback(code)

    def terminate(self) -> None:
        """SIGTERM to the process group (while it is not reaped)."""
        self._server.signal(self.rid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the process group (while it is not reaped)."""
        self._server.signal(self.rid, signal.SIGKILL)


class Starting:
    """A start asked of the fork server: its answer is awaited or called back."""

    __slots__ = (
        "_callback",
        "_done",
        "_label",
        "answered",
        "error",
        "gone",
        "key",
        "proc",
        "rid",
        "successor",
    )

    def __init__(
        self, label: str, error: str | None = None, key: object = None, rid: int = 0
    ) -> None:
        self._label = label
        self.key, self.rid = key, rid  # the caller's name for it; the server's
        #: The ``key`` of each queued start that took one of its cores when it failed.
        self.successor: list[Any] | None = None
        self.gone = False  # not started because the server ended: it may start elsewhere
        self.answered = error is not None
        self.proc: ServedProcess | None = None
        self.error = error
        self._done: anyio.Event | None = None
        self._callback: Callable[[Starting], object] | None = None

    def _answer(self, proc: ServedProcess | None, error: str | None) -> None:
        self.proc, self.error, self.answered = proc, error, True
        if self._done is not None:
            self._done.set()
        if self._callback is not None:
            self._callback(self)

    def on_answer(self, callback: Callable[[Starting], object]) -> None:
        """Call ``callback(self)`` once answered (``proc`` set, or ``error``)."""
        if self.answered:
            callback(self)
        else:
            self._callback = callback

    async def result(self) -> ServedProcess:
        """The started process (waits for the server's answer, shielded: it must reach us).

        Raises:
            LaunchError: it could not start, or the server is gone.
        """
        if not self.answered:
            self._done = self._done or anyio.Event()
            with anyio.CancelScope(shield=True):
                await self._done.wait()
        if self.proc is None:
            raise LaunchError(self.error or f"job {self._label}: not started")
        return self.proc


class ForkServer:
    """Starts and reaps processes through a fork server process."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._wfd = self._rfd = -1
        self._env: dict[str, str] = {}  # the base environment the server has
        self._base_src: Mapping[str, str] | None = None  # what it was sent from
        self._starts: dict[int, Starting] = {}
        self._procs: dict[int, ServedProcess] = {}
        self._rid = 0
        self._needed = anyio.Event()
        self._closed = False
        self.running = False
        # While the events of one read are handled, requests gather here and go in one
        # write at its end (one wake-up of the server, not one per start).
        self._gather: bytearray | None = None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver the server's events until :meth:`aclose` (not cancellable: call it).

        The server process starts now: its interpreter starts while the pilot
        reads its requests (about 50 ms on the test machine, otherwise waited
        for by the first job). Where it cannot start, the jobs start in the
        pilot's process.
        """
        self.running = True
        task_status.started()
        if self._proc is None and not self._closed:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._launch()
        with anyio.CancelScope(shield=True):  # a start may come in while the pilot stops
            await self._needed.wait()
        if self._proc is None:  # closed before any job, or it could not start
            self.running = False
            return
        ev_r = self._rfd
        reader = Reader(ev_r)
        try:
            # Shielded: jobs outlive a cancellation of the pilot's block until the
            # pilot has stopped them (SIGTERM, the grace, SIGKILL); aclose() ends it.
            with anyio.CancelScope(shield=True):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # trio
                    loop = None
                if loop is not None:
                    await self._read_asyncio(loop, reader)
                else:
                    while True:
                        await anyio.wait_readable(ev_r)
                        msgs = reader.read()
                        if msgs is None:
                            break
                        self._handle(msgs)
        finally:
            self.running = False
            with anyio.CancelScope(shield=True):
                await self._end()

    async def _read_asyncio(self, loop: asyncio.AbstractEventLoop, reader: Reader) -> None:
        """Events handled in the loop's reader callback: no task wakes per read, no
        (un)registration of the pipe per read as ``wait_readable`` does."""
        ended = anyio.Event()
        failed: list[BaseException] = []

        def readable() -> None:
            if ended.is_set():
                return
            try:
                msgs = reader.read()
            except OSError as e:  # the pipe is unusable: end as at its end
                failed.append(e)
                msgs = None
            if msgs is None:
                ended.set()
                return
            self._handle(msgs)

        loop.add_reader(reader.fd, readable)
        try:
            await ended.wait()
        finally:
            loop.remove_reader(reader.fd)
        if failed:
            raise failed[0]

    def _handle(self, msgs: list[Any]) -> None:
        """The events of one read; the requests they lead to are sent at the end, at once."""
        self._gather = bytearray()
        try:
            for msg in msgs:
                self._event(msg)
        finally:
            data, self._gather = self._gather, None
            if data and self._wfd >= 0:
                with contextlib.suppress(OSError):
                    self._write(memoryview(data))

    def _keys(self, rids: list[int] | None) -> list[Any] | None:
        if not rids:
            return None
        starts = self._starts
        return [starts[r].key for r in rids if r in starts]

    def _event(self, msg: tuple[Any, ...]) -> None:
        kind, rid = msg[0], msg[1]
        if kind == "exited":
            proc = self._procs.pop(rid, None)
            if proc is not None:
                proc.successor = self._keys(msg[3])
                proc.ended_at = msg[4]
                proc._exited(msg[2])
            return
        start = self._starts.pop(rid, None)
        if start is None:  # pragma: no cover - nobody asked
            return
        if kind == "started":
            proc = self._procs[rid] = ServedProcess(self, rid, msg[2], msg[3])
            start._answer(proc, None)
        else:
            start.successor = self._keys(msg[3])
            start._answer(None, msg[2])

    async def _end(self) -> None:
        if self._wfd >= 0:
            os.close(self._wfd)  # the server kills what still runs, then exits
            self._wfd = -1
        if self._proc is not None:
            await anyio.to_thread.run_sync(self._proc.wait)
        if self._rfd >= 0:
            os.close(self._rfd)
            self._rfd = -1
        starts, procs = list(self._starts.values()), list(self._procs.values())
        self._starts.clear()
        self._procs.clear()
        for start in starts:
            start.gone = True
            start._answer(None, f"job {start._label}: the fork server ended")
        for proc in procs:  # the server died before them: not reaped
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc._exited(-signal.SIGKILL)

    def _launch(self) -> None:
        req_r, req_w = os.pipe()
        ev_r, ev_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _SCRIPT, str(req_r), str(ev_w)],
                pass_fds=(req_r, ev_w),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (req_w, ev_r):
                os.close(fd)
            self.running = False  # its jobs start in the pilot's process instead
            self._needed.set()
            raise
        finally:
            os.close(req_r)
            os.close(ev_w)
        self._wfd, self._rfd = req_w, ev_r
        self._needed.set()

    def _send(self, msg: tuple[Any, ...]) -> None:
        if self._gather is not None:
            self._gather += pack(msg)
        else:
            self._write(memoryview(pack(msg)))

    def _write(self, data: memoryview) -> None:
        while data:
            data = data[os.write(self._wfd, data) :]

    def request(
        self,
        label: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        stdin: str | None,
        stdout: str | None,
        stderr: str | None,
        base: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
        *,
        queued: bool = False,
        slot: int = 0,
        key: object = None,
    ) -> Starting:
        """Ask for a start now; :meth:`Starting.result` awaits it.

        ``queued``: start it when a run with a ``slot`` (its number of cores) ends,
        taking one of its cores (see :mod:`._forkserver`); ``key``: the caller's name
        for it, given back among the ``successor`` of the run whose core it took.

        ``env`` is ``base`` plus ``extra`` where both are given (``base`` never
        changes in place): only ``extra`` is sent, ``base`` in full when it is a
        new one. Otherwise what differs from the last environment sent in full.
        """
        if not self.running:
            return Starting(label, f"job {label}: the fork server is not running")
        if self._proc is None:
            self._launch()
        if base is not None and extra is not None:
            self._send_base(base)
            set_: Mapping[str, str] = extra if type(extra) is dict else dict(extra)
            unset: list[str] = []
        else:
            self._base_src = None
            sent = self._env
            set_ = {k: v for k, v in env.items() if sent.get(k) != v}
            unset = [k for k in sent if k not in env]
            if len(set_) + len(unset) > 32:  # the base changed: send it in full, once
                self._env = sent = dict(env)
                self._send(("env", sent))
                set_, unset = {}, []
        self._rid += 1
        rid = self._rid
        start = self._starts[rid] = Starting(label, key=key, rid=rid)
        self._send(
            ("start", rid, label, list(argv), set_, unset, cwd, stdin, stdout, stderr, queued, slot)
        )
        return start

    def _send_base(self, base: Mapping[str, str]) -> None:
        """Send ``base`` as the base environment, unless it is the one sent last."""
        if base is not self._base_src:
            self._base_src = base
            self._env = dict(base)
            self._send(("env", self._env))

    def set_base(self, base: Mapping[str, str]) -> None:
        """A new base environment, sent now: starts queued earlier get it too."""
        if self._wfd >= 0 and self._proc is not None:
            with contextlib.suppress(OSError):
                self._send_base(base)

    def start_now(self, start: Starting) -> None:
        """Start a queued start now (given a free core), if it is still queued."""
        self._about_queued("now", start)

    def drop(self, start: Starting) -> None:
        """Take a queued start out of the server's queue, if it has not started: it is
        then answered with an error (``DROPPED``)."""
        self._about_queued("drop", start)

    def _about_queued(self, kind: str, start: Starting) -> None:
        if self._wfd >= 0 and not start.answered:
            with contextlib.suppress(OSError):
                self._send((kind, start.rid))

    def signal(self, rid: int, signum: int) -> None:
        """Signal a run's process group, through the server (which knows if it was reaped)."""
        if self._wfd >= 0 and rid in self._procs:
            with contextlib.suppress(OSError):
                self._send(("signal", rid, int(signum)))

    async def aclose(self) -> None:
        """Close the request pipe: the server kills what still runs and exits.

        One that never started a job is killed at once (it may still be starting).
        """
        self._closed = True
        self._needed.set()
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        if self._rid == 0 and self._proc is not None and self._proc.returncode is None:
            self._proc.kill()  # our child, not reaped yet: its pid is still its own
