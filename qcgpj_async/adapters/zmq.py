"""The ZMQ transport (extra ``[zmq]``): the original's REP/PUB sockets, and an async client.

Server: :func:`serve_zmq` gives a running :class:`~qcgpj_async.Pilot` the
original's network interface for the lifetime of an ``async with``: a REP
socket taking one UTF-8 JSON request per message and answering through
:class:`~qcgpj_async.adapters.protocol.Protocol`, and a PUB socket (advertised
in the ``status`` reply as ``StatusPublisher``) publishing ``"<TOPIC> <json>"``
frames: ``IST``/``IFI`` per iteration state change / final state, ``JST``/``JFI``
per job, ``NOJ`` when nothing is queued or running any more. The original
client (``qcg.pilotjob.api.manager.Manager``) talks to it unchanged, its waits
driven by those events.

Client: :class:`Client` is the async counterpart, with the Pilot's coroutine
names (``submit``, ``wait4``, ...), usable from asyncio and trio.

Both sides drive plain (synchronous) pyzmq sockets without blocking: every
send/recv is ``NOBLOCK``, and on ``zmq.Again`` the task waits for the socket's
``zmq.FD`` to become readable with :func:`anyio.wait_readable`. That FD is
edge-triggered and only says "the socket's state may have changed", so the
state is re-read from ``zmq.EVENTS`` before every wait (pyzmq's own asyncio
integration does the same; it is asyncio-only, this works on trio too). Each
socket is used by one task at a time.
"""

from __future__ import annotations

try:
    import zmq
except ImportError as e:  # pragma: no cover - exercised without pyzmq installed
    raise ImportError(
        "qcgpj_async.adapters.zmq needs pyzmq: pip install 'qcgpj_async[zmq]'"
    ) from e

import json
import os
import re
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..engine import StateChanged
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
from ..runtime import Pilot, ResourcesInfo
from .protocol import Protocol, error_reply

__all__ = (
    "ADDRESS_ENV",
    "ADDRESS_FILE",
    "MAX_MESSAGE",
    "Client",
    "RequestError",
    "ZmqBindError",
    "ZmqServer",
    "serve_zmq",
)

#: The variable every job gets (and the original client's default address).
ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"
#: The file in the service directory that holds the REP address.
ADDRESS_FILE = "address"
#: Requests longer than this (bytes) get an error reply instead of an answer.
MAX_MESSAGE = 64 * 1024 * 1024
#: Topics of the publisher, as the original's ``EventTopic``.
TOPICS = ("IST", "IFI", "JST", "JFI", "NOJ")

# The edge-triggered FD can in theory miss a wakeup; re-reading zmq.EVENTS this
# often bounds what such a miss costs.
_RECHECK = 1.0


class ZmqBindError(QcgpjError, OSError):
    """A socket could not be bound (port taken, bad address)."""


