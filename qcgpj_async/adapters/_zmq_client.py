"""The ZMQ client: :class:`Client`, an async counterpart of the original's ``Manager``.

It has the Pilot's coroutine names (``submit``, ``wait4``, ...), is usable from
asyncio and trio, and talks to our :func:`~qcgpj_async.adapters.zmq.serve_zmq`
or to the original service.

Private: import the public names from :mod:`qcgpj_async.adapters.zmq`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

import anyio
import zmq
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..model import (
    FINAL_STATES,
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    Jobs,
    JobSpec,
    JobState,
    PilotClosedError,
    PilotTimeoutError,
    QcgpjError,
    job_to_std,
)
from ..runtime import ResourcesInfo
from . import _zmq_io
from ._zmq_io import ADDRESS_ENV


class RequestError(QcgpjError, RuntimeError):
    """The service answered a request with an error reply.

    Attributes:
        reply: the whole reply dict.
    """

    def __init__(self, message: str, reply: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply = dict(reply or {})


_Event = tuple[str, dict[str, Any]]


def _parse_address(address: str) -> str:
    # As the original client: [proto://]host[:port], tcp and 5555 by default.
    if not re.match(r"\w*://", address):
        address = f"tcp://{address}"
    if not re.match(r".*:\d+$", address):
        address = f"{address}:5555"
    return address


def _names(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _error_for(message: str, reply: Mapping[str, Any] | None = None) -> QcgpjError:
    if "doesn't exist" in message:
        name = re.search(r"Job(?:/iteration)? '?([^' ]+)'? doesn't exist", message)
        return JobNotFoundError(name.group(1) if name else "?", message)
    unknown_it = re.match(r"Unknown iteration (\S+) for job (\S+)$", message)
    if unknown_it:
        return JobNotFoundError(f"{unknown_it.group(2)}:{unknown_it.group(1)}", message)
    if "not finished - can not be removed" in message:
        return InvalidTransition(message)
    if message.startswith("Finish request already requested"):
        return PilotClosedError(message)
    return RequestError(message, reply)


class Client:
    """An async client of a pilot's ZMQ interface (ours or the original's).

    ::

        async with Client("tcp://127.0.0.1:5555") as client:
            names = await client.submit(Jobs().add(name="a", exec="/bin/date"))
            print(await client.wait4(names))

    Waits are driven by the service's published events (a slow status poll,
    every ``poll_interval`` seconds, is only a safety net; it is the only way
    without a publisher). Works on asyncio and trio.

    Args:
        address: ``[tcp://]host[:port]``; None: ``$QCG_PM_ZMQ_ADDRESS``, else
            ``tcp://127.0.0.1:5555`` (as the original client).
        timeout: seconds to wait for each reply (None: forever).
        connect_timeout: seconds to wait for the first reply on entry.
        poll_interval: seconds between safety polls while waiting on events.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = 30.0,
        poll_interval: float = 30.0,
    ) -> None:
        self.address = _parse_address(
            address or os.environ.get(ADDRESS_ENV) or "tcp://127.0.0.1:5555"
        )
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        #: ``StatusPublisher`` of the service (None: it publishes nothing).
        self.publisher: str | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._req: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._lock = anyio.Lock()
        self._listeners: list[MemoryObjectSendStream[_Event]] = []
        self._tg: TaskGroup | None = None

    # -- lifetime -----------------------------------------------------------

    async def __aenter__(self) -> Client:
        ctx = self._ctx = zmq.Context()
        req = self._req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        # A cancelled request must not wedge the socket: allow a new send, and
        # drop the stale reply when it comes.
        req.setsockopt(zmq.REQ_RELAXED, 1)
        req.setsockopt(zmq.REQ_CORRELATE, 1)
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            req.connect(self.address)
            status = await self._call({"request": "status"}, self.connect_timeout)
            publisher = status.get("System", {}).get("StatusPublisher")
            if publisher:
                sub = self._sub = ctx.socket(zmq.SUB)
                sub.setsockopt(zmq.LINGER, 0)
                sub.setsockopt(zmq.RCVHWM, 0)
                for topic in ("IFI", "JFI", "NOJ"):
                    sub.setsockopt_string(zmq.SUBSCRIBE, topic)
                sub.connect(publisher)
                self.publisher = publisher
                tg.start_soon(self._read_events)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            self._close()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._close()

    def _close(self) -> None:
        for s in self._listeners:
            s.close()
        for sock in (self._req, self._sub):
            if sock is not None:
                sock.close()
        if self._ctx is not None:
            self._ctx.term()
        self._req = self._sub = self._ctx = None

    async def _read_events(self) -> None:
        sub = self._sub
        assert sub is not None
        while True:
            for frame in await _zmq_io.recv(sub):
                topic, _, body = frame.decode("utf-8", "replace").partition(" ")
                try:
                    data = json.loads(body)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    for s in self._listeners:
                        s.send_nowait((topic, data))

    def subscribe(self) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[_Event]]:
        """The service's published ends from now on, as ``(topic, data)`` pairs::

            async with client.subscribe() as events:
                async for topic, data in events:   # "IFI", "JFI" or "NOJ"
                    ...

        Nothing comes without a publisher (:attr:`publisher` is None).
        """
        return self._listen()

    @asynccontextmanager
    async def _listen(self) -> AsyncIterator[MemoryObjectReceiveStream[_Event]]:
        send, recv = anyio.create_memory_object_stream[_Event](float("inf"))
        self._listeners.append(send)
        try:
            with recv:
                yield recv
        finally:
            self._listeners.remove(send)
            send.close()

    # -- requests -------------------------------------------------------------

    async def request(
        self, request: Mapping[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one request; return the reply dict as it came (``code`` 0 or not).

        Raises:
            PilotTimeoutError: no reply within ``timeout`` (default: the client's).
            PilotClosedError: the client is not open.
        """
        if self._req is None:
            raise PilotClosedError("the client is not connected (use async with)")
        data = json.dumps(request).encode()
        limit = self.timeout if timeout is None else timeout
        async with self._lock:
            req = self._req
            try:
                with anyio.fail_after(limit):
                    await _zmq_io.send(req, data)
                    frames = await _zmq_io.recv(req)
            except TimeoutError:
                raise PilotTimeoutError(f"no reply from {self.address} within {limit} s") from None
        reply = json.loads(frames[0].decode("utf-8"))
        if not isinstance(reply, dict) or "code" not in reply:
            raise RequestError(f"invalid reply from {self.address}: {reply!r:.200}")
        return reply

    async def _call(self, request: Mapping[str, Any], timeout: float | None = None) -> Any:
        reply = await self.request(request, timeout)
        if reply["code"] != 0:
            raise _error_for(str(reply.get("message", "request failed")), reply)
        return reply.get("data")

    # -- the Pilot's calls ----------------------------------------------------

    async def submit(
        self, jobs: Jobs | JobSpec | Mapping[str, Any] | Iterable[JobSpec | Mapping[str, Any]]
    ) -> list[str]:
        """Submit jobs (all or none); returns their names.

        Raises:
            JobDescriptionError: the service rejected the batch.
            PilotClosedError: the service is finishing.
        """
        if isinstance(jobs, Jobs):
            std = jobs.to_std()
        elif isinstance(jobs, JobSpec):
            std = [job_to_std(jobs)]
        elif isinstance(jobs, Mapping):
            std = [dict(jobs)]
        else:
            std = [job_to_std(j) if isinstance(j, JobSpec) else dict(j) for j in jobs]
        reply = await self.request({"request": "submit", "jobs": std})
        if reply["code"] != 0:
            message = str(reply.get("message", ""))
            if message.startswith(("Finish request", "Invalid request")):
                raise _error_for(message, reply)
            raise JobDescriptionError(message.split("; "))
        return list(reply["data"]["jobs"])

    async def status(self, names: str | Iterable[str]) -> dict[str, JobState]:
        """The state of each job (``name``) or iteration (``name:it``).

        Raises:
            JobNotFoundError: an unknown name.
        """
        names = _names(names)
        data = await self._call({"request": "jobStatus", "jobNames": names})
        out = {}
        for n in names:
            entry = data["jobs"].get(n, {})
            if entry.get("status") != 0:
                raise JobNotFoundError(n, entry.get("message"))
            out[n] = JobState(entry["data"]["status"])
        return out

    async def info(
        self, names: str | Iterable[str], with_childs: bool = False
    ) -> dict[str, dict[str, Any]]:
        """The original's ``jobInfo`` data of each job (with its iterations' if asked).

        Raises:
            JobNotFoundError: an unknown job.
        """
        names = _names(names)
        req: dict[str, Any] = {"request": "jobInfo", "jobNames": names}
        if with_childs:
            req["params"] = {"withChilds": True}
        data = await self._call(req)
        out = {}
        for n in names:
            entry = data["jobs"].get(n, {})
            if entry.get("status") != 0:
                raise JobNotFoundError(n, entry.get("message"))
            out[n] = entry["data"]
        return out

    async def list(self) -> dict[str, JobState]:
        """Every job the service knows, with its state."""
        data = await self._call({"request": "listJobs"})
        return {n: JobState(e["status"]) for n, e in data["jobs"].items()}

    async def cancel(self, names: str | Iterable[str]) -> int:
        """Cancel jobs or iterations; returns how many were cancelled.

        Names that had already finished are left as they are (as :meth:`Pilot.cancel`).

        Raises:
            JobNotFoundError: an unknown name (the others were cancelled).
        """
        data = await self._call({"request": "cancelJob", "jobNames": _names(names)})
        errors = data.get("errors") or {}
        for message in errors.values():
            if not str(message).endswith("already finished"):
                raise _error_for(str(message), data)
        return int(data.get("canceled", 0))

    async def remove(self, names: str | Iterable[str]) -> int:
        """Forget finished jobs; returns how many were removed.

        Raises:
            JobNotFoundError: an unknown name (the others were removed).
            InvalidTransition: a job has not finished (the others were removed).
        """
        data = await self._call({"request": "removeJob", "jobNames": _names(names)})
        for message in (data.get("errors") or {}).values():
            raise _error_for(str(message), data)
        return int(data.get("removed", 0))

    async def resources(self) -> ResourcesInfo:
        """Nodes, cores and GPUs of the service: total, used, free."""
        d = await self._call({"request": "resourcesInfo"})
        cores = (d["total_nodes"], d["total_cores"], d["used_cores"], d["free_cores"])
        gpus = (d.get("total_gpus", 0), d.get("used_gpus", 0), d.get("free_gpus", 0))
        return ResourcesInfo(*cores, *gpus)

    async def service_status(self) -> dict[str, Any]:
        """The ``status`` data (System, Resources, JobStats, IterationStats)."""
        data: dict[str, Any] = await self._call({"request": "status"})
        return data

    async def finish(self) -> None:
        """Ask the service to end (it stops its unfinished jobs)."""
        await self._call({"request": "finish"})

    # -- waits ----------------------------------------------------------------

    async def _next_event(self, events: MemoryObjectReceiveStream[_Event]) -> _Event | None:
        """The next event, or None when the safety poll is due."""
        with anyio.move_on_after(self.poll_interval):
            return await events.receive()
        return None

    async def wait4(
        self, names: str | Iterable[str], timeout: float | None = None
    ) -> dict[str, JobState]:
        """Wait until the jobs (or iterations ``name:it``) have ended.

        Returns:
            ``{name: final state}`` in the order given.

        Raises:
            JobNotFoundError: an unknown name.
            PilotTimeoutError: not all ended within ``timeout`` seconds.
        """
        names = _names(names)
        done: dict[str, JobState] = {}
        try:
            with anyio.fail_after(timeout):
                async with self._listen() as events:
                    pending = set(names)
                    while pending:
                        for n, s in (await self.status(sorted(pending))).items():
                            if s in FINAL_STATES:
                                done[n] = s
                                pending.discard(n)
                        while pending and (ev := await self._next_event(events)) is not None:
                            topic, data = ev
                            if topic not in ("JFI", "IFI"):
                                continue
                            it = data.get("it")
                            name = f"{data.get('job')}:{it}" if it is not None else data.get("job")
                            if name in pending:
                                pending.discard(name)
                                done[name] = JobState(data["state"])
        except TimeoutError:
            left = [n for n in names if n not in done]
            raise PilotTimeoutError(
                f"timeout ({timeout} s) waiting for {len(left)} job(s): {', '.join(left[:10])}"
            ) from None
        return {n: done[n] for n in names}

    async def wait4all(self, timeout: float | None = None) -> None:
        """Wait until every job of the service has ended.

        Raises:
            PilotTimeoutError: some are still running after ``timeout`` seconds.
        """
        req = {"request": "status", "options": {"allJobsFinished": True}}
        try:
            with anyio.fail_after(timeout):
                async with self._listen() as events:
                    # A NOJ only says "ask again": one from before a later
                    # submit may still be on its way.
                    while not (await self._call(req)).get("AllJobsFinished"):
                        while (ev := await self._next_event(events)) is not None:
                            if ev[0] == "NOJ":
                                break
        except TimeoutError:
            raise PilotTimeoutError(f"timeout ({timeout} s) waiting for all jobs") from None

    async def wait4_any(
        self, names: str | Iterable[str] | None = None, timeout: float | None = None
    ) -> tuple[str, JobState]:
        """Wait until one of the jobs (any job when ``names`` is None) ends.

        A job that has already ended counts at once.

        Returns:
            ``(name, final state)``.

        Raises:
            JobNotFoundError: an unknown name.
            PilotTimeoutError: none ended within ``timeout`` seconds.
        """
        wanted = None if names is None else _names(names)
        try:
            with anyio.fail_after(timeout):
                async with self._listen() as events:
                    while True:
                        states = await (self.list() if wanted is None else self.status(wanted))
                        for n, s in states.items():
                            if s in FINAL_STATES:
                                return n, s
                        while (ev := await self._next_event(events)) is not None:
                            topic, data = ev
                            job = data.get("job")
                            if topic == "JFI" and (wanted is None or job in wanted):
                                return str(job), JobState(data["state"])
        except TimeoutError:
            raise PilotTimeoutError(f"timeout ({timeout} s): none of the jobs ended") from None
