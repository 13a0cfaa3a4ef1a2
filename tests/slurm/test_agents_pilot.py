"""A Pilot inside a real allocation (2 nodes x 4 CPUs) runs its tasks through launch agents.

Each driver script runs under ``salloc``, opens a Pilot with its default
executor (agents on: one srun step for every node), and prints one JSON line
for the test to check. Every virtual node is this host; ``$SLURMD_NODENAME``
tells them apart.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SlurmCluster

pytestmark = pytest.mark.slurm

PRELUDE = r"""
import json, os, signal, subprocess, sys, time
import anyio
from qcgpj_async import Jobs, JobState, Pilot

WD = sys.argv[1]
JOB = os.environ["SLURM_JOB_ID"]


def steps():
    out = subprocess.run(["squeue", "-h", "-s", "-j", JOB, "-o", "%i %j"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines() if len(line.split()) == 2]


async def appear(paths, timeout=30.0):
    with anyio.fail_after(timeout):
        while not all(os.path.exists(p) for p in paths):
            await anyio.sleep(0.02)  # files the jobs write


def env_of(path):
    pairs = (line.split("=", 1) for line in open(path).read().splitlines() if "=" in line)
    return {k: v for k, v in pairs if k.startswith(("SLURM", "QCG_PM_"))}


def emit(**kw):
    print(json.dumps(kw), flush=True)
"""

RUN = r"""
HOLD = ('env > env.$SLURMD_NODENAME.$QCG_PM_STEP_ID; echo $PPID > ppid.${it};'
        ' while [ ! -e go ]; do sleep 0.05; done')

async def main():
    t0 = time.monotonic()
    async with Pilot(resources="slurm", wd=WD, kill_grace=1) as pilot:
        up = time.monotonic() - t0
        await pilot.submit(Jobs().add(name="hold", script=HOLD, iteration=6)
                           .add(name="long", exec="sleep", args=["60"])
                           .add(name="wt", script="touch wt.ready; sleep 60", wt="2s"))
        await appear([os.path.join(WD, f) for f in [*(f"ppid.{i}" for i in range(6)), "wt.ready"]])
        during = steps()
        await pilot.cancel("long")
        open(os.path.join(WD, "go"), "w").close()
        got = await pilot.wait4(["hold", "long", "wt"], timeout=30)
        wt_msg = pilot.job_messages("wt")
    after = steps()
    async with Pilot(resources="slurm", wd=os.path.join(WD, "srun"), agents=False) as pilot:
        await pilot.submit(Jobs().add(name="e", script="env > env.srun"))
        srun_state = (await pilot.wait4("e", timeout=30))["e"]
    envs = {f: env_of(os.path.join(WD, f)) for f in os.listdir(WD) if f.startswith("env.")}
    log = open([os.path.join(WD, d, "service.log") for d in os.listdir(WD)
                if d.startswith(".qcgpjm-service-")][0]).read()
    emit(up=up, states={k: v.value for k, v in got.items()}, wt_msg=wt_msg, during=during,
         after=after, envs=envs, srun_env=env_of(os.path.join(WD, "srun", "env.srun")),
         srun_state=srun_state.value, log=log,
         ppids=sorted({open(os.path.join(WD, f"ppid.{i}")).read().strip() for i in range(6)}))
"""


def drive(
    cluster: SlurmCluster, tmp_path: Path, body: str, timeout: float = 90, tasks: int = 8
) -> dict[str, Any]:
    code = PRELUDE + body + "\nif sys.argv[2:] != ['child']:\n    anyio.run(main)\n"
    script = tmp_path / "driver.py"
    script.write_text(code)
    per_node = [f"--ntasks-per-node={tasks // 2}"]
    done = cluster.run_in_allocation(
        [sys.executable, str(script), str(tmp_path)], nodes=2, tasks=tasks, timeout=timeout,
        salloc_args=per_node,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result; stdout: {done.stdout}\nstderr: {done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


#: What differs between a task's environment under an agent and in its own srun step:
#: what slurmstepd sets about the step itself (its id, the srun that started it).
STEP_ONLY = {
    "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_TASK_PID", "SLURM_LAUNCH_NODE_IPADDR",
    "SLURM_SRUN_COMM_HOST", "SLURM_SRUN_COMM_PORT", "SLURM_STEP_LAUNCHER_PORT",
    "SLURM_DISTRIBUTION", "SLURM_GTIDS", "SLURM_TOPOLOGY_ADDR", "SLURM_TOPOLOGY_ADDR_PATTERN",
    "SLURM_UMASK", "SLURM_PRIO_PROCESS",
    "SLURM_HOSTFILE", "QCG_PM_STEP_ID", "QCG_PM_CPU_SET",  # each its own, both ways
}  # fmt: skip


def test_tasks_go_through_the_agents_on_both_nodes(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = drive(slurm_cluster, tmp_path, RUN)
    assert out["states"] == {"hold": "SUCCEED", "long": "CANCELED", "wt": "FAILED"}
    assert out["wt_msg"] and "wall time" in out["wt_msg"][0]
    # While 8 tasks ran: one step, the agents', and no step per task.
    assert len(out["during"]) == 1 and out["during"][0].startswith("qcgpj-agents-")
    assert out["after"] == []
    assert len(out["ppids"]) == 2  # two agents started them all
    nodes = {name.split(".")[1] for name in out["envs"]}
    assert nodes == {"n1", "n2"} or len(nodes) == 2
    assert "launch agents: 2 of 2 nodes joined" in out["log"]
    assert re.search(r"\(step qcgpj-agents-\S+, Slurm \d+\.\d+\)", out["log"])  # srun --version
    if len(os.sched_getaffinity(0)) < 4:  # 4 CPUs per node, fewer on the host: no pinning
        assert "the pilot has 4 cores there: tasks are not pinned" in out["log"]
    # The same view of Slurm as in an srun step, less what names the step itself.
    srun = {k: v for k, v in out["srun_env"].items() if k not in STEP_ONLY}
    assert out["srun_state"] == "SUCCEED"
    for name, env in out["envs"].items():
        mine = {k: v for k, v in env.items() if k not in STEP_ONLY}
        node = name.split(".")[1]
        expect = {**srun, "SLURMD_NODENAME": node, "SLURM_NODELIST": node,
                  "SLURM_JOB_NODELIST": node, "SLURM_STEP_NODELIST": node,
                  "QCG_PM_NODELIST": node}  # fmt: skip
        diff = {k: (mine.get(k), expect.get(k)) for k in mine.keys() | expect.keys()
                if mine.get(k) != expect.get(k)}  # fmt: skip
        assert diff == {}, (name, sorted(diff.items()))


KILL = r"""
# The pilot (this script as a child) runs tasks on both nodes through agents, says
# the tasks' pids, and is SIGKILLed: nothing of it may be left on any node.
async def pilot():
    async with Pilot(resources="slurm", wd=os.path.join(WD, "p")) as p:
        await p.submit(Jobs().add(name="s", script="echo $$ > pid.${it}; exec sleep 300",
                                  iteration=8))
        await appear([os.path.join(WD, "p", f"pid.{i}") for i in range(8)])
        emit(ready=True)
        await anyio.sleep(300)


def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


async def main():
    child = subprocess.Popen([sys.executable, __file__, WD, "child"], stdout=subprocess.PIPE,
                             text=True)
    assert json.loads(child.stdout.readline())["ready"]
    pids = [int(open(os.path.join(WD, "p", f"pid.{i}")).read()) for i in range(8)]
    before = steps()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20 and (any(alive(p) for p in pids) or steps()):
        await anyio.sleep(0.05)
    emit(before=before, alive=[p for p in pids if alive(p)], left=steps())


if sys.argv[2:] == ["child"]:
    anyio.run(pilot)
"""


def test_the_pilot_sigkilled_leaves_no_task_and_no_step(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = drive(slurm_cluster, tmp_path, KILL)
    assert len(out["before"]) == 1 and out["before"][0].startswith("qcgpj-agents-")
    assert out["alive"] == []
    assert out["left"] == []


LOST = r"""
HOLD = ('if [ "$SLURMD_NODENAME" = "$LOSE" ]; then echo $$ > lpid.${it}; fi;'
        ' touch started.$SLURMD_NODENAME.${it};'
        ' if [ "$SLURMD_NODENAME" = "$LOSE" ]; then exec sleep 60; fi;'
        ' while [ ! -e go ]; do sleep 0.05; done; echo $SLURMD_NODENAME > node.${it}')

def agent_pid(node):
    # The agent of that node that serves (and started the tasks): of the processes of
    # _agent.py whose SLURMD_NODENAME is node, the child of another (its keeper).
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            ppid = int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        if any(c.endswith(b"_agent.py") for c in cmd) and not cmd[0].endswith(b"srun") and (
                f"SLURMD_NODENAME={node}".encode() in env) and (
                f"SLURM_JOB_ID={JOB}".encode() in env):
            found[int(pid)] = ppid
    serving = [pid for pid, ppid in found.items() if ppid in found]
    return serving[0] if serving else next(iter(found), None)


def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False

async def main():
    nodes = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                           capture_output=True, text=True, check=True).stdout.split()
    lose = nodes[1]
    os.environ["LOSE"] = lose
    async with Pilot(resources="slurm", wd=WD, kill_grace=1) as pilot:
        await pilot.submit(Jobs().add(name="h", script=HOLD, iteration=8))
        await appear([os.path.join(WD, f"started.{n}.{i}") for n, i in
                      [(nodes[0], i) for i in range(4)] + [(lose, i) for i in range(4, 8)]])
        os.kill(agent_pid(lose), signal.SIGKILL)
        await pilot.submit(Jobs().add(name="more", script="echo $SLURMD_NODENAME > m.${it}",
                                      iteration=4))
        await anyio.sleep(0.5)
        open(os.path.join(WD, "go"), "w").close()
        got = await pilot.wait4(["h", "more"], timeout=30)
    report = [json.loads(line) for line in open([os.path.join(WD, d, "jobs.report")
              for d in os.listdir(WD) if d.startswith(".qcgpjm-service-")][0])]
    # The SIGKILLed agent's tasks go with it (its keeper kills them): none may be left.
    lpids = [int(open(os.path.join(WD, f"lpid.{i}")).read()) for i in range(4, 8)]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30 and any(alive(p) for p in lpids):
        await anyio.sleep(0.05)
    orphans = []
    for pid in lpids:  # only where the agent failed to
        try:
            os.kill(pid, signal.SIGKILL)
            orphans.append(pid)
        except ProcessLookupError:
            pass
    emit(lose=lose, states={k: v.value for k, v in got.items()}, report=report, orphans=orphans,
         more=sorted({open(os.path.join(WD, f"m.{i}")).read().strip() for i in range(4)}),
         left=steps())
