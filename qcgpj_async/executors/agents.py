"""The agents executor: inside a Slurm allocation, one launch agent per node.

Tasks that lie on one node (``default`` and ``threads`` models) start through
that node's agent (:mod:`._agents`): no Slurm step per task. Tasks on several
nodes, MPI models, and tasks of a node without an agent are srun steps, as
with :class:`~.srun.SrunExecutor`. See docs/slurm.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from ._agents import HEARTBEAT, HEARTBEAT_TIMEOUT, JOIN_TIMEOUT, AgentQueues
from ._base import LaunchError, Process
from ._task import Task
from .srun import SrunExecutor

__all__ = ("AgentExecutor",)


class AgentExecutor:
    """Starts one-node tasks through launch agents, the others as srun steps.

    Args:
        scratch_dir: hostfiles, srun messages, the agents' step messages (the
            service directory for the pilot's default executor).
        pin: pin each agent's task to the CPUs of its cores (``QCG_PM_CPU_SET``).
        srun: the srun program.
        extra_args: srun options of every task's own step.
        join_timeout: seconds the agents have to join; a node whose agent has
            not is left out of the pool.
        heartbeat: seconds between pings of an agent.
        heartbeat_timeout: seconds without an answer after which its node is lost.
        log: where the agents' lines go (default: ``qcgpj_async.agents``).
        nodes: ``{node: cores}`` the agents serve (default: the allocation's).
        step_argv: ``(nodes, host, port) -> argv`` that starts the agents
            (default: one srun step; tests start local processes as nodes).
    """

    instant = False

    def __init__(
        self,
        scratch_dir: str | None = None,
        *,
        pin: bool = True,
        srun: str = "srun",
        extra_args: Sequence[str] = (),
        join_timeout: float = JOIN_TIMEOUT,
        heartbeat: float = HEARTBEAT,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        log: logging.Logger | None = None,
        nodes: Mapping[str, int] | None = None,
        step_argv: Callable[[int, str, int], Sequence[str]] | None = None,
        gpus: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.steps = SrunExecutor(scratch_dir, srun=srun, extra_args=extra_args)
        self.agents = AgentQueues(
            scratch_dir,
            pin=pin,
            srun=srun,
            join_timeout=join_timeout,
            heartbeat=heartbeat,
            heartbeat_timeout=heartbeat_timeout,
            log=log,
            nodes=nodes,
            step_argv=step_argv,
            gpus=gpus,
        )

    def start_queue(self) -> AgentQueues:
        """The agents: the start queue of each node, chosen by a task's node."""
        return self.agents

    async def start(self, task: Task) -> Process:
        """Start ``task`` through its node's agent, or as an srun step.

        Raises:
            LaunchError: it could not start; its node was lost.
        """
        agents = self.agents
        node = agents.node_of(task)
        if node is not None:
            why = agents.lost.get(node)
            if why is not None:  # lost (a node left out at the start gets no task)
                raise LaunchError(f"job {task.label}: {why}")
            starting = agents.begin(task)
            if starting is not None:
                return await starting.result()
        return await self.steps.start(task)

    async def aclose(self) -> None:
        """Close the agents (each kills what still runs) and the srun steps left."""
        await self.agents.aclose()
        await self.steps.aclose()
