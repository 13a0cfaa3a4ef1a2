"""A launch agent: the fork server of one node of an allocation, reached over TCP.

Started on every node of the allocation by ONE ``srun`` step (one task per
node), as a script (``python -I -S _agent.py HOST PORT``). It connects back to
the pilot, proves that it knows the run's secret, says which node it is and
which CPUs it may use, and then serves the fork server's protocol
(:mod:`._forkserver`) on that connection: the same queued starts, batched
events and process-group kills as on the pilot's own node. When the
connection ends (the pilot closed it, died, even by SIGKILL, or the node lost
the network) every job it started is killed with its group and reaped, and
the agent exits.

The secret comes in the environment (:data:`SECRET_VAR`, hex), never on a
command line (``ps`` shows command lines to every user of the node); the agent
removes it from its environment before any job can start. The handshake
(:func:`handshake`) uses fixed-size binary fields and bounded JSON, never
``marshal``, until both sides have proven the secret: bytes from a stranger
are never unmarshalled.

It imports only the standard library and its siblings, as the fork server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = (
    "HELLO_MAX",
    "MAGIC",
    "NODE_VARIABLES",
    "SECRET_VAR",
    "HandshakeError",
    "agent_proof",
    "connect",
    "handshake",
    "hello",
    "main",
    "pilot_proof",
)

#: What slurmstepd sets in a step about the job on this node, which a task in a step of
#: its own would see (and the pilot's own environment may lack or differ in): the agent
#: reports them, and its tasks get them.
NODE_VARIABLES = (
    "SLURM_CONF", "SLURM_JOB_UID", "SLURM_JOB_GID", "SLURM_JOB_USER",
    "SLURM_WORKING_CLUSTER", "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT", "SLURM_JOB_QOS", "SLURM_NODE_ALIASES",
)  # fmt: skip
#: The environment variable that carries the run's secret (hex) to the agents.
SECRET_VAR = "QCGPJ_AGENT_SECRET"
#: First bytes of each side's first message: the protocol and its version.
MAGIC = b"QCGPJA1\n"
NONCE = 32
MAC = 32
#: The largest hello (JSON) an agent may send.
HELLO_MAX = 1 << 16
_LEN = struct.Struct("<I")


class HandshakeError(Exception):
    """The other side does not speak the protocol or does not know the secret."""


def agent_proof(secret: bytes, pilot_nonce: bytes, agent_nonce: bytes, hello: bytes) -> bytes:
    """What the agent sends to prove the secret (it covers its hello too)."""
    return hmac.new(secret, b"agent" + pilot_nonce + agent_nonce + hello, hashlib.sha256).digest()


def pilot_proof(secret: bytes, pilot_nonce: bytes, agent_nonce: bytes) -> bytes:
    """What the pilot answers to prove the secret in turn."""
    return hmac.new(secret, b"pilot" + agent_nonce + pilot_nonce, hashlib.sha256).digest()


def hello() -> dict[str, Any]:
    """Who this agent is: its node (Slurm's name for it), host, pid, the CPUs it
    may use (its affinity, real CPU ids), the :data:`NODE_VARIABLES` it has, and
    the GPUs its node gives its step (Slurm's own view; None: none named)."""
    env = os.environ
    return {
        "gpus": (
            env.get("SLURM_STEP_GPUS")
            or env.get("ROCR_VISIBLE_DEVICES")
            or env.get("CUDA_VISIBLE_DEVICES")
        ),
        "node": env.get("SLURMD_NODENAME") or socket.gethostname(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "env": {
            k: v
            for k, v in env.items()
            if k in NODE_VARIABLES or k.startswith("SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_")
        },
    }


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise HandshakeError("the pilot closed the connection during the handshake")
        data += chunk
    return bytes(data)


def handshake(sock: socket.socket, secret: bytes, info: dict[str, Any]) -> None:
    """The agent's side: prove the secret, send ``info``, check the pilot's proof.

    Raises:
        HandshakeError: the pilot does not speak the protocol or does not know the secret.
    """
    head = _recv_exact(sock, len(MAGIC) + NONCE)
    if head[: len(MAGIC)] != MAGIC:
        raise HandshakeError("the other end is not a qcgpj_async pilot")
    pilot_nonce = head[len(MAGIC) :]
    agent_nonce = os.urandom(NONCE)
    body = json.dumps(info, separators=(",", ":")).encode()
    if len(body) > HELLO_MAX:
        raise HandshakeError("hello too large")
    proof = agent_proof(secret, pilot_nonce, agent_nonce, body)
    sock.sendall(MAGIC + agent_nonce + proof + _LEN.pack(len(body)) + body)
    answer = _recv_exact(sock, MAC)
    if not hmac.compare_digest(answer, pilot_proof(secret, pilot_nonce, agent_nonce)):
        raise HandshakeError("the pilot did not prove the secret")


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connection to the pilot, retried until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(0.1, timeout))
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
            continue
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        return sock


def main(argv: list[str]) -> int:
    """``_agent.py HOST PORT [TIMEOUT]``: connect, prove the secret, serve until the end."""
    if len(argv) not in (2, 3):
        print("usage: _agent.py HOST PORT [TIMEOUT]", file=sys.stderr)
        return 2
    host, port = argv[0], int(argv[1])
    timeout = float(argv[2]) if len(argv) > 2 else 30.0
    secret_hex = os.environ.pop(SECRET_VAR, "")
    name = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    if not secret_hex:
        print(f"qcgpj agent on {name}: no {SECRET_VAR} in the environment", file=sys.stderr)
        return 2
    try:
        sock = connect(host, port, timeout)
        handshake(sock, bytes.fromhex(secret_hex), hello())
    except (OSError, HandshakeError, ValueError) as e:
        where = f"{host}:{port}"
        print(f"qcgpj agent on {name}: cannot join the pilot at {where}: {e}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    rfd = sock.detach()
    wfd = os.dup(rfd)  # the server selects on the two ends separately
    serve(rfd, wfd)
    return 0


if __package__:
    from ._forkserver import serve
else:  # run as a script (python -I: its folder is not on sys.path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _forkserver import serve  # type: ignore[import-not-found,no-redef]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
