"""The agents executor without Slurm: local agent processes pretend to be nodes n1, n2.

A Pilot with an :class:`AgentExecutor` whose ``step_argv`` starts one agent per
"node" on this host (``SLURMD_NODENAME`` tells them apart) runs its one-node
tasks through them; an agent killed or stopped is a lost node. The same on a
real cluster: tests/slurm/test_agents.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from qcgpj_async import Jobs, JobState, Pilot
from qcgpj_async.executors import _agent
from qcgpj_async.executors.agents import AgentExecutor

pytestmark = pytest.mark.anyio
T = 30

# Starts one agent per node name given, each with its own SLURMD_NODENAME, and waits.
STEP = r"""
import os, subprocess, sys
agent, host, port, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def env(name):  # "n1" or "n1@0,1": the node, and the GPUs Slurm gives its step
    node, _, gpus = name.partition("@")
    return dict(os.environ, SLURMD_NODENAME=node, **({"SLURM_STEP_GPUS": gpus} if gpus else {}))
procs = [subprocess.Popen([sys.executable, "-I", "-S", agent, host, port, "10"], env=env(n))
         for n in names]
sys.exit(max(p.wait() for p in procs))
"""


# A stranger first: it connects to the agents' port and sends a request of its own.
STRANGER = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[3])))
s.sendall(b"QCGPJA1\n" + bytes(32) + bytes(32) + (2).to_bytes(4, "little") + b"{}")
s.recv(100)
"""


def local_step(names: Sequence[str], stranger: bool = False) -> object:
    def argv(nodes: int, host: str, port: int) -> list[str]:
        del nodes, host
        code = (STRANGER if stranger else "") + STEP
        return [sys.executable, "-c", code, _agent.__file__, "127.0.0.1", str(port), *names]

    return argv


def executor(
    tmp_path: Path, names: Sequence[str] = ("n1", "n2"), stranger: bool = False, **kw: object
) -> AgentExecutor:
    return AgentExecutor(
        str(tmp_path),
        nodes={"n1": 2, "n2": 2},
        step_argv=local_step(names, stranger),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def cpus_allowed() -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


async def appear(paths: Sequence[Path]) -> None:
    with anyio.fail_after(T):
        while not all(p.exists() for p in paths):
            await anyio.sleep(0.02)  # files the jobs write


RECORD = (
    "echo $SLURMD_NODENAME $PPID ${QCG_PM_CPU_SET:-none} $SLURM_NNODES $SLURM_NTASKS"
    " $SLURM_HOSTFILE > out.${it}; grep Cpus_allowed_list: /proc/self/status >> out.${it}"
)


async def test_tasks_run_through_the_agent_of_their_node_pinned(tmp_path: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pinning two cores per node needs 2 CPUs")
    ex = executor(tmp_path)
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex) as pilot:
        await pilot.submit(Jobs().add(name="it", script=RECORD, iteration=12))
        # 4 started, 8 queued in the agents (each node its share), pinned when they start
        assert pilot._engine.queued == 8
        assert await pilot.wait4("it", timeout=T) == {"it": JobState.SUCCEED}
        agents = {n: h.joined.pid for n, h in ex.agents.nodes.items()}
        cpus = {n: h.joined.cpus for n, h in ex.agents.nodes.items()}
    seen = [(tmp_path / f"out.{i}").read_text().split() for i in range(12)]
    assert {s[0] for s in seen} == {"n1", "n2"}  # both nodes
    for node, ppid, cpu_set, nnodes, ntasks, hostfile, _, allowed in seen:
        assert int(ppid) == agents[node]  # started by that node's agent
        assert (nnodes, ntasks) == ("1", "1")
        assert Path(hostfile).name.endswith(f".{node}.1.hostfile")
        assert cpu_set in {str(c) for c in cpus[node]} and allowed == cpu_set  # pinned
    assert not any(tmp_path.glob(".qcgpj-agents*"))  # hostfiles and log removed
    assert cpus_allowed()  # the pilot itself is not pinned by this


async def test_no_pin_leaves_affinity_alone(tmp_path: Path) -> None:
    ex = executor(tmp_path, pin=False)
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex) as pilot:
        await pilot.submit(Jobs().add(name="it", script=RECORD, iteration=2))
        assert await pilot.wait4("it", timeout=T) == {"it": JobState.SUCCEED}
    for i in range(2):
        seen = (tmp_path / f"out.{i}").read_text().split()
        assert seen[2] == "none" and seen[-1] == cpus_allowed()


