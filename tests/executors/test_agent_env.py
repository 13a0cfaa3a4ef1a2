"""What an agent's task sees, computed without agents: the agent's base (the pilot's
environment as srun exports it, plus the node's common variables) and each start's
own variables add up to what its own srun step would show it."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import cast

import pytest

from qcgpj_async import Jobs
from qcgpj_async.engine import Allocation, Launch, NodePart
from qcgpj_async.executors import ForkServer, prepare_task
from qcgpj_async.executors._agent_wire import Joined
from qcgpj_async.executors._agents import (
    STEP_VARIABLES,
    TASK_VARIABLES,
    AgentLink,
    AgentQueues,
    _Node,
)
from qcgpj_async.executors._srun_argv import SHAPE_VARIABLES, step_environment
from qcgpj_async.executors._task import Task

pytestmark = pytest.mark.anyio
PILOT_ENV = {"PATH": "/bin", "SLURM_JOB_NAME": "pilot", "SLURM_STEP_ID": "3", "X": "x"}


def node(pin: bool = False) -> _Node:
    joined = Joined("n1", "h", 1, (4, 5, 6, 7), cast(socket.socket, None), {"SLURM_TOPOLOGY": "t"})
    return _Node(joined, cast(AgentLink, None), cast(ForkServer, None), 4, pin)


def task(cores: tuple[int, ...], run_id: int = 1, base: dict[str, str] | None = None,
         **kw: object) -> Task:  # fmt: skip
    (spec,) = Jobs().add(name="j", exec="/bin/true", **kw).jobs()
    alloc = Allocation((NodePart("n1", cores, None, 0),))
    return prepare_task(Launch(run_id, "j", None, spec, alloc), root_wd="/r",
                        base_env=base or PILOT_ENV, step_id=f"p.{run_id}")  # fmt: skip


def expected(t: Task, here: _Node, hostfile: str | None) -> dict[str, str]:
    """As before the node's common variables: the pilot's env less what srun drops, the
    node's, the task's own, its shape over all."""
    env = {k: v for k, v in t.env.items() if k not in SHAPE_VARIABLES and k not in STEP_VARIABLES}
    env.update(here.joined.env)
    n = len(t.allocation.parts[0].cores)
    shape = dict.fromkeys(TASK_VARIABLES, "0")
    shape.update(SLURMD_NODENAME="n1", SLURM_CPUS_PER_TASK=str(n), SLURM_CPUS_ON_NODE=str(n))
    shape.update(step_environment(t, hostfile))
    return {**env, **dict(t.env_extra or {}), **shape}


def seen(t: Task) -> dict[str, str]:
    """What the agent starts it with: its base, the start's variables, less its unset."""
    assert t.env_base is not None and t.env_extra is not None
    env = {**t.env_base, **t.env_extra}
    for k in t.env_unset:
        env.pop(k, None)
    assert dict(t.env) == env
    return env


@pytest.mark.parametrize("first", [(0,), (0, 1)])
async def test_each_start_sends_only_what_differs_and_the_task_sees_the_same(
    tmp_path: Path, first: tuple[int, ...]
) -> None:
    queues, here = AgentQueues(str(tmp_path)), node()
    cases = [
        task(first),
        task((2,), 2),
        task((1, 2, 3), 3),
        task((3,), 4, env={"SLURM_NTASKS": "9", "QCG_PM_NPROCS": "7", "X": "y"}),
        task((1,), 5, env={"SLURM_JOB_NAME": "mine"}),
        task((2,), 6, base={"PATH": "/bin"}),  # no job name at all
        task((0, 1), 7, model="threads"),
    ]
    for t in cases:
        at = queues._agent_task(t, here)
        n = len(t.allocation.parts[0].cores)
        assert seen(at) == expected(t, here, queues._hostfile("n1", n)), t.label
        assert at.env_base is queues._filtered(t.env_base or {}, here)  # one base per node
    one = queues._agent_task(task((1,), 8), here) if first == (0,) else None
    if one is not None:  # a one-core task on a node whose first task had one core
        assert dict(one.env_extra or {}) == {"QCG_PM_STEP_ID": "p.8"}


async def test_a_task_made_by_hand_keeps_the_pilot_s_variables_or_none(tmp_path: Path) -> None:
    queues, here = AgentQueues(str(tmp_path)), node()
    queues._agent_task(task((0,)), here)  # the node's common variables: one core's
    (spec,) = Jobs().add(name="j", exec="/bin/true").jobs()
    bare = Task(9, "j", None, ("/bin/true",), {"PATH": "/bin", "QCG_PM_NNODES": "5"}, "/r",
                None, None, None, Allocation((NodePart("n1", (0, 1), None, 0),)), "default",
                {})  # fmt: skip
    at = queues._agent_task(bare, here)
    env = seen(at)
    assert env["QCG_PM_NNODES"] == "5"  # the pilot's, not the node's common one
    assert "QCG_PM_STEP_ID" not in env and "QCG_PM_NPROCS" not in env
    assert "QCG_PM_NPROCS" in at.env_unset
    assert env["SLURM_CPUS_PER_TASK"] == "2" and spec.name == "j"


async def test_pinning_names_the_cpus_of_the_task_s_cores(tmp_path: Path) -> None:
    # The task carries no CPU set: the agent's fork server pins the start to the CPUs of
    # its cores (a queued start: of the core it takes) and names them in QCG_PM_CPU_SET.
    queues, here = AgentQueues(str(tmp_path)), node(pin=True)
    at = queues._agent_task(task((1, 3)), here)
    assert "QCG_PM_CPU_SET" not in seen(at)
    server = ForkServer(pin=here.joined.cpus)
    assert server._cpus((1, 3)) == [5, 7] and server._cpus((-1,)) is None
    assert ForkServer()._cpus((1, 3)) is None  # not pinned
