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

Both sides drive plain (synchronous) pyzmq sockets without blocking, on
asyncio and trio alike (see ``_zmq_io``).

This is the public module; the code lives in ``_zmq_server`` (the service),
``_zmq_client`` (:class:`Client`) and ``_zmq_io`` (what both share).
"""

from __future__ import annotations

# Checked here, before the private modules are imported, so that a missing
# pyzmq is reported with the extra that brings it.
try:
    import zmq  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without pyzmq installed
    raise ImportError("qcgpj_async.adapters.zmq needs pyzmq: pip install 'qcgpj_async[zmq]'") from e

from ._zmq_client import Client, RequestError
from ._zmq_io import ADDRESS_ENV
from ._zmq_server import ADDRESS_FILE, MAX_MESSAGE, ZmqBindError, ZmqServer, serve_zmq
from ._zmq_server import TOPICS as TOPICS

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