class RequestError(QcgpjError, RuntimeError):
    """The service answered a request with an error reply.

    Attributes:
        reply: the whole reply dict.
    """

    def __init__(self, message: str, reply: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply = dict(reply or {})


# == non-blocking pyzmq on anyio ===============================================


async def _wait_for(sock: zmq.Socket[bytes], flag: int) -> None:
    while not cast(int, sock.get(zmq.EVENTS)) & flag:
        with anyio.move_on_after(_RECHECK):
            await anyio.wait_readable(cast(int, sock.get(zmq.FD)))


async def _recv(sock: zmq.Socket[bytes]) -> list[bytes]:
    await anyio.lowlevel.checkpoint()  # a busy socket must not starve other tasks
    while True:
        try:
            return sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            await _wait_for(sock, zmq.POLLIN)


async def _send(sock: zmq.Socket[bytes], data: bytes) -> None:
    while True:
        try:
            sock.send(data, zmq.NOBLOCK)
            return
        except zmq.Again:
            await _wait_for(sock, zmq.POLLOUT)


# == the server ================================================================


class _BadFrame(Exception):
    pass


def _decode(frames: list[bytes], max_message: int) -> object:
    if len(frames) != 1:
        raise _BadFrame(f"Invalid request: one frame per request, got {len(frames)}")
    frame = frames[0]
    if len(frame) > max_message:
        raise _BadFrame(f"Invalid request: {len(frame)} bytes, more than the limit "
                        f"of {max_message} bytes")
    try:
        return json.loads(frame.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadFrame("Invalid request: not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise _BadFrame(f"Invalid request: not JSON: {e}") from None


def _endpoint(host: str, port: int | None = None) -> str:
    host = "*" if host in ("", "*", "0.0.0.0") else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"tcp://{host}" if port is None else f"tcp://{host}:{port}"


def _bind(sock: zmq.Socket[bytes], host: str, port: int | None, port_min: int,
          port_max: int) -> str:
    if ":" in host.strip("[]"):
        sock.setsockopt(zmq.IPV6, 1)
    try:
        if port:
            sock.bind(_endpoint(host, port))
        else:
            sock.bind_to_random_port(_endpoint(host), min_port=port_min, max_port=port_max)
    except zmq.ZMQError as e:
        where = _endpoint(host, port) if port else f"{_endpoint(host)}:[{port_min}-{port_max})"
        raise ZmqBindError(f"cannot bind {where}: {e}") from None
    real = sock.get_string(zmq.LAST_ENDPOINT)
    if "//0.0.0.0:" in real:
        # A wildcard is no address for a client: advertise this host's one,
        # as the original does.
        try:
            ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            ip = "127.0.0.1"
        real = real.replace("//0.0.0.0:", f"//{ip}:")
    return real


def _event(topic: str, data: dict[str, Any]) -> bytes:
    return f"{topic} {json.dumps(data)}".encode()


class ZmqServer:
    """The ZMQ interface of one running pilot; make it with :func:`serve_zmq`.

    Attributes:
        address: the REP address clients connect to (also in ``<service dir>/address``
            and in every job's ``QCG_PM_ZMQ_ADDRESS``).
        publisher: the PUB address (``StatusPublisher`` of the ``status`` reply).
        protocol: answers the requests; its ``finish`` / ``finish_after_all``
            events tell the owner when a client asked the service to end.
    """

    def __init__(self, pilot: Pilot, *, host: str = "127.0.0.1", port: int | None = None,
                 pub_port: int | None = None, port_min: int = 2222, port_max: int = 9999,
                 protocol: Protocol | None = None, max_message: int = MAX_MESSAGE) -> None:
        self.pilot = pilot
        self.host = host
        self.port = port
        self.pub_port = pub_port
        self.port_min = port_min
        self.port_max = port_max
        self.max_message = max_message
        self.protocol = protocol or Protocol(
            pilot, log=pilot.service.log if pilot.service is not None else None)
        self.address = ""
        self.publisher = ""
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._rep: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> ZmqServer:
        ctx = self._ctx = zmq.Context()
        rep = self._rep = ctx.socket(zmq.REP)
        pub = self._pub = ctx.socket(zmq.PUB)
        try:
            # Enough linger for the last reply (to ``finish``) to leave.
            rep.setsockopt(zmq.LINGER, 2000)
            pub.setsockopt(zmq.LINGER, 500)
            # A hard limit far above the answered one: zmq drops the peer.
            rep.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message)
            # Subscribers that read slowly get a deep queue, not lost events.
            pub.setsockopt(zmq.SNDHWM, 1_000_000)
            self.address = _bind(rep, self.host, self.port, self.port_min, self.port_max)
            self.publisher = _bind(pub, self.host, self.pub_port, self.port_min, self.port_max)
        except BaseException:
            self._close()
            raise
        self.protocol.zmq_address = self.address
        self.protocol.publisher = self.publisher
        self._export()
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self._publish)
            tg.start_soon(self._serve)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            self._close()
            raise
        log = self.protocol.log
        log.info("zmq interface at %s, publisher at %s", self.address, self.publisher)
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._unexport()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        for sock in (self._rep, self._pub):
            if sock is not None:
                sock.close()
        if self._ctx is not None:
            self._ctx.term()  # waits for the linger of queued replies
        self._rep = self._pub = self._ctx = None

    def _export(self) -> None:
        pilot = self.pilot
        pilot.env[ADDRESS_ENV] = self.address
        # Jobs inherit the environment the pilot built when it started; a
        # running pilot gets the address added there too.
        # TODO(runtime hook): a public Pilot.set_env() would avoid this.
        if pilot._base_env:
            pilot._base_env[ADDRESS_ENV] = self.address
        if pilot.service is not None:
            path = os.path.join(pilot.service.path, ADDRESS_FILE)
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.address)

    def _unexport(self) -> None:
        pilot = self.pilot
        if pilot.env.get(ADDRESS_ENV) == self.address:
            del pilot.env[ADDRESS_ENV]
            if pilot._base_env.get(ADDRESS_ENV) == self.address:
                pilot._base_env[ADDRESS_ENV] = os.environ.get(ADDRESS_ENV, "")
                if ADDRESS_ENV not in os.environ:
                    del pilot._base_env[ADDRESS_ENV]

    async def _serve(self) -> None:
        rep = self._rep
        assert rep is not None
        protocol, log = self.protocol, self.protocol.log
        while True:
            frames = await _recv(rep)
            # Once a request is in, it gets its reply: REP must answer before
            # it can receive again, and a ``finish`` reply must reach its client.
            with anyio.CancelScope(shield=True):
                try:
                    reply = await protocol.handle(_decode(frames, self.max_message))
                except _BadFrame as e:
                    reply = error_reply(str(e))
                try:
                    data = json.dumps(reply).encode()
                except (TypeError, ValueError) as e:  # a handler bug: still answer
                    log.exception("reply not serializable")
                    data = json.dumps(error_reply(f"Internal error: {e}")).encode()
                if reply.get("code") != 0:
                    log.warning("zmq request rejected: %s", reply.get("message"))
                with anyio.move_on_after(10):
                    await _send(rep, data)

    async def _publish(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                       ) -> None:
        pub = self._pub
        assert pub is not None
        pilot = self.pilot
        manager = pilot.id
        # Jobs not yet final: NOJ goes out when the last of them (and of any
        # submitted later) ends, once per busy period.
        active = {n for n, j in pilot.engine.jobs.items() if j.state not in FINAL_STATES}
        # events() subscribes at once: nothing submitted after start() returns is missed.
        async with pilot.events() as events:
            task_status.started()
            async for ev in events:
                self._publish_one(pub, manager, active, ev)

    def _publish_one(self, pub: zmq.Socket[bytes], manager: str, active: set[str],
                     ev: StateChanged) -> None:
        state = ev.state.value
        final = ev.state in FINAL_STATES
        if ev.iteration is None:
            if not final:
                active.add(ev.job)
                # As the original: no event for QUEUED, and an iteration job's
                # own state is published when it ends.
                job = self.pilot.engine.jobs.get(ev.job)
                if ev.state is JobState.QUEUED or (job is not None and job.iterative):
                    return
            data: dict[str, Any] = {"manager": manager, "job": ev.job, "state": state}
            pub.send(_event("JST", data), zmq.NOBLOCK)
            if final:
                pub.send(_event("JFI", data), zmq.NOBLOCK)
                if ev.job in active:
                    active.discard(ev.job)
                    if not active:
                        pub.send(_event("NOJ", {"manager": manager}), zmq.NOBLOCK)
        else:
            data = {"manager": manager, "job": ev.job, "state": state, "it": ev.iteration}
            pub.send(_event("IST", data), zmq.NOBLOCK)
            if final:
                pub.send(_event("IFI", data), zmq.NOBLOCK)


