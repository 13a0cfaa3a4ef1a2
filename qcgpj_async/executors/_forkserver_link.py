"""The pilot's side of a fork server (:mod:`._forkserver`): a node's start queue.

:class:`ForkServer` is the :class:`~._base.StartQueue` of one node. It speaks
the fork server's protocol (requests out, events in, see :mod:`._forkserver`)
over a :class:`ByteLink`: two file descriptors, which may be the pipes of a
local child (:class:`PipeLink`, the pilot's own node) or, as well, the two
ends of a socket or of a remote command's stdin/stdout. Requests are written
whole, at once (one write per batch of events handled); events are read as
they come, in batches.

:meth:`ForkServer.serve` runs in the pilot's task group. It connects at once
(a local server is killed at the close if it never started a job) and reads the
events (on asyncio in a reader callback of the loop) and hands each to whoever
asked: a task awaiting :meth:`ForkStart.result` or :meth:`ForkProcess.wait`, or
a callback (:meth:`ForkStart.on_answer`, :meth:`ForkProcess.on_exit`), which
the pilot uses so that no task per job is needed. The base environment is sent
once; each start sends only the job's own variables. If the server cannot start,
or ends, :attr:`ForkServer.running` turns False and the executor starts jobs
in the pilot's process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

import anyio
from anyio.abc import TaskStatus

from ._base import LaunchError, Starting
from ._forkserver import HEADER, Reader, pack
from ._task import Task

__all__ = ("ByteLink", "ForkProcess", "ForkServer", "ForkStart", "PipeLink", "Window")

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_forkserver.py")


class ForkProcess:
    """A process the fork server started (a :class:`~._base.ForkProcess`).

    Its end is awaited (:meth:`wait`) or called back (:meth:`on_exit`).
    """

    __slots__ = (
        "_callback",
        "_done",
        "_server",
        "code",
        "ended_at",
        "pid",
        "reason",
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
        #: Why it ended, when not by itself (its node was lost); else None.
        self.reason: str | None = None
        #: When the server started it and saw its end (its clock, ``time.time()``).
        self.started_at, self.ended_at = started_at, None
        #: The ``key`` of each queued start that took one of its cores when it ended.
        self.successor: list[int] | None = None
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


class ForkStart:
    """A start asked of the fork server (a :class:`~._base.ForkStart`): its answer is
    awaited or called back."""

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
        "server",
        "successor",
    )

    def __init__(
        self,
        label: str,
        error: str | None = None,
        key: int = 0,
        rid: int = 0,
        server: ForkServer | None = None,
    ) -> None:
        self._label = label
        self.server = server  # the queue it was asked of
        self.key, self.rid = key, rid  # the caller's name for it; the server's
        #: The ``key`` of each queued start that took one of its cores when it failed.
        self.successor: list[int] | None = None
        self.gone = False  # not started because the server ended: it may start elsewhere
        self.answered = error is not None
        self.proc: ForkProcess | None = None
        self.error = error
        self._done: anyio.Event | None = None
        self._callback: Callable[[ForkStart], object] | None = None

    def _answer(self, proc: ForkProcess | None, error: str | None) -> None:
        self.proc, self.error, self.answered = proc, error, True
        if self._done is not None:
            self._done.set()
        if self._callback is not None:
            self._callback(self)

    def on_answer(self, callback: Callable[[ForkStart], object]) -> None:
        """Call ``callback(self)`` once answered (``proc`` set, or ``error``)."""
        if self.answered:
            callback(self)
        else:
            self._callback = callback

    async def result(self) -> ForkProcess:
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


class Window:
    """Fork servers whose requests gather while a batch is open: the events of a read
    of any of them being handled, or many launches being asked at once (each server
    alone by default; the launch agents of an allocation share one)."""

    __slots__ = ("active", "after", "dirty")

    def __init__(self) -> None:
        self.active = False
        self.dirty: list[ForkServer] = []
        #: Called at the end of each batch, once its requests are sent.
        self.after: Callable[[], object] | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Within: requests gather, and go in one write per server at the end (a
        batch opened within a batch is part of it)."""
        if self.active:
            yield
            return
        self.active = True
        try:
            yield
        finally:
            self.active = False
            dirty, self.dirty = self.dirty, []
            for server in dirty:
                data, server._gather = server._gather, None
                if data and server._wfd >= 0:
                    with contextlib.suppress(OSError):
                        server._write(memoryview(data))
            if self.after is not None:
                self.after()


