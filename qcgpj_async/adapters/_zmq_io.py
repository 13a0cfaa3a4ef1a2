"""What the ZMQ server and client share: the address variable, and pyzmq on anyio.

Both sides drive plain (synchronous) pyzmq sockets without blocking: every
send/recv is ``NOBLOCK``, and on ``zmq.Again`` the task waits for the socket's
``zmq.FD`` to become readable with :func:`anyio.wait_readable`. That FD is
edge-triggered and only says "the socket's state may have changed", so the
state is re-read from ``zmq.EVENTS`` before every wait (pyzmq's own asyncio
integration does the same; it is asyncio-only, this works on trio too). Each
socket is used by one task at a time.

Private: import the public names from :mod:`qcgpj_async.adapters.zmq`.
"""

from __future__ import annotations

from typing import cast

import anyio
import zmq

#: The variable every job gets (and the original client's default address).
ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"

# The edge-triggered FD can in theory miss a wakeup; re-reading zmq.EVENTS this
# often bounds what such a miss costs.
_RECHECK = 1.0


async def wait_for(sock: zmq.Socket[bytes], flag: int) -> None:
    """Wait until the socket's ``zmq.EVENTS`` has ``flag`` (``POLLIN``/``POLLOUT``)."""
    while not cast(int, sock.get(zmq.EVENTS)) & flag:
        with anyio.move_on_after(_RECHECK):
            await anyio.wait_readable(cast(int, sock.get(zmq.FD)))


async def recv(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Receive one (multipart) message."""
    await anyio.lowlevel.checkpoint()  # a busy socket must not starve other tasks
    while True:
        try:
            return sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            await wait_for(sock, zmq.POLLIN)


async def send(sock: zmq.Socket[bytes], data: bytes) -> None:
    """Send one single-frame message."""
    while True:
        try:
            sock.send(data, zmq.NOBLOCK)
            return
        except zmq.Again:
            await wait_for(sock, zmq.POLLOUT)
