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

The process srun starts is the agent's **keeper**: it makes itself the
subreaper of its descendants (``PR_SET_CHILD_SUBREAPER``), forks the serving
process (which connects, proves the secret and serves: its pid is the one the
hello names, and the parent of every job), and waits. A process a job leaves
behind (a daemon, a child whose parent ended) is reparented to the keeper,
not to init, and reaped there. When the serving process ends, for any reason
(its connection ended, a crash, even SIGKILL), the keeper SIGKILLs every
process left under it, each job with its process group, and what they leave
in turn, reaps them all, and exits with the serving process's status (1, and
one line on stderr, when it died of a signal): no process started through an
agent outlives it, whatever Slurm's process tracking follows. Where the
kernel has no subreapers, the agent serves in the one process, as before,
and says so on stderr. Neither process stops on SIGINT or SIGTERM (the pilot
decides); the jobs get them back at their defaults.

It imports only the standard library and its siblings, as the fork server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
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
    "keep",
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
#: prctl(2) option: orphaned descendants are reparented to this process, not to init.
PR_SET_CHILD_SUBREAPER = 36
#: Seconds between two looks for processes left, while the keeper kills them.
SWEEP_POLL = 0.01
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
    """``_agent.py HOST PORT [TIMEOUT]``: keep a serving process that connects, proves
    the secret and serves until the end; its exit status."""
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
    return keep(name, lambda: join_and_serve(name, host, port, timeout, secret_hex))


def join_and_serve(name: str, host: str, port: int, timeout: float, secret_hex: str) -> int:
    """Connect, prove the secret, serve until the connection ends; the exit status."""
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


def keep(name: str, work: Callable[[], int]) -> int:
    """Run ``work`` in a child and outlive it: then kill and reap every process left.

    This process becomes the subreaper of its descendants, so what ``work``'s
    processes leave behind, and they themselves once ``work``'s process is gone,
    are its children, and their pids stay theirs until it reaps them. Where it
    cannot become one, ``work`` runs here (one line on stderr). Returns the
    child's exit status, or 1 when a signal ended it (one line on stderr).
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)  # handled, not ignored: back at the default in every job
    why = subreaper()
    if why is not None:
        print(
            f"qcgpj agent on {name}: cannot become a subreaper ({why}): its jobs may"
            " outlive it if it dies",
            file=sys.stderr,
        )
        return work()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # the serving process
        code = 1
        try:
            code = work()
        except BaseException:  # a bug: said, and the keeper cleans up
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    while True:  # reap what the jobs leave behind, until the serving process ends
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    killed = sweep()
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            what = signal.Signals(signum).name
        except ValueError:
            what = f"signal {signum}"
        print(
            f"qcgpj agent on {name}: its serving process (pid {child}) was killed by"
            f" {what}; the {killed} processes left under it were killed, with their groups",
            file=sys.stderr,
        )
        return 1
    return os.waitstatus_to_exitcode(status)


def _ignore(signum: int, frame: object) -> None:
    pass


def subreaper() -> str | None:
    """Make this process the subreaper of its descendants; None, or why it cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0) != 0:
            return os.strerror(ctypes.get_errno())
    except (ImportError, OSError, AttributeError) as e:  # no ctypes, no libc, no prctl
        return str(e)
    return None


def sweep() -> int:
    """SIGKILL every child of this process, each with its group where it leads one, and
    what they leave (it becomes ours), and reap them all; how many were killed.

    Each is signalled only while it is our child and not reaped: its pid (and the
    group it leads) cannot be another's.
    """
    killed: set[int] = set()
    while True:
        for pid in children() - killed:
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # pragma: no cover - exited
                pass
            killed.add(pid)
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return len(killed)
            if pid == 0:
                break
            reaped = True
            killed.discard(pid)
        if not reaped:  # the ones killed are still dying; or a child came since the look
            time.sleep(SWEEP_POLL)


def children() -> set[int]:
    """The pids of this process's children (running or not reaped yet)."""
    me = os.getpid()
    found: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children") as f:
                found.update(int(p) for p in f.read().split())
    except OSError:  # no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)
        return children_by_stat()
    return found


def children_by_stat() -> set[int]:
    """:func:`children`, from every process's ``/proc/PID/stat`` (slower)."""
    me = os.getpid()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
            if ppid == me:
                found.add(int(entry))
    return found


if __package__:
    from ._forkserver import serve
else:  # run as a script (python -I: its folder is not on sys.path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _forkserver import serve  # type: ignore[import-not-found,no-redef]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