def serve_zmq(pilot: Pilot, *, host: str = "127.0.0.1", port: int | None = None,
              pub_port: int | None = None, port_min: int = 2222, port_max: int = 9999,
              protocol: Protocol | None = None, max_message: int = MAX_MESSAGE) -> ZmqServer:
    """Serve the original's ZMQ interface of a running pilot::

        async with Pilot(nodes="4") as pilot, serve_zmq(pilot) as server:
            print(server.address)          # tcp://127.0.0.1:<port>
            await server.protocol.finish.wait()   # until a client sends ``finish``

    On entry the address is written to ``<service dir>/address`` and jobs
    started from then on get ``QCG_PM_ZMQ_ADDRESS``.

    Args:
        pilot: the pilot (entered, or entered right after).
        host: the interface to bind; ``127.0.0.1`` by default, ``*`` or
            ``0.0.0.0`` for all (then this host's address is advertised).
        port: the REP port; None: a random free one in ``[port_min, port_max)``.
        pub_port: the PUB port; None: random in the same range.
        port_min: lowest random port.
        port_max: end (exclusive) of the random port range.
        protocol: answers the requests (share one with other transports).
        max_message: longer requests get an error reply.

    Raises:
        ZmqBindError: (on entry) a port is taken or the host is not an address here.
    """
    return ZmqServer(pilot, host=host, port=port, pub_port=pub_port, port_min=port_min,
                     port_max=port_max, protocol=protocol, max_message=max_message)


# == the client ================================================================

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

    def __init__(self, address: str | None = None, *, timeout: float | None = None,
                 connect_timeout: float | None = 30.0, poll_interval: float = 30.0) -> None:
        self.address = _parse_address(address or os.environ.get(ADDRESS_ENV)
                                      or "tcp://127.0.0.1:5555")
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

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
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
            for frame in await _recv(sub):
                topic, _, body = frame.decode("utf-8", "replace").partition(" ")
                try:
                    data = json.loads(body)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    for s in self._listeners:
                        s.send_nowait((topic, data))

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

    async def request(self, request: Mapping[str, Any],
                      timeout: float | None = None) -> dict[str, Any]:
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
                    await _send(req, data)
                    frames = await _recv(req)
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

    async def submit(self, jobs: Jobs | JobSpec | Mapping[str, Any]
                     | Iterable[JobSpec | Mapping[str, Any]]) -> list[str]:
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

    async def info(self, names: str | Iterable[str],
                   with_childs: bool = False) -> dict[str, dict[str, Any]]:
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

        Raises:
            JobNotFoundError: an unknown name.
            RequestError: e.g. every name had already finished.
        """
        data = await self._call({"request": "cancelJob", "jobNames": _names(names)})
        return int(data.get("canceled", 0))

    async def remove(self, names: str | Iterable[str]) -> int:
        """Forget finished jobs; returns how many were removed.

        Raises:
            JobNotFoundError: an unknown name.
            InvalidTransition: a job has not finished.
        """
        data = await self._call({"request": "removeJob", "jobNames": _names(names)})
        return int(data.get("removed", 0))

    async def resources(self) -> ResourcesInfo:
        """Nodes and cores of the service: total, used, free."""
        d = await self._call({"request": "resourcesInfo"})
        return ResourcesInfo(d["total_nodes"], d["total_cores"], d["used_cores"],
                             d["free_cores"])

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

    async def wait4(self, names: str | Iterable[str],
                    timeout: float | None = None) -> dict[str, JobState]:
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

    async def wait4_any(self, names: str | Iterable[str] | None = None,
                        timeout: float | None = None) -> tuple[str, JobState]:
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
