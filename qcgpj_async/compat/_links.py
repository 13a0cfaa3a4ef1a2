"""How the synchronous managers reach a pilot, on a thread of their own.

A link owns an anyio blocking portal (an event loop on its own thread) and
one long task in it (``_serve``) that holds the pilot, or the ZMQ client,
for the link's lifetime. The manager's methods are calls into that loop
(``portal.call``): thread-safe, and indifferent to an event loop already
running on the calling thread (Jupyter). A task fed by the pilot's events
keeps :class:`Finals`: what has ended, so that waiting for "any job" and a
future's ``done()`` need no round trip.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
import anyio.from_thread
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..adapters.protocol import Protocol
from ..model import FINAL_STATES, JobNotFoundError, PilotTimeoutError, QcgpjError
from ..runtime import Pilot
from ._server_args import ServerArgs
from .errors import ConnectionError, ServiceError, TimeoutElapsed

__all__ = ("Finals", "Link", "LocalLink", "ZmqLink", "zmq_module")

T = TypeVar("T")
Reply = dict[str, Any]
#: Ends kept for ``wait4_any_job_finish`` until taken (the oldest go first beyond it).
MAX_UNTAKEN = 100_000

_log = logging.getLogger("qcgpj_async.compat")


def zmq_module() -> Any:
    """``qcgpj_async.adapters.zmq``, or an ImportError naming the extra."""
    try:  # by its full name: sys.modules decides, not an attribute left on the package
        zmq_adapter = importlib.import_module("qcgpj_async.adapters.zmq")
    except ImportError as e:
        raise ImportError("the ZMQ interface needs pyzmq: pip install 'qcgpj_async[zmq]'") from e
    return zmq_adapter


class Finals:
    """What has ended, as the pilot's events said, readable from any thread.

    ``jobs`` maps a job to its final state (jobs only: a million iterations
    must not cost a million entries); the ends of jobs and iterations
    (``job:it``) also queue up for :meth:`take`, oldest first, as the
    original's subscription socket queued them.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, str] = {}
        self._untaken: deque[tuple[str, str]] = deque(maxlen=MAX_UNTAKEN)
        self._cond = threading.Condition()
        self._closed = False
        #: Called (on the loop's thread) with ``(job, state)`` when a job ends.
        self.watchers: list[Callable[[str, str], None]] = []

    def record(self, job: str, iteration: int | None, state: str) -> None:
        name = job if iteration is None else f"{job}:{iteration}"
        if iteration is None:
            self.jobs[job] = state
        with self._cond:
            self._untaken.append((name, state))
            self._cond.notify_all()
        if iteration is None:
            for watch in self.watchers:
                try:
                    watch(job, state)
                except Exception:  # a watcher's bug must not stop the feed
                    _log.exception("watcher of job ends failed")

    def forget(self, names: Iterable[str]) -> None:
        """Removed jobs: their names may come back as new jobs."""
        for n in names:
            self.jobs.pop(n, None)

    def take(self, timeout: float | None) -> tuple[str, str]:
        """The oldest end not taken yet, waiting for one.

        Raises:
            TimeoutElapsed: none within ``timeout`` seconds.
            ConnectionError: the manager finished.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._untaken or self._closed, timeout):
                raise TimeoutElapsed()
            if not self._untaken:
                raise ConnectionError("Not connected")
            return self._untaken.popleft()

    def wait_jobs(self, names: list[str], timeout: float | None) -> dict[str, str] | None:
        """The final states of the jobs ``names`` once all have ended, waiting here for
        the events (no request); None: the feed closed first.

        Raises:
            TimeoutElapsed: not all ended within ``timeout`` seconds.
        """
        jobs = self.jobs
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._closed or all(n in jobs for n in names), timeout
            ):
                raise TimeoutElapsed()
            try:
                return {n: jobs[n] for n in names}
            except KeyError:  # closed before they ended
                return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Link:
    """A portal with one serving task; see the module's docstring."""

    #: Whether ends are known from events (else the original says: no publisher).
    has_events = True

    def __init__(self) -> None:
        self.finals = Finals()
        self._portal_cm: Any = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._served: Future[Any] | None = None
        self._stop: anyio.Event | None = None
        self._close_lock = threading.Lock()

    def _start(self, serve: Callable[..., Awaitable[Any]]) -> None:
        cm = anyio.from_thread.start_blocking_portal()
        portal = cm.__enter__()
        try:
            self._served, _ = portal.start_task(serve)
        except BaseException:
            cm.__exit__(None, None, None)
            raise
        self._portal_cm, self._portal = cm, portal

    @property
    def open(self) -> bool:
        """Whether the link is serving."""
        return self._portal is not None

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the link's loop; its result or its exception.

        Raises:
            ConnectionError: the link is closed.
        """
        portal = self._portal
        if portal is None:
            raise ConnectionError("Not connected")
        try:
            return portal.call(fn, *args)
        except RuntimeError as e:
            if self._portal is None:  # closed while the call was on its way
                raise ConnectionError("Not connected") from e
            raise

    def _new_stop(self) -> anyio.Event:
        """The event :meth:`close` sets (made first thing in ``_serve``, in the loop)."""
        self._stop = anyio.Event()
        return self._stop

    def close(self) -> None:
        """End the serving task, then the loop and its thread; idempotent."""
        with self._close_lock:
            portal, cm = self._portal, self._portal_cm
            if portal is None:
                return
            try:
                if self._stop is not None:
                    portal.call(self._stop.set)
                assert self._served is not None
                with contextlib.suppress(Exception):  # logged by the serving task
                    self._served.result()
            finally:
                self._portal = None
                self.finals.close()
                cm.__exit__(None, None, None)

    async def _feed(self, events: AsyncIterator[tuple[str, int | None, str]]) -> None:
        async for job, iteration, state in events:
            self.finals.record(job, iteration, state)

    # -- what a manager calls (each link its own way) -------------------------------

    def request(self, request: dict[str, Any]) -> Reply:
        """Send one request; the reply dict as it came."""
        raise NotImplementedError

    def wait4(self, names: list[str], timeout: float | None) -> dict[str, str]:
        """Wait for jobs or iterations to end; ``{name: final state}``.

        Raises:
            TimeoutElapsed: not all ended in time.
            ConnectionError: an unknown name (``Request failed - ...``).
        """
        raise NotImplementedError

    def wait4all(self, timeout: float | None) -> None:
        """Wait for every job to end (TimeoutElapsed when not in time)."""
        raise NotImplementedError


class _Finish(Exception):
    """Passed to the Pilot's ``__aexit__`` by ``finish()``: stop what is left."""