"""


def test_an_agent_killed_fails_its_tasks_and_the_rest_run_on_the_other_node(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = drive(slurm_cluster, tmp_path, LOST)
    assert out["states"] == {"h": "FAILED", "more": "SUCCEED"}
    lose = out["lose"]
    assert lose not in out["more"] and len(out["more"]) == 1
    text = json.dumps(out["report"])
    assert f"node {lose} lost" in text
    assert out["orphans"] == []  # its tasks went with the agent (its keeper killed them)
    assert out["left"] == []


PIN = r"""
SHOW = ('echo $SLURMD_NODENAME $QCG_PM_CPU_SET'
        ' $(grep Cpus_allowed_list: /proc/self/status | cut -f2) > pin.${it}')

async def main():
    async with Pilot(resources="slurm", wd=WD) as pilot:
        await pilot.submit(Jobs().add(name="p", script=SHOW, iteration=8))
        got = await pilot.wait4("p", timeout=30)
    emit(state=got["p"].value, rows=[open(os.path.join(WD, f"pin.{i}")).read().split()
                                     for i in range(8)])
"""


def test_tasks_are_pinned_to_the_cpus_of_their_cores(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("2 CPUs per node need a host with 2 CPUs (every virtual node is this host)")
    out = drive(slurm_cluster, tmp_path, PIN, tasks=4)  # 2 nodes x 2 CPUs
    assert out["state"] == "SUCCEED"
    cpus = sorted(os.sched_getaffinity(0))[:2]
    assert len({r[0] for r in out["rows"]}) == 2  # both nodes
    for _node, cpu_set, allowed in out["rows"]:
        assert cpu_set == allowed and int(cpu_set) in cpus  # one core: its CPU, pinned
