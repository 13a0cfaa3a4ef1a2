"""The pilot's side of the launch agents' wire: listen, authenticate, hand over.

The pilot opens a TCP listener only while its agents connect (:meth:`AgentGate.gather`)
and closes it as soon as every expected node has joined or the time is up.
Each connection must prove the run's secret before anything else is read
from it (:mod:`._agent`'s handshake: fixed-size fields, HMAC-SHA256 over both
sides' nonces, no ``marshal`` of a stranger's bytes); one that does not, or
that names a node not in the allocation, or a node that has already joined,
is closed with one log line saying who and why, and nothing it sent is acted
upon. Handshakes run side by side, each bounded by its own timeout, so a
connection that stalls does not hold up the agents behind it.

What comes out is, per node, a connected socket that speaks the fork
server's protocol (:mod:`._forkserver`): the start queue of that node.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
from collections.abc import Collection

import anyio
import attrs

from ._agent import HELLO_MAX, MAC, MAGIC, NONCE, HandshakeError, agent_proof, pilot_proof

__all__ = ("AgentGate", "Gathered", "Joined", "new_secret")

#: Seconds one connection may take to prove the secret.
HANDSHAKE_TIMEOUT = 5.0


def new_secret() -> bytes:
    """A fresh per-run secret (32 random bytes)."""
    return os.urandom(32)


@attrs.frozen
class Joined:
    """An agent that proved the secret: who it is, and its connection."""

    node: str
    host: str
    pid: int
    cpus: tuple[int, ...]
    sock: socket.socket = attrs.field(eq=False, repr=False)
    #: What slurmstepd set about the job on its node (``_agent.NODE_VARIABLES``).
    env: dict[str, str] = attrs.field(factory=dict, eq=False, repr=False)
    #: The GPU ids its step was given on its node (``SLURM_STEP_GPUS``, else the
    #: ``*_VISIBLE_DEVICES`` it has), comma-separated; None: none named.
    gpus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Gathered:
    """The outcome of :meth:`AgentGate.gather`."""

    joined: dict[str, Joined]
    #: node -> why it has no agent
    missing: dict[str, str]
    #: one line per connection refused
    refused: list[str]


class AgentGate:
    """Where the agents of one run connect to (a listening TCP socket).

    Args:
        secret: the run's secret, given to the agents in their environment.
        host: the address to listen on: the allocation's interface where it is
            known, else every interface (only while the agents connect).
        log: where refusals are written.
    """

    def __init__(
        self, secret: bytes, host: str = "0.0.0.0", log: logging.Logger | None = None
    ) -> None:
        self._secret = secret
        self._log = log or logging.getLogger("qcgpj_async.agents")
        self._sock: socket.socket | None = socket.create_server((host, 0), backlog=128)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        """Stop listening (connections already made stay open)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def gather(self, nodes: Collection[str], timeout: float) -> Gathered:
        """Accept agents until every node in ``nodes`` has joined or ``timeout`` passes,
        then stop listening.

        Returns:
            the agents that joined, the nodes without one (and why), and the refusals.
        """
        if self._sock is None:
            raise RuntimeError("the agent gate is closed")
        listener = self._sock
        expected = set(nodes)
        joined: dict[str, Joined] = {}
        refused: list[str] = []
        done = anyio.Event()
        if not expected:
            done.set()

        async def verify(conn: socket.socket, peer: str) -> None:
            try:
                with anyio.fail_after(HANDSHAKE_TIMEOUT):
                    agent = await self._handshake(conn)
            except (HandshakeError, OSError, TimeoutError, ValueError, KeyError, TypeError) as e:
                why = "it did not answer in time" if isinstance(e, TimeoutError) else str(e)
                refuse(conn, peer, why)
                return
            except BaseException:  # cancelled: the gate closes before it proved anything
                conn.close()
                raise
            if agent.node not in expected:
                refuse(conn, peer, f"node {agent.node!r} is not one of the allocation's")
            elif agent.node in joined:
                refuse(conn, peer, f"node {agent.node!r} has an agent already")
            else:
                joined[agent.node] = agent
                if expected <= joined.keys():
                    done.set()

        def refuse(conn: socket.socket, peer: str, why: str) -> None:
            line = f"agent connection from {peer} refused: {why}"
            refused.append(line)
            self._log.warning(line)
            conn.close()

        try:
            with anyio.move_on_after(timeout):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_set_on, done, tg.cancel_scope)
                    while not done.is_set():
                        await anyio.wait_readable(listener)
                        try:
                            conn, addr = listener.accept()
                        except (BlockingIOError, InterruptedError):
                            continue
                        conn.setblocking(False)
                        tg.start_soon(verify, conn, f"{addr[0]}:{addr[1]}")
        finally:
            self.close()
        why = f"no agent joined within {timeout:g} s"
        missing = dict.fromkeys(sorted(expected - joined.keys()), why)
        return Gathered(joined, missing, refused)

    async def _handshake(self, conn: socket.socket) -> Joined:
        pilot_nonce = os.urandom(NONCE)
        await _send_all(conn, MAGIC + pilot_nonce)
        head = await _recv_exact(conn, len(MAGIC) + NONCE + MAC + 4)
        if head[: len(MAGIC)] != MAGIC:
            raise HandshakeError("it does not speak the agents' protocol")
        agent_nonce = head[len(MAGIC) : len(MAGIC) + NONCE]
        proof = head[len(MAGIC) + NONCE : len(MAGIC) + NONCE + MAC]
        size = int.from_bytes(head[-4:], "little")
        if size > HELLO_MAX:
            raise HandshakeError(f"its hello is too large ({size} bytes)")
        body = await _recv_exact(conn, size)
        expected_proof = agent_proof(self._secret, pilot_nonce, agent_nonce, body)
        if not hmac.compare_digest(proof, expected_proof):
            raise HandshakeError("it did not prove the run's secret")
        info = json.loads(body)
        await _send_all(conn, pilot_proof(self._secret, pilot_nonce, agent_nonce))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return Joined(
            node=str(info["node"]),
            host=str(info["host"]),
            pid=int(info["pid"]),
            cpus=tuple(int(c) for c in info["cpus"]),
            sock=conn,
            env={str(k): str(v) for k, v in dict(info.get("env") or {}).items()},
            gpus=None if info.get("gpus") is None else str(info["gpus"]),
        )


async def _set_on(done: anyio.Event, scope: anyio.CancelScope) -> None:
    await done.wait()
    scope.cancel()


async def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        await anyio.wait_readable(conn)
        try:
            chunk = conn.recv(n - len(data))
        except (BlockingIOError, InterruptedError):
            continue
        if not chunk:
            raise HandshakeError("it closed the connection during the handshake")
        data += chunk
    return bytes(data)


async def _send_all(conn: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[conn.send(view) :]
        except (BlockingIOError, InterruptedError):
            await anyio.wait_writable(conn)