HOLD = (
    "touch started.$QCG_PM_STEP_ID.$SLURMD_NODENAME;"
    ' if [ "$SLURMD_NODENAME" = n2 ]; then echo $$ > lpid.$QCG_PM_STEP_ID; exec sleep 60; fi;'
    " while [ ! -e go ]; do sleep 0.05; done"
)


async def lose_n2(tmp_path: Path, ex: AgentExecutor, how: signal.Signals) -> list[str]:
    """Four jobs hold both nodes; n2's agent gets ``how``; more jobs then go to n1."""
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex, kill_grace=1) as pilot:
        jobs = Jobs()
        for i in range(4):
            jobs.add(name=f"h{i}", script=HOLD)
        jobs.add(name="dep", exec="/bin/true", after="h2")
        # queued in the agents, 4 a node, behind the holds: n2's come back when it is lost
        await pilot.submit(
            jobs.add(name="q", script="echo $SLURMD_NODENAME > q.${it}", iteration=8)
        )
        assert pilot._engine.queued == 8
        await appear([tmp_path / f"started.{pilot.id}.{r}.{n}" for r, n in
                      ((1, "n1"), (2, "n1"), (3, "n2"), (4, "n2"))])  # fmt: skip
        lpids = [tmp_path / f"lpid.{pilot.id}.{r}" for r in (3, 4)]
        with anyio.fail_after(T):
            while not all(p.exists() and p.read_text().endswith("\n") for p in lpids):
                await anyio.sleep(0.02)  # files the jobs write
        agent = ex.agents.nodes["n2"].joined.pid
        os.kill(agent, how)
        try:
            got = await pilot.wait4(["h2", "h3"], timeout=T)
            assert got == {"h2": JobState.FAILED, "h3": JobState.FAILED}
            more = await pilot.submit(
                Jobs().add(name="more", script="echo $SLURMD_NODENAME > m.${it}", iteration=4)
            )
            (tmp_path / "go").touch()
            assert await pilot.wait4([*more, "h0", "h1", "q"], timeout=T) == {
                "more": JobState.SUCCEED,
                "h0": JobState.SUCCEED,
                "h1": JobState.SUCCEED,
                "q": JobState.SUCCEED,
            }
            assert pilot._engine.lookahead > 0  # n1 still queues starts
            assert (await pilot.resources()).total_cores == 2  # n2's cores left the pool
            messages = pilot.job_messages("h2") + pilot.job_messages("h3")
            # Its tasks do not outlive it: a SIGKILLed agent's keeper kills them, a stuck
            # one kills them once it runs again and finds its connection closed.
            lost = [int(p.read_text()) for p in lpids]
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent, signal.SIGCONT)
            with anyio.fail_after(T):
                while any(running(p) for p in lost):
                    await anyio.sleep(0.02)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent, signal.SIGCONT)
            for path in tmp_path.glob("lpid.*"):  # only where the agent failed to
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(path.read_text()), signal.SIGKILL)
    assert {(tmp_path / f"m.{i}").read_text().strip() for i in range(4)} == {"n1"}
    assert {(tmp_path / f"q.{i}").read_text().strip() for i in range(8)} == {"n1"}
    journal = next(tmp_path.glob(".qcgpjm-service-*/journal.jsonl")).read_text()
    assert '"t":"lost","node":"n2"' in journal
    log = next(tmp_path.glob(".qcgpjm-service-*/service.log")).read_text()
    assert log.count("node n2 lost") >= 1
    return messages


async def test_an_agent_killed_fails_its_tasks_and_the_rest_go_on(tmp_path: Path) -> None:
    messages = await lose_n2(tmp_path, executor(tmp_path), signal.SIGKILL)
    assert messages == ["node n2 lost: its agent's connection ended"] * 2
    # A resume runs again what failed because its node was lost, and what it omitted.
    async with Pilot(nodes="n1:2,n2:2", resume=tmp_path) as pilot:
        got = await pilot.wait4(["h0", "h2", "h3", "dep", "more"], timeout=T)
    assert got == dict.fromkeys(["h0", "h2", "h3", "dep", "more"], JobState.SUCCEED)


