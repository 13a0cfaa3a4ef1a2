"""Launch agents started by ONE srun step on every node of a real allocation.

The driver scripts run under ``salloc`` (2 nodes x 4 CPUs): they open an
:class:`AgentGate`, start the agents with one ``srun`` step (one task per
node, ``--overlap``: the step must not hold CPUs the tasks' own steps need),
and print one JSON line for the test to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SlurmCluster

pytestmark = pytest.mark.slurm

PRELUDE = r"""
import json, os, select, signal, socket, subprocess, sys, time
import anyio
from qcgpj_async.executors import _agent
from qcgpj_async.executors._agent_wire import AgentGate, new_secret
from qcgpj_async.executors._forkserver import Reader, pack

WD = sys.argv[1]
JOB = os.environ["SLURM_JOB_ID"]
NODES = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                       capture_output=True, text=True, check=True).stdout.split()


def steps(prefix):
    out = subprocess.run(["squeue", "-h", "-s", "-j", JOB, "-o", "%i %j"],
                         capture_output=True, text=True, check=True).stdout
    return [r for r in (line.split() for line in out.splitlines())
            if len(r) == 2 and r[1].startswith(prefix)]


def start_agents(gate, secret):
    env = dict(os.environ, **{_agent.SECRET_VAR: secret.hex()})
    return subprocess.Popen(
        ["srun", f"--nodes={len(NODES)}", f"--ntasks={len(NODES)}", "--ntasks-per-node=1",
         "--overlap", "--mem=0", "--cpu-bind=none", "--job-name=qcgpj-agents",
         sys.executable, "-I", "-S", _agent.__file__, socket.gethostname(), str(gate.port)],
        env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def events(sock, until):
    sock.setblocking(False)
    reader, got = Reader(sock.fileno()), []
    while len(got) < until:
        assert select.select([sock], [], [], 20)[0], got
        msgs = reader.read()
        assert msgs is not None, got
        got += msgs
    return got


def start(sock, rid, argv):
    sock.sendall(pack(("env", {"PATH": os.environ["PATH"]}))
                 + pack(("start", rid, f"j:{rid}", argv, {}, [], WD, None, None, None)))


def emit(**kw):
    print(json.dumps(kw), flush=True)
"""

JOIN = r"""
async def main():
    t0 = time.monotonic()
    secret = new_secret()
    gate = AgentGate(secret)
    srun = start_agents(gate, secret)
    got = await gate.gather(NODES, timeout=20)
    startup = time.monotonic() - t0
    ran = {}
    for rid, (node, agent) in enumerate(sorted(got.joined.items()), 1):
        start(agent.sock, rid, ["/bin/sh", "-c", f"echo {node} > {WD}/ran.{node}"])
        ran[node] = [e[0] for e in events(agent.sock, 2)]
    # A task's own step runs beside the agents' step (it holds no CPU).
    step = subprocess.run(["srun", "-N1", "-n1", "--exact", "--job-name=qcgpj-task", "true"],
                          capture_output=True, text=True, timeout=20)
    for agent in got.joined.values():
        agent.sock.close()
    rc = srun.wait(20)
    emit(nodes=NODES, joined=sorted(got.joined), missing=got.missing, startup=startup,
         cpus={n: list(a.cpus) for n, a in got.joined.items()}, ran=ran,
         files=sorted(os.listdir(WD)), step_rc=step.returncode, srun_rc=rc,
         left=steps("qcgpj-agents"))

anyio.run(main)
"""


def drive(cluster: SlurmCluster, tmp_path: Path, body: str, timeout: float = 60) -> dict[str, Any]:
    script = tmp_path / "driver.py"
    script.write_text(PRELUDE + body)
    wd = tmp_path / "wd"
    wd.mkdir()
    done = cluster.run_in_allocation(
        [sys.executable, str(script), str(wd)], nodes=2, tasks=4, timeout=timeout
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def test_one_step_starts_an_agent_on_every_node(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = drive(slurm_cluster, tmp_path, JOIN)
    assert out["joined"] == sorted(out["nodes"]) and len(out["nodes"]) == 2
    assert out["missing"] == {}
    assert out["startup"] < 10  # generous: a loaded CI machine; docs/slurm.md has the figure
    assert all(out["cpus"][n] for n in out["nodes"])  # each agent's affinity, non-empty
    assert out["ran"] == {n: ["started", "exited"] for n in out["nodes"]}
    assert out["files"] == sorted(f"ran.{n}" for n in out["nodes"])
    assert out["step_rc"] == 0  # the agents' step did not block the task's step
    assert out["srun_rc"] == 0  # connections closed: every agent exited, the step ended
    assert out["left"] == []


KILLED = r"""
# The pilot (this script again, as a child) starts agents and a long job on each node,
# tells us the jobs' pids, and is SIGKILLed: every agent must kill its job and exit.
async def pilot():
    secret = new_secret()
    gate = AgentGate(secret)
    start_agents(gate, secret)
    got = await gate.gather(NODES, timeout=20)
    pids = {}
    for rid, (node, agent) in enumerate(sorted(got.joined.items()), 1):
        start(agent.sock, rid, ["/bin/sleep", "300"])
        pids[node] = events(agent.sock, 1)[0][2]
    emit(pids=pids)
    await anyio.sleep(300)


def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


if sys.argv[2:] == ["pilot"]:
    anyio.run(pilot)
    sys.exit()
child = subprocess.Popen([sys.executable, __file__, WD, "pilot"], stdout=subprocess.PIPE,
                         text=True)
pids = json.loads(child.stdout.readline())["pids"]
before = {n: alive(p) for n, p in pids.items()}
os.kill(child.pid, signal.SIGKILL)
child.wait()
t0 = time.monotonic()
while time.monotonic() - t0 < 20 and (any(alive(p) for p in pids.values())
                                       or steps("qcgpj-agents")):
    time.sleep(0.05)
emit(before=before, after={n: alive(p) for n, p in pids.items()},
     left=steps("qcgpj-agents"), took=time.monotonic() - t0)
"""


def test_the_pilot_killed_leaves_no_task_on_any_node(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = drive(slurm_cluster, tmp_path, KILLED)
    assert len(out["before"]) == 2 and all(out["before"].values())
    assert not any(out["after"].values()), out
    assert out["left"] == []


AGENT_KILLED = r"""
# A long task on each node; the agent of the second node is SIGKILLed (the serving
# process the pilot knows by its hello's pid): its task must go with it, the other
# node's task runs on.
def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def pid_in(path):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().endswith("\n"):
            return int(open(path).read())
        time.sleep(0.02)  # a file the task writes
    raise AssertionError(f"{path} not written")


async def main():
    secret = new_secret()
    gate = AgentGate(secret)
    srun = start_agents(gate, secret)
    got = await gate.gather(NODES, timeout=20)
    for rid, (node, agent) in enumerate(sorted(got.joined.items()), 1):
        start(agent.sock, rid, ["/bin/sh", "-c", f"echo $$ > {WD}/pid.{node}; exec sleep 600"])
        events(agent.sock, 1)
    pids = {n: pid_in(f"{WD}/pid.{n}") for n in sorted(got.joined)}
    keep, lose = sorted(got.joined)
    before = {n: alive(p) for n, p in pids.items()}
    os.kill(got.joined[lose].pid, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30 and alive(pids[lose]):
        time.sleep(0.05)
    after = {n: alive(p) for n, p in pids.items()}
    for agent in got.joined.values():
        agent.sock.close()
    rc = srun.wait(20)
    left = []
    for pid in pids.values():  # only where an agent failed to
        try:
            os.kill(pid, signal.SIGKILL)
            left.append(pid)
        except ProcessLookupError:
            pass
    emit(before=before, after=after, keep=keep, lose=lose, srun_rc=rc, left=left,
         steps=steps("qcgpj-agents"))

anyio.run(main)
"""


def test_an_agent_sigkilled_leaves_no_task_on_its_node(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = drive(slurm_cluster, tmp_path, AGENT_KILLED)
    keep, lose = out["keep"], out["lose"]
    assert out["before"] == {keep: True, lose: True}
    assert out["after"] == {keep: True, lose: False}  # its task went with it, not the other
    assert out["left"] == []  # the connection closed: the other agent killed its task
    assert out["srun_rc"] == 1  # the agent on `lose` said it lost its serving process
    assert out["steps"] == []
