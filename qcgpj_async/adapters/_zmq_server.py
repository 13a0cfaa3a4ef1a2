"""The ZMQ server: the original's REP/PUB sockets for a running Pilot.

:func:`serve_zmq` gives a running :class:`~qcgpj_async.Pilot` the original's
network interface for the lifetime of an ``async with``: a REP socket taking
one UTF-8 JSON request per message and answering through
:class:`~qcgpj_async.adapters.protocol.Protocol`, and a PUB socket (advertised
in the ``status`` reply as ``StatusPublisher``) publishing ``"<TOPIC> <json>"``
frames: ``IST``/``IFI`` per iteration state change / final state, ``JST``/``JFI``
per job, ``NOJ`` when nothing is queued or running any more.

Private: import the public names from :mod:`qcgpj_async.adapters.zmq`.
"""

from __future__ import annotations

import json
import os
import socket
from types import TracebackType
from typing import Any

import anyio
import zmq
from anyio.abc import TaskGroup, TaskStatus

from ..engine import StateChanged
from ..model import FINAL_STATES, JobState, QcgpjError
from ..runtime import Pilot
from . import _zmq_io
from ._zmq_io import ADDRESS_ENV
from .protocol import Protocol, error_reply

#: The file in the service directory that holds the REP address.
ADDRESS_FILE = "address"
#: Requests longer than this (bytes) get an error reply instead of an answer.
MAX_MESSAGE = 64 * 1024 * 1024
#: Topics of the publisher, as the original's ``EventTopic``.
TOPICS = ("IST", "IFI", "JST", "JFI", "NOJ")


class ZmqBindError(QcgpjError, OSError):
    """A socket could not be bound (port taken, bad address)."""


class _BadFrame(Exception):
    pass


def _decode(frames: list[bytes], max_message: int) -> object:
    if len(frames) != 1:
        raise _BadFrame(f"Invalid request: one frame per request, got {len(frames)}")
    frame = frames[0]
    if len(frame) > max_message:
        raise _BadFrame(
            f"Invalid request: {len(frame)} bytes, more than the limit of {max_message} bytes"
        )
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


def _bind(
    sock: zmq.Socket[bytes], host: str, port: int | None, port_min: int, port_max: int
) -> str:
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

    def __init__(
        self,
        pilot: Pilot,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        pub_port: int | None = None,
        port_min: int = 2222,
        port_max: int = 9999,
        protocol: Protocol | None = None,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.pilot = pilot
        self.host = host
        self.port = port
        self.pub_port = pub_port
        self.port_min = port_min
        self.port_max = port_max
        self.max_message = max_message
        self.protocol = protocol or Protocol(pilot, log=pilot.log)
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
        ifaces = self.pilot.interfaces
        ifaces.zmq_address, ifaces.publisher = self.address, self.publisher
        ifaces.add("ZMQ")
        self._export()
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self._publish)
            tg.start_soon(self._serve)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            self._unexport()
            self._close()
            raise
        log = self.protocol.log
        log.info("zmq interface at %s, publisher at %s", self.address, self.publisher)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
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
        pilot.set_env(ADDRESS_ENV, self.address)
        if pilot.service_path is not None:
            path = os.path.join(pilot.service_path, ADDRESS_FILE)
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.address)

    def _unexport(self) -> None:
        pilot = self.pilot
        if pilot.env.get(ADDRESS_ENV) == self.address:  # still ours
            pilot.set_env(ADDRESS_ENV, None)

    async def _serve(self) -> None:
        rep = self._rep
        assert rep is not None
        protocol, log = self.protocol, self.protocol.log
        while True:
            frames = await _zmq_io.recv(rep)
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
                    await _zmq_io.send(rep, data)

    async def _publish(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        pub = self._pub
        assert pub is not None
        pilot = self.pilot
        manager = pilot.id
        # Jobs not yet final: NOJ goes out when the last of them (and of any
        # submitted later) ends, once per busy period.
        active = set(pilot.unfinished_jobs())
        # events() subscribes at once: nothing submitted after start() returns is missed.
        async with pilot.events() as events:
            task_status.started()
            try:
                async for ev in events:
                    self._publish_one(pub, manager, active, ev)
            finally:  # closing: what already happened still goes out
                for ev in events.drain():
                    self._publish_one(pub, manager, active, ev)

    def _publish_one(
        self, pub: zmq.Socket[bytes], manager: str, active: set[str], ev: StateChanged
    ) -> None:
        state = ev.state.value
        final = ev.state in FINAL_STATES
        if ev.iteration is None:
            if not final:
                active.add(ev.job)
                # As the original: no event for QUEUED, and an iteration job's
                # own state is published when it ends.
                if ev.state is JobState.QUEUED or self.pilot.is_iterative(ev.job):
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


def serve_zmq(
    pilot: Pilot,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    pub_port: int | None = None,
    port_min: int = 2222,
    port_max: int = 9999,
    protocol: Protocol | None = None,
    max_message: int = MAX_MESSAGE,
) -> ZmqServer:
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
    return ZmqServer(
        pilot,
        host=host,
        port=port,
        pub_port=pub_port,
        port_min=port_min,
        port_max=port_max,
        protocol=protocol,
        max_message=max_message,
    )