async def test_a_stuck_agent_is_found_by_the_heartbeat(tmp_path: Path) -> None:
    ex = executor(tmp_path, heartbeat=0.1, heartbeat_timeout=1.0)
    messages = await lose_n2(tmp_path, ex, signal.SIGSTOP)
    assert messages == ["node n2 lost: its agent did not answer for 1 s"] * 2


async def test_a_node_without_agent_is_left_out(tmp_path: Path) -> None:
    ex = executor(tmp_path, names=("n1",), join_timeout=1.0)
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex) as pilot:
        assert ex.agents.lost == {"n2": "node n2 left out: no agent joined within 1 s"}
        res = await pilot.resources()
        await pilot.submit(
            Jobs()
            .add(name="it", script="echo $SLURMD_NODENAME > o.${it}", iteration=4)
            .add(name="big", exec="/bin/true", numCores=3)
        )
        got = await pilot.wait4(["it", "big"], timeout=T)
    assert got == {"it": JobState.SUCCEED, "big": JobState.FAILED}
    assert {(tmp_path / f"o.{i}").read_text().strip() for i in range(4)} == {"n1"}
    assert (res.total_cores, res.free_cores) == (2, 2)
    log = next(tmp_path.glob(".qcgpjm-service-*/service.log")).read_text()
    assert log.count("node n2 left out") == 1, log


async def test_a_stranger_on_the_agents_port_is_refused_and_starts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ex = executor(tmp_path, stranger=True)
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex) as pilot:
        await pilot.submit(Jobs().add(name="it", script="echo $PPID > p.${it}", iteration=4))
        assert await pilot.wait4("it", timeout=T) == {"it": JobState.SUCCEED}
        agents = {h.joined.pid for h in ex.agents.nodes.values()}
    assert sorted(ex.agents.nodes) == ["n1", "n2"]
    assert {int((tmp_path / f"p.{i}").read_text()) for i in range(4)} <= agents
    # An executor of one's own logs to qcgpj_async.agents (the default one: service.log).
    refused = [r.getMessage() for r in caplog.records if r.name == "qcgpj_async.agents"]
    assert len(refused) == 1, refused
    assert refused[0].startswith("agent connection from 127.0.0.1:")
    assert refused[0].endswith("refused: it did not prove the run's secret")


async def test_each_agent_checks_its_nodes_gpus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Slurm gives n1's step GPUs 0,1 (as the pilot found) and n2's only 0: one line for n2.
    ex = executor(tmp_path, names=("n1@0,1", "n2@0"), gpus={"n1": ("0", "1"), "n2": ("0", "1")})
    with caplog.at_level("WARNING", "qcgpj_async.agents"):
        async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex) as pilot:
            await pilot.submit(Jobs().add(name="a", exec="/bin/true"))
            assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
    lines = [r.getMessage() for r in caplog.records if "GPUs" in r.getMessage()]
    assert lines == [
        "launch agents: node n2: its step was given GPUs 0, the pilot hands out 0,1 there: "
        "tasks are told the pilot's ids"
    ]


async def test_leaving_by_an_exception_stops_the_starts_queued_in_the_agents(
    tmp_path: Path,
) -> None:
    ex = executor(tmp_path)
    with pytest.raises(RuntimeError):
        async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=ex, kill_grace=2) as pilot:
            hold = "[ -e resumed ] && exit 0; touch long.${it}; exec sleep 30"
            jobs = Jobs().add(name="long", script=hold, iteration=4)
            jobs.add(name="q", script="touch q.${it}.ran", iteration=10)
            await pilot.submit(jobs)
            assert pilot._engine.queued == 10  # 5 in each agent
            await appear([tmp_path / f"long.{i}" for i in range(4)])
            raise RuntimeError("boom")
    assert not list(tmp_path.glob("q.*.ran"))  # none started, on either node
    assert await pilot.status(["long", "q"]) == {"long": JobState.CANCELED, "q": JobState.CANCELED}
    # nothing lost: a resume runs them all (and "long" again, quickly this time)
    (tmp_path / "resumed").touch()
    async with Pilot(nodes="n1:2,n2:2", resume=tmp_path, executor=executor(tmp_path)) as again:
        got = await again.wait4(["long", "q"], timeout=T)
    assert got == {"long": JobState.SUCCEED, "q": JobState.SUCCEED}
    assert len(list(tmp_path.glob("q.*.ran"))) == 10