class LocalLink(Link):
    """Our Pilot, in this process, on the link's thread."""

    def __init__(self, args: ServerArgs) -> None:
        super().__init__()
        self.pilot = Pilot(**args.pilot)
        self._args = args
        self.protocol: Protocol | None = None
        self.loop_thread: int | None = None
        self._cancels: MemoryObjectSendStream[str] | None = None
        #: The ZMQ address when ``--net`` was asked for.
        self.address: str | None = None
        self._start(self._serve)

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        pilot = self.pilot
        stop = self._new_stop()
        self.loop_thread = threading.get_ident()
        self._cancels, cancels = anyio.create_memory_object_stream[str](math.inf)
        await pilot.__aenter__()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._args.net:
                    server = await stack.enter_async_context(
                        zmq_module().serve_zmq(pilot, **self._args.net_opts)
                    )
                    self.protocol = server.protocol
                    self.address = server.address
                else:
                    self.protocol = Protocol(pilot, log=_log)
                events = pilot.events()
                stack.push_async_callback(events.aclose)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._feed, _final_events(events))
                    tg.start_soon(self._finish_request, stop)
                    tg.start_soon(self._canceller, cancels)
                    task_status.started()
                    await stop.wait()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await pilot.__aexit__(_Finish, _Finish(), None)

    async def _finish_request(self, stop: anyio.Event) -> None:
        # A "finish" sent with send_request() stops the pilot, as it did the original's service.
        assert self.protocol is not None
        await self.protocol.finish.wait()
        stop.set()

    async def _canceller(self, names: MemoryObjectReceiveStream[str]) -> None:
        async for name in names:
            with contextlib.suppress(QcgpjError):  # e.g. ended and removed meanwhile
                await self.pilot.cancel(name)

    def cancel_soon(self, name: str) -> None:
        """Cancel a job or iteration from any thread, the loop's own included
        (e.g. in a done callback), without waiting there."""
        if threading.get_ident() == self.loop_thread:
            assert self._cancels is not None
            self._cancels.send_nowait(name)
        elif self.open:
            with contextlib.suppress(QcgpjError, ConnectionError):
                self.call(self.pilot.cancel, name)

    def request(self, request: dict[str, Any]) -> Reply:
        protocol = self.protocol
        assert protocol is not None
        return self.call(protocol.handle, request)

    async def _wait4(self, names: list[str], timeout: float | None) -> Reply | dict[str, str]:
        assert self.protocol is not None
        reply = await self.protocol.handle({"request": "jobStatus", "jobNames": names})
        if reply["code"] != 0:
            return reply
        try:
            states = await self.pilot.wait4(names, timeout)
        except PilotTimeoutError:
            return {}
        return {n: s.value for n, s in states.items()}

    def wait4(self, names: list[str], timeout: float | None) -> dict[str, str]:
        if not names:
            return {}
        out = self.call(self._wait4, names, timeout)
        if out.get("code") == 1:  # the status request failed: an unknown name
            raise ConnectionError(f"Request failed - {out.get('message')}")
        if not out:
            raise TimeoutElapsed()
        return out

    def wait4all(self, timeout: float | None) -> None:
        try:
            self.call(self.pilot.wait4all, timeout)
        except PilotTimeoutError:
            raise TimeoutElapsed() from None

    def kill(self) -> None:
        """SIGKILL every running job now, then close."""
        if self.open:
            with contextlib.suppress(ConnectionError):
                self.call(_run_sync, self.pilot.kill_all)
        self.close()


