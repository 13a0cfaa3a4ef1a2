"""Launch agents: the start queues of the nodes of a Slurm allocation.

:class:`AgentQueues` starts one agent on every node of the allocation with
ONE ``srun`` step (:func:`agents_argv`), lets them join through an
:class:`~._agent_wire.AgentGate` (the run's secret in their environment,
never on a command line), and makes each joined agent's connection the
:class:`~._forkserver_link.ForkServer` of its node (an :class:`AgentLink`).
It is itself a :class:`~._base.StartQueue`: a start goes to the queue of the
one node its allocation lies on; tasks on several nodes, MPI models, and nodes
without an agent start through ``Executor.start`` (srun steps).

A task started by an agent sees what it would see in its own srun step: the
pilot's environment less the step-shaping variables, its share of the
allocation in ``SLURM_*`` (:func:`~._srun_argv.step_environment`), a
``SLURM_HOSTFILE``, the task-level variables slurmstepd sets
(:data:`TASK_VARIABLES`), its wd and streams. With ``pin``, it is bound to
the CPUs of the cores the engine gave it (the agent's affinity, in order:
core ``i`` of a node is the ``i``-th CPU its agent may use), named in
``QCG_PM_CPU_SET``; an agent with fewer CPUs than the engine's cores on its
node pins nothing (one log line).

Faults: a node whose agent does not join within ``join_timeout`` is left out
(one log line: which node, why). An agent whose connection ends, or that
does not answer the heartbeat (``("ping", n)`` every ``heartbeat`` s, no
``pong`` for ``heartbeat_timeout`` s), is a lost node: its runs end with
``node n2 lost: ...`` and the runtime takes its cores out of the pool.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import ChainMap
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import cast

import anyio
import attrs
from anyio.abc import TaskStatus

from . import _agent
from ._agent_wire import AgentGate, Joined, new_secret
from ._forkserver_link import ForkServer, ForkStart, Window
from ._slurm_env import discover
from ._srun_argv import SHAPE_VARIABLES, step_environment
from ._task import Task, qcg_environment

__all__ = (
    "AGENTS_STEP",
    "HEARTBEAT",
    "HEARTBEAT_TIMEOUT",
    "JOIN_TIMEOUT",
    "OVERLAP_SINCE",
    "STEP_VARIABLES",
    "TASK_VARIABLES",
    "AgentLink",
    "AgentQueues",
    "agents_argv",
    "slurm_version",
)

#: Name prefix of the agents' step (``squeue -s`` shows ``qcgpj-agents-<pilot>``).
AGENTS_STEP = "qcgpj-agents"
#: Seconds the agents have to join (start-up of the step and of Python included).
JOIN_TIMEOUT = 30.0
#: Seconds between two pings of an agent.
HEARTBEAT = 2.0
#: Seconds without a pong after which an agent is taken for lost.
HEARTBEAT_TIMEOUT = 20.0
#: Seconds a write to an agent may block (its socket's send buffer full).
SEND_TIMEOUT = 5.0
#: Seconds the agents have to exit once their connections are closed.
CLOSE_TIMEOUT = 10.0
#: Models that start through an agent (one process, on one node).
AGENT_MODELS = ("default", "threads")
#: The Slurm version that has ``srun --overlap`` (and steps that do not share CPUs
#: unless asked to).
OVERLAP_SINCE = (20, 11)


def slurm_version(srun: str = "srun") -> tuple[int, int] | None:
    """``(major, minor)`` of the Slurm that ``srun --version`` names (``slurm
    22.05.8``); None where it cannot be run or says something else."""
    try:
        done = subprocess.run(
            [srun, "--version"], capture_output=True, text=True, timeout=10, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)\.(\d+)", done.stdout)
    return (int(found[1]), int(found[2])) if found and done.returncode == 0 else None


def agents_argv(
    nodes: int,
    host: str,
    port: int,
    *,
    name: str,
    timeout: float,
    srun: str = "srun",
    cpus: int | None = None,
    version: tuple[int, int] | None = None,
) -> list[str]:
    """The ONE srun step that starts an agent on each of ``nodes`` nodes.

    ``--overlap`` (Slurm >= 20.11, where steps stopped sharing CPUs by default;
    left out for an older ``version``, which has no such option and shares them
    anyway; kept where the version is not known) and ``--mem=0``: the step holds nothing the
    tasks' own steps need; ``--cpus-per-task=cpus`` (the job's CPUs per node,
    the fewest where nodes differ) and ``--cpu-bind=none``: where Slurm confines
    a step to its CPUs (task/cgroup), the agent, and so its tasks, may still use
    every CPU of the job on its node (its affinity is what it reports; with
    ``--overlap`` the tasks' own steps start beside it all the same, measured on
    22.05); one task per node; ``--kill-on-bad-exit=0``: an agent that dies
    leaves the others running.
    """
    return [
        srun,
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        *(["--overlap"] if version is None or version >= OVERLAP_SINCE else []),
        "--mem=0",
        "--cpu-bind=none",
        *([f"--cpus-per-task={cpus}"] if cpus else []),
        "--kill-on-bad-exit=0",
        f"--job-name={name}",
        sys.executable,
        "-I",
        "-S",
        _agent.__file__,
        host,
        str(port),
        f"{timeout:g}",
    ]


#: What slurmstepd sets for the one task of a one-node step, and an agent's task gets too.
TASK_VARIABLES = ("SLURMD_NODENAME", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID")
#: What slurmstepd sets about a step itself: an agent's task has no step of its own, so
#: it does not inherit the pilot's (when the pilot runs in a step).
STEP_VARIABLES = frozenset(
    (
        "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_TASK_PID", "SLURM_SRUN_COMM_HOST",
        "SLURM_SRUN_COMM_PORT", "SLURM_STEP_LAUNCHER_PORT", "SLURM_LAUNCH_NODE_IPADDR",
        "SLURM_GTIDS", "SLURM_CPU_BIND", "SLURM_CPU_BIND_LIST", "SLURM_CPU_BIND_TYPE",
        "SLURM_CPU_BIND_VERBOSE", "SLURM_STEP_GPUS", "SLURM_UMASK",
    )
)  # fmt: skip


class AgentLink:
    """A :class:`~._forkserver_link.ByteLink` over one agent's TCP connection.

    Writes block (the fork server's protocol writes requests whole) for at most
    :data:`SEND_TIMEOUT` s. Nothing is ever signalled from here: the agent's
    processes are another host's, and the agent kills them when the
    connection ends.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        tv = struct.pack("ll", int(SEND_TIMEOUT), 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self._sock = sock
        self.rfd = sock.fileno()
        self.wfd = os.dup(self.rfd)  # closed alone, when the requests end

    def close_requests(self) -> None:
        """End the requests: the agent kills what still runs, then exits."""
        if self.wfd >= 0:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            os.close(self.wfd)
            self.wfd = -1

    async def wait_closed(self) -> None:
        """The agent's end was read: close the connection."""
        self._sock.close()
        self.rfd = -1

    def abort(self) -> None:
        """Cut the connection both ways: the agent and our reader both see its end."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def kill_orphans(self, pids: Collection[int]) -> None:
        """Nothing: those pids are another host's (the agent killed them)."""


_Shape = tuple[dict[str, str], dict[str, str], frozenset[str]]


@attrs.define
class _Node:
    joined: Joined
    link: AgentLink
    server: ForkServer
    cores: int  # the engine's cores on this node
    pin: bool
    base: tuple[Mapping[str, str] | None, dict[str, str]] = (None, {})  # source, agent's base
    #: The pilot's environment as srun exports it, for the source in ``base``.
    plain: dict[str, str] = attrs.Factory(dict)
    #: What every task of the node's first shape has alike (its Slurm and one-node
    #: ``QCG_PM_*`` variables), made part of the agent's base: a start sends what
    #: differs (``QCG_PM_STEP_ID``, the job's env...), not 25 variables.
    common: dict[str, str] | None = None
    #: (cores, job name) -> the variables of a task of that shape here (they win over
    #: the task's), those of them not in ``common``, and the names in ``common`` not
    #: among them (each, unless the task has it, as the pilot has it, or unset)
    shapes: dict[tuple[int, str | None], _Shape] = attrs.Factory(dict)
    pong: int = 0
    heard: float = 0.0


class AgentQueues:
    """The start queues of an allocation's nodes, one launch agent each (see the module).

    Args:
        scratch_dir: where hostfiles and the agents' step messages are written
            (the service directory: on a file system the nodes share).
        pin: pin tasks to the CPUs of their cores.
        srun: the srun program.
        join_timeout: seconds the agents have to join.
        heartbeat: seconds between pings; heartbeat_timeout: silence that is a loss.
        log: where the agents' lines go.
        nodes: ``{node: cores}`` (default: the allocation's, from Slurm).
        step_argv: ``(nodes, host, port) -> argv`` of the command that starts the
            agents (default: :func:`agents_argv`; tests and benchmarks start local
            processes that pretend to be nodes).
    """

    def __init__(
        self,
        scratch_dir: str | None = None,
        *,
        pin: bool = True,
        srun: str = "srun",
        join_timeout: float = JOIN_TIMEOUT,
        heartbeat: float = HEARTBEAT,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        log: logging.Logger | None = None,
        nodes: Mapping[str, int] | None = None,
        step_argv: Callable[[int, str, int], Sequence[str]] | None = None,
        gpus: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.scratch_dir = scratch_dir
        self._gpus = {n: tuple(ids) for n, ids in (gpus or {}).items()}
        self._nodes = dict(nodes) if nodes is not None else None
        self._step_argv = step_argv
        self.pin = pin
        self.srun = srun
        self.join_timeout = join_timeout
        self.heartbeat, self.heartbeat_timeout = heartbeat, heartbeat_timeout
        self.log = log or logging.getLogger("qcgpj_async.agents")
        self.nodes: dict[str, _Node] = {}
        #: node -> why it has no agent (never joined, or lost).
        self.lost: dict[str, str] = {}
        #: Seconds from the start of the agents' step to the last agent joined.
        self.startup: float | None = None
        #: The Slurm version ``srun --version`` named (None: not known, or not asked).
        self.version: tuple[int, int] | None = None
        self.step_name = f"{AGENTS_STEP}-{os.getpid()}-{os.urandom(3).hex()}"
        self._step: subprocess.Popen[bytes] | None = None
        self._step_log: str | None = None
        self._on_lost: Callable[[str, str], object] | None = None
        self._closed = False
        self._beat = anyio.CancelScope()
        self._hostfiles: dict[tuple[str, int], str] = {}
        self._window = Window()  # the starts an event leads to: one write per agent

    # -- the StartQueue ------------------------------------------------------------

    #: A queue per node: a queued start runs on its node (see ``StartQueue.per_node``).
    per_node = True

    @property
    def accepting(self) -> bool:
        """Whether some node's agent takes starts."""
        return any(n.server.running for n in self.nodes.values())

    def queueable(self, model: str) -> bool:
        """One-process models start through an agent; MPI models through srun/mpirun."""
        return model in AGENT_MODELS

    def node_of(self, task: Task) -> str | None:
        """The node whose agent starts ``task``; None: it starts as an srun step."""
        parts = task.allocation.parts
        if len(parts) != 1 or task.model not in AGENT_MODELS:
            return None
        return parts[0].node

    def begin(self, task: Task, *, queued: bool = False, key: int = 0) -> ForkStart | None:
        """Ask the agent of ``task``'s node to start it; None where no agent does."""
        node = self.node_of(task)
        here = self.nodes.get(node) if node is not None else None
        if here is None or not here.server.running:
            return None
        return here.server.begin(self._agent_task(task, here), queued=queued, key=key)

    def promote(self, starting: object, cores: Sequence[int] = ()) -> None:
        """Start a queued start now, on ``cores`` (through the agent it was asked of)."""
        start = cast(ForkStart, starting)
        if start.server is not None:
            start.server.promote(start, cores)

    def drop(self, starting: object) -> None:
        """Take a queued start out of its agent's queue."""
        start = cast(ForkStart, starting)
        if start.server is not None:
            start.server.drop(start)

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """A new base environment for every agent."""
        for n in self.nodes.values():
            n.server.set_base_env(self._filtered(env, n))

    def on_node_lost(self, callback: Callable[[str, str], object]) -> None:
        """Call ``callback(node, why)`` for each node lost (those already, at once)."""
        self._on_lost = callback
        for node, why in list(self.lost.items()):
            callback(node, why)

    @property
    def batching(self) -> bool:
        """Whether a batch is open (see :meth:`batch`)."""
        return self._window.active

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Within: the requests asked of any agent gather, and go in one write per agent
        at the end. The events of each read of an agent are handled in one."""
        return self._window.batch()

    def on_batch_end(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback()`` at the end of each batch, once its requests are sent."""
        self._window.after = callback

    # -- what an agent's task sees ------------------------------------------------

    def _filtered(self, env: Mapping[str, str], here: _Node) -> dict[str, str]:
        """The agent's base environment: ``env`` less the step-shaping variables, as
        srun exports it, plus what slurmstepd sets about the job on that node, plus
        the node's ``common`` variables (made once per node and base)."""
        src, out = here.base
        if env is not src:
            plain = {
                k: v for k, v in env.items() if k not in SHAPE_VARIABLES and k not in STEP_VARIABLES
            }
            plain.update(here.joined.env)
            out = {**plain, **here.common} if here.common else plain
            here.base, here.plain = (env, out), plain
        return out

    def _hostfile(self, node: str, cores: int) -> str | None:
        path = self._hostfiles.get((node, cores))
        if path is None and self.scratch_dir is not None:
            path = os.path.join(self.scratch_dir, f".{self.step_name}.{node}.{cores}.hostfile")
            try:
                with open(path, "w") as f:
                    f.write(f"{node}\n" * cores)
            except OSError:
                return None
            self._hostfiles[(node, cores)] = path
        return path

    def _agent_task(self, task: Task, here: _Node) -> Task:
        part = task.allocation.parts[0]
        n = len(part.cores)
        key = (n, task.getenv("SLURM_JOB_NAME"))
        shape = here.shapes.get(key)
        if shape is None:  # the same for every task of n cores here: made once
            shape = here.shapes[key] = self._shape(task, here, n)
        base = self._filtered(task.env_base if task.env_base is not None else task.env, here)
        own, common = task.env_extra or {}, here.common or {}
        mine, fix, restore = shape
        # Sent: what differs from the agent's base (its ``common``); the shape wins.
        extra = {k: v for k, v in own.items() if k not in mine and common.get(k) != v}
        extra.update(fix)
        unset = () if own.keys() >= restore else self._restore(extra, own, restore, here)
        env: Mapping[str, str] = ChainMap(extra, base)
        if unset:
            env = {k: v for k, v in env.items() if k not in unset}
        return Task(
            task.run_id, task.job, task.iteration, task.argv, env, task.cwd,
            task.stdin, task.stdout, task.stderr, task.allocation, task.model, task.model_opts,
            base, extra, env_unset=unset,
        )  # fmt: skip

    def _shape(self, task: Task, here: _Node, n: int) -> _Shape:
        """The variables of a task of ``n`` cores here (its share of the allocation, as
        its own srun step would have it); the first shape of a node is its ``common``."""
        node = task.allocation.parts[0].node
        mine = dict.fromkeys(TASK_VARIABLES, "0")
        mine["SLURMD_NODENAME"] = node
        mine["SLURM_CPUS_PER_TASK"] = mine["SLURM_CPUS_ON_NODE"] = str(n)
        mine.update(step_environment(task, self._hostfile(node, n)))
        if here.common is None:  # the agent's base changes once, before its first start
            common = dict(mine)
            for k, v in qcg_environment(task.allocation, "").items():
                if k != "QCG_PM_STEP_ID":
                    common[k] = v
            here.common, here.base = common, (None, {})
        common = here.common
        fix = {k: v for k, v in mine.items() if common.get(k) != v}
        return mine, fix, frozenset(k for k in common if k not in mine)

    def _restore(
        self, extra: dict[str, str], own: Mapping[str, str], names: frozenset[str], here: _Node
    ) -> tuple[str, ...]:
        """The ``common`` variables a task of another shape does not have: set as the
        pilot has them, else unset (the names returned), unless the task has its own."""
        unset = []
        for k in sorted(names):
            if k in own:
                continue
            if k in here.plain:
                extra[k] = here.plain[k]
            else:
                unset.append(k)
        return tuple(unset)

    # -- start-up, heartbeat, end -------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the agents and wait for them to join (reports started then: the
        first job starts once the agents are ready); then serve every node's
        connection and ping them until :meth:`aclose`."""
        cores = self._nodes
        if cores is None:
            try:
                cores = dict(discover(os.environ))
            except Exception as e:  # no allocation to start agents in: srun steps
                self.log.warning("launch agents: not started: %s", e)
                task_status.started()
                return
        await self._gather(cores)
        async with anyio.create_task_group() as tg:
            for here in self.nodes.values():
                await tg.start(here.server.serve)
            if self.nodes and not self._closed:
                tg.start_soon(self._heartbeats)
            task_status.started()

    async def _gather(self, cores: Mapping[str, int]) -> None:
        t0 = time.monotonic()
        secret = new_secret()
        gate = AgentGate(secret, log=self.log)
        host = os.environ.get("QCGPJ_AGENT_HOST") or socket.gethostname()
        if self._step_argv is not None:
            argv = list(self._step_argv(len(cores), host, gate.port))
        else:
            self.version = await anyio.to_thread.run_sync(slurm_version, self.srun)
            argv = agents_argv(
                len(cores), host, gate.port, name=self.step_name, timeout=self.join_timeout,
                srun=self.srun, cpus=min(cores.values(), default=None), version=self.version,
            )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in SHAPE_VARIABLES}
        env[_agent.SECRET_VAR] = secret.hex()
        where = self.scratch_dir or os.getcwd()
        self._step_log = os.path.join(where, f".{self.step_name}.log")
        try:
            self._step = _start_step(argv, env, self._step_log)
        except OSError as e:
            gate.close()
            for node in cores:
                self._leave_out(node, f"the agents' step did not start: {e}")
            return
        got = await gate.gather(cores, self.join_timeout)
        self.startup = time.monotonic() - t0
        step_said = self._step_messages()
        if not got.joined:  # none at all (no TCP to us?): srun steps, as without agents
            self.log.warning(
                "launch agents: none joined within %g s%s: every task runs as a Slurm step",
                *(self.join_timeout, f" (srun: {step_said})" if step_said else ""),
            )
            return
        for node, why in got.missing.items():
            self._leave_out(node, f"{why}{'; srun: ' + step_said if step_said else ''}")
        for node, joined in got.joined.items():
            self._add(node, joined, cores[node])
            self._check_gpus(node, joined.gpus)
        slurm = ".".join(map(str, self.version)) if self.version else "?"
        self.log.info(
            "launch agents: %d of %d nodes joined in %.3f s (step %s, Slurm %s)",
            *(len(self.nodes), len(cores), self.startup, self.step_name, slurm),
        )

    def _check_gpus(self, node: str, seen: str | None) -> None:
        """One line where the GPUs Slurm gives the agent's step on ``node`` are not
        those the pilot hands out there (its tasks are told the pilot's ids)."""
        mine = self._gpus.get(node, ())
        theirs = tuple(i for i in (seen or "").split(",") if i.strip())
        if mine and theirs and sorted(theirs) != sorted(mine):
            self.log.warning(
                "launch agents: node %s: its step was given GPUs %s, the pilot hands out "
                "%s there: tasks are told the pilot's ids",
                *(node, ",".join(theirs), ",".join(mine)),
            )

    def _add(self, node: str, joined: Joined, cores: int) -> None:
        link = AgentLink(joined.sock)
        pin = self.pin and len(joined.cpus) >= cores
        if self.pin and not pin:
            self.log.warning(
                "launch agents: node %s: its agent may use %d CPUs (%s) and the pilot"
                " has %d cores there: tasks are not pinned",
                *(node, len(joined.cpus), ",".join(map(str, joined.cpus)), cores),
            )
        here = _Node(joined, link, cast(ForkServer, None), cores, pin, heard=time.monotonic())
        here.server = ForkServer(
            lambda: link,
            left_out=("openmpi", "intelmpi", "srunmpi"),
            node=node,
            pin=joined.cpus if pin else None,
            window=self._window,
        )
        here.server.on_node_lost(self._lost)
        self.nodes[node] = here

    def _leave_out(self, node: str, why: str) -> None:
        self._lost(node, f"node {node} left out: {why}")

    def _lost(self, node: str, why: str) -> None:
        """One line per node lost: the runtime's (which takes its cores out), or ours."""
        if node in self.lost:
            return
        self.lost[node] = why
        if self._on_lost is not None:
            self._on_lost(node, why)
        else:
            self.log.warning("launch agents: %s", why)

    def _step_messages(self) -> str:
        if self._step_log is None:
            return ""
        try:
            with open(self._step_log, "rb") as f:
                text = f.read(1 << 14).decode(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    async def _heartbeats(self) -> None:
        with self._beat:  # cancelled by aclose()
            await self._beat_loop()

    async def _beat_loop(self) -> None:
        n = 0
        while not self._closed:
            await anyio.sleep(self.heartbeat)
            n += 1
            now = time.monotonic()
            for node, here in list(self.nodes.items()):
                server = here.server
                if not server.running or node in self.lost:
                    continue
                if server.pong != here.pong:
                    here.pong, here.heard = server.pong, now
                elif now - here.heard > self.heartbeat_timeout:
                    server.lost_reason = (
                        f"node {node} lost: its agent did not answer for"
                        f" {self.heartbeat_timeout:g} s"
                    )
                    here.link.abort()
                    continue
                if not server.ping(n):
                    here.link.abort()

    async def aclose(self) -> None:
        """Close every agent's connection (each kills what still runs and exits), then
        wait for the agents' step to end (SIGTERM to its srun after
        :data:`CLOSE_TIMEOUT` s, which kills the step's tasks)."""
        self._closed = True
        self._beat.cancel()
        for here in self.nodes.values():
            await here.server.aclose()
        step = self._step
        if step is not None:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await _wait_exit(step.pid)
                if step.poll() is None:
                    for here in self.nodes.values():
                        here.link.abort()
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(step.pid, signal.SIGTERM)
                    await anyio.to_thread.run_sync(step.wait)
        for path in [*self._hostfiles.values(), self._step_log]:
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._hostfiles.clear()


def _start_step(argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
    """srun of the agents' step, its messages to ``log``, in a session of its own."""
    with open(log, "wb") as errs:
        return subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=errs, stderr=errs,
            start_new_session=True,
        )  # fmt: skip


async def _wait_exit(pid: int) -> None:
    """Until our child ``pid`` has exited (not reaped: its pid stays ours)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # reaped already
        return
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)