class ByteLink(Protocol):
    """The byte stream between the pilot and one fork server: the wire of a start queue.

    Two file descriptors, which the fork server's protocol uses alike whether
    they are the pipes of a local child, the ends of a socket (the same
    descriptor twice), or a remote command's stdin and stdout: requests are
    written whole with blocking writes, events read as they come (a read of
    0 bytes is the end).
    """

    #: Requests go out here (blocking writes).
    wfd: int
    #: Events come in here (readable in the event loop).
    rfd: int

    def close_requests(self) -> None:
        """Close the request side (once): the server kills what still runs, then exits."""
        ...

    async def wait_closed(self) -> None:
        """Wait for the server's end, then close the event side."""
        ...

    def abort(self) -> None:
        """Stop a server that never started a job (it may still be starting)."""
        ...

    def kill_orphans(self, pids: Collection[int]) -> None:
        """The server ended before these processes: kill their groups if they are ours
        to kill (a local server's; a remote server's node kills its own)."""
        ...


class PipeLink:
    """The fork server as a child process of the pilot, over two pipes (this node).

    Raises:
        OSError, subprocess.SubprocessError: the server cannot start.
    """

    def __init__(self) -> None:
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
            raise
        finally:
            os.close(req_r)
            os.close(ev_w)
        self.wfd, self.rfd = req_w, ev_r

    def close_requests(self) -> None:
        """Close the request pipe: the server kills what still runs, then exits."""
        if self.wfd >= 0:
            os.close(self.wfd)
            self.wfd = -1

    async def wait_closed(self) -> None:
        """Reap the server, then close the event pipe."""
        await anyio.to_thread.run_sync(self._proc.wait)
        if self.rfd >= 0:
            os.close(self.rfd)
            self.rfd = -1

    def abort(self) -> None:
        """Kill the server if it has not been reaped (its pid is then still its own)."""
        if self._proc.returncode is None:
            self._proc.kill()

    def kill_orphans(self, pids: Collection[int]) -> None:
        """SIGKILL the groups of processes the server left: they were its children."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


class ForkServer:
    """A node's start queue: starts and reaps processes through a fork server.

    A :class:`~._base.StartQueue`. ``connect`` makes the :class:`ByteLink` to
    the server, at :meth:`serve` or at the first start (default: a local
    child, :class:`PipeLink`); ``argv`` gives a task's command line there;
    tasks of the ``models`` left out start with ``Executor.start`` instead.
    ``node``: the node it serves when it is another node's (a launch agent):
    its end before :meth:`aclose` is then the loss of that node (see
    :meth:`on_node_lost`). ``pin``: the CPU id of each of the node's cores, by
    the engine's core number, to pin tasks to (None: not pinned); a queued start
    is pinned to the CPU of the core it takes, by the server.
    """

    #: One server serves the pilot's own node (every node of a local pool).
    per_node = False

    def __init__(
        self,
        connect: Callable[[], ByteLink] = PipeLink,
        *,
        argv: Callable[[Task], Sequence[str]] = lambda task: task.argv,
        left_out: Collection[str] = (),
        node: str | None = None,
        pin: Sequence[int] | None = None,
        window: Window | None = None,
    ) -> None:
        self._connect = connect
        self._argv = argv
        self._left_out = frozenset(left_out)
        self.node = node
        self._pin = pin
        #: Why the node was lost (set before the end is handled); None while it is not.
        self.lost_reason: str | None = None
        self._on_lost: Callable[[str, str], object] | None = None
        #: The number of the last ``pong`` the server sent (its heartbeat).
        self.pong = 0
        self._link: ByteLink | None = None
        self._wfd = self._rfd = -1
        self._env: dict[str, str] = {}  # the base environment the server has
        self._base_src: Mapping[str, str] | None = None  # what it was sent from
        self._starts: dict[int, ForkStart] = {}
        self._procs: dict[int, ForkProcess] = {}
        self._rid = 0
        self._needed = anyio.Event()
        self._closed = False
        self.running = False
        # While the events of one read are handled (of this server, or of any server
        # sharing its ``window``: the agents of an allocation), requests gather here
        # and go in one write per server at its end (one wake-up, not one per start).
        self._gather: bytearray | None = None
        self._window = window if window is not None else Window()

    @property
    def accepting(self) -> bool:
        """Whether :meth:`begin` takes starts now (the server runs)."""
        return self.running

    def queueable(self, model: str) -> bool:
        """Whether tasks of this model start here (e.g. not MPI with a hostfile)."""
        return model not in self._left_out

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver the server's events until :meth:`aclose` (not cancellable: call it).

        The server connects now: a local one's interpreter starts while the
        pilot reads its requests (about 50 ms on the test machine, otherwise
        waited for by the first job). Where it cannot start, the jobs start in
        the pilot's process.
        """
        self.running = True
        task_status.started()
        if self._link is None and not self._closed:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._launch()
        with anyio.CancelScope(shield=True):  # a start may come in while the pilot stops
            await self._needed.wait()
        if self._link is None:  # closed before any job, or it could not start
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
        """The events of one read; the requests they lead to, to this server or any
        of its window, are sent at the end, one write per server."""
        with self._window.batch():
            for msg in msgs:
                self._event(msg)

    def _keys(self, rids: list[int] | None) -> list[Any] | None:
        if not rids:
            return None
        starts = self._starts
        return [starts[r].key for r in rids if r in starts]

    def _event(self, msg: tuple[Any, ...]) -> None:
        kind, rid = msg[0], msg[1]
        if kind == "pong":
            self.pong = rid
            return
        if kind == "exited":
            proc = self._procs.pop(rid, None)
            if proc is not None:
                if msg[3]:
                    proc.successor = self._keys(msg[3])
                proc.ended_at = msg[4]
                proc._exited(msg[2])
            return
        start = self._starts.pop(rid, None)
        if start is None:  # pragma: no cover - nobody asked
            return
        if kind == "started":
            proc = self._procs[rid] = ForkProcess(self, rid, msg[2], msg[3])
            start._answer(proc, None)
        else:
            start.successor = self._keys(msg[3])
            start._answer(None, msg[2])

    async def _end(self) -> None:
        link = self._link
        self._wfd = self._rfd = -1
        reason = None
        if self.node is not None and not self._closed:  # its node is lost to the pilot
            if self.lost_reason is None:
                self.lost_reason = f"node {self.node} lost: its agent's connection ended"
            reason = self.lost_reason
            if self._on_lost is not None:  # first: no run may go to its cores again
                self._on_lost(self.node, reason)
        if link is not None:
            link.close_requests()  # the server kills what still runs, then exits
            await link.wait_closed()
        starts, procs = list(self._starts.values()), list(self._procs.values())
        self._starts.clear()
        self._procs.clear()
        for start in starts:
            start.gone = True
            start._answer(None, reason or f"job {start._label}: the fork server ended")
        if link is not None:  # the server died before them: not reaped
            link.kill_orphans([p.pid for p in procs if p.pid is not None])
        for proc in procs:
            proc.reason = reason
            proc._exited(-signal.SIGKILL)

    def _launch(self) -> None:
        try:
            link = self._connect()
        except BaseException:
            self.running = False  # its jobs start in the pilot's process instead
            self._needed.set()
            raise
        self._link = link
        self._wfd, self._rfd = link.wfd, link.rfd
        self._needed.set()

    def _send(self, msg: tuple[Any, ...]) -> None:
        gather = self._gather
        if gather is not None:
            data = marshal.dumps(msg)  # (pack(), without a copy of the message)
            gather += HEADER.pack(len(data))
            gather += data
        elif self._window.active:  # sent at the end of the events being handled
            self._gather = bytearray(pack(msg))
            self._window.dirty.append(self)
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
        key: int = 0,
        cpus: Sequence[int] | None = None,
        unset: Sequence[str] = (),
    ) -> ForkStart:
        """Ask for a start now; :meth:`ForkStart.result` awaits it.

        ``queued``: start it when a run with a ``slot`` (its number of cores) ends,
        taking one of its cores (see :mod:`._forkserver`); ``key``: the caller's name
        for it, given back among the ``successor`` of the run whose core it took;
        ``cpus``: pin it to these CPU ids.

        ``env`` is ``base`` plus ``extra`` less ``unset`` where both are given
        (``base`` never changes in place): only ``extra`` and ``unset`` are sent,
        ``base`` in full when it is a new one. Otherwise what differs from the last
        environment sent in full.
        """
        if not self.running:
            return ForkStart(label, f"job {label}: the fork server is not running")
        if self._link is None:
            self._launch()
        if base is not None and extra is not None:
            self._send_base(base)
            set_: Mapping[str, str] = extra if type(extra) is dict else dict(extra)
            drop = list(unset) if unset else []
        else:
            self._base_src = None
            sent = self._env
            set_ = {k: v for k, v in env.items() if sent.get(k) != v}
            drop = [k for k in sent if k not in env]
            if len(set_) + len(drop) > 32:  # the base changed: send it in full, once
                self._env = sent = dict(env)
                self._send(("env", sent))
                set_, drop = {}, []
        self._rid += 1
        rid = self._rid
        start = self._starts[rid] = ForkStart(label, key=key, rid=rid, server=self)
        msg: tuple[Any, ...] = (
            "start", rid, label, list(argv), set_, drop, cwd, stdin, stdout, stderr, queued, slot
        )  # fmt: skip
        self._send((*msg, list(cpus)) if cpus else msg)
        return start

    def _send_base(self, base: Mapping[str, str]) -> None:
        """Send ``base`` as the base environment, unless it is the one sent last."""
        if base is not self._base_src:
            self._base_src = base
            self._env = dict(base)
            self._send(("env", self._env))

    def begin(self, task: Task, *, queued: bool = False, key: int = 0) -> ForkStart | None:
        """Ask for ``task``'s start now; None where it does not start here (its model
        is left out, the server is not running or cannot start).

        ``queued``: it holds no core yet and starts in a core of the first run to
        end, or when :meth:`promote` gives it one; ``key`` names it in the
        ``successor`` of that run's end.
        """
        if self.running and task.model not in self._left_out:
            try:
                return self.request(
                    task.label,
                    self._argv(task),
                    task.env,
                    task.cwd,
                    task.stdin,
                    task.stdout,
                    task.stderr,
                    task.env_base,
                    task.env_extra,
                    queued=queued,
                    slot=1 if queued else task.allocation.cores,
                    key=key,
                    cpus=None if queued else self._cpus(task.allocation.parts[0].cores),
                    unset=task.env_unset,
                )
            except (OSError, subprocess.SubprocessError):  # it cannot start: start elsewhere
                return None
        return None

    def _cpus(self, cores: Sequence[int]) -> list[int] | None:
        """The CPU ids of ``cores`` of this node (None: not pinned, or cores not known)."""
        pin = self._pin
        if pin is None or not cores or cores[0] < 0:
            return None
        return [pin[c] for c in cores]

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """A new base environment, sent now: starts queued earlier get it too."""
        if self.running and self._wfd >= 0:
            with contextlib.suppress(OSError):
                self._send_base(env)

    def promote(self, starting: Starting, cores: Sequence[int] = ()) -> None:
        """Start a queued start now (given free ``cores``: pinned to their CPUs), if it
        is still queued."""
        cpus = self._cpus(cores)
        self._about_queued("now", cast(ForkStart, starting), *([cpus] if cpus else []))

    def drop(self, starting: Starting) -> None:
        """Take a queued start out of the server's queue, if it has not started: it is
        then answered with an error (``DROPPED``)."""
        self._about_queued("drop", cast(ForkStart, starting))

    def _about_queued(self, kind: str, start: ForkStart, *more: Any) -> None:
        if self._wfd >= 0 and not start.answered:
            with contextlib.suppress(OSError):
                self._send((kind, start.rid, *more))

    def on_node_lost(self, callback: Callable[[str, str], object]) -> None:
        """Call ``callback(node, why)`` when the node this queue serves is lost (its
        server ended before :meth:`aclose`); never for the pilot's own node."""
        self._on_lost = callback

    @property
    def batching(self) -> bool:
        """Whether a batch is open (see :meth:`batch`)."""
        return self._window.active

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Within: the requests asked gather, and go in one write at the end. The
        events of each read are handled in one."""
        return self._window.batch()

    def on_batch_end(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback()`` at the end of each batch (the events of a read handled,
        their callbacks run), once the requests it gathered are sent."""
        self._window.after = callback

    def ping(self, n: int) -> bool:
        """Ask the server for ``("pong", n)`` (see :attr:`pong`); whether it was sent."""
        if self._wfd < 0:
            return False
        try:
            self._send(("ping", n))
        except OSError:
            return False
        return True

    def signal(self, rid: int, signum: int) -> None:
        """Signal a run's process group, through the server (which knows if it was reaped)."""
        if self._wfd >= 0 and rid in self._procs:
            with contextlib.suppress(OSError):
                self._send(("signal", rid, int(signum)))

    async def aclose(self) -> None:
        """Close the request side: the server kills what still runs and exits.

        A server that never started a job is stopped at once (it may still be starting).
        """
        self._closed = True
        self._needed.set()
        link = self._link
        if link is not None:
            self._wfd = -1
            link.close_requests()
            if self._rid == 0:
                link.abort()