async def _run_sync(fn: Callable[[], Any]) -> Any:
    return fn()


async def _final_events(events: Any) -> AsyncIterator[tuple[str, int | None, str]]:
    async for ev in events:
        if ev.state in FINAL_STATES:
            yield ev.job, ev.iteration, ev.state.value


class ZmqLink(Link):
    """A running service (ours with ``--net``, or the original's) over ZMQ."""

    def __init__(self, address: str, *, poll_delay: float, connect_timeout: float | None) -> None:
        super().__init__()
        self.client = zmq_module().Client(
            address, connect_timeout=connect_timeout, poll_interval=poll_delay
        )
        self._start(self._serve)
        self.has_events = self.client.publisher is not None

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        stop = self._new_stop()
        async with self.client as client, anyio.create_task_group() as tg:
            if client.publisher:
                # Subscribed before started(): nothing after the connect is missed.
                events = await tg.start(self._subscribe)
                tg.start_soon(self._feed, events)
            task_status.started()
            await stop.wait()
            tg.cancel_scope.cancel()

    async def _subscribe(self, *, task_status: TaskStatus[Any]) -> None:
        async with self.client.subscribe() as events:
            task_status.started(_zmq_final_events(events))
            await anyio.sleep_forever()

    def request(self, request: dict[str, Any]) -> Reply:
        return self.call(self.client.request, request)

    def wait4(self, names: list[str], timeout: float | None) -> dict[str, str]:
        if not names:
            return {}
        try:
            states = self.call(self.client.wait4, names, timeout)
        except PilotTimeoutError:
            raise TimeoutElapsed() from None
        except (JobNotFoundError, QcgpjError) as e:
            raise ConnectionError(f"Request failed - {e}") from None
        return {n: s.value for n, s in states.items()}

    def wait4all(self, timeout: float | None) -> None:
        try:
            self.call(self.client.wait4all, timeout)
        except PilotTimeoutError:
            raise TimeoutElapsed() from None


async def _zmq_final_events(events: Any) -> AsyncIterator[tuple[str, int | None, str]]:
    async for topic, data in events:
        if topic in ("JFI", "IFI"):
            it = data.get("it")
            yield str(data.get("job")), None if it is None else int(it), str(data.get("state"))


def service_error(e: BaseException) -> ServiceError:
    """A pilot that did not start, as the original's error."""
    return ServiceError(f"Service not started: {e}")
