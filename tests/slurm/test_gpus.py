"""GPU jobs on the test cluster's fake GPUs (GRES: 2 per node), as srun steps and
through the launch agents.

The cluster script declares ``Gres=gpu:2`` on every node with links to harmless
character devices as device files; the allocation asks ``--gres=gpu:2``. The
pilot discovers them from Slurm (``scontrol show job -d``). As steps, each asks
``--gres=gpu:N`` (or ``none``) and Slurm sets its devices per node; through an
agent, a one-node job's environment names the ids the engine gave it. Skipped
where the cluster has no GPUs (``QCGPJ_SLURM_GPUS=0``, or an older cluster script).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SlurmCluster

pytestmark = pytest.mark.slurm

DRIVER = r"""
import json, os, sys
import anyio
from qcgpj_async import Jobs, JobState, Pilot
from qcgpj_async.executors import SrunExecutor

WD, MODE = sys.argv[1], sys.argv[2]
SEE = ('s=$(date +%s.%N); sleep 1; e=$(date +%s.%N); '
       'echo "$SLURMD_NODENAME c=${CUDA_VISIBLE_DEVICES-unset} q=${QCG_PM_GPUS-unset} $s $e '
       'step=${SLURM_STEP_ID-none}"')


async def main():
    scratch = os.path.join(WD, "scratch")
    os.makedirs(scratch, exist_ok=True)
    ex = SrunExecutor(scratch) if MODE == "steps" else None  # None: the launch agents
    async with Pilot(resources="slurm", wd=WD, executor=ex) as pilot:
        res = (await pilot.resources()).to_dict()
        jobs = Jobs()
        jobs.add(name="one", iteration=8, script=SEE, gpus=1, stdout="one.${it}")
        jobs.add(name="cpu", script=SEE, stdout="cpu.out")
        jobs.add(name="mn", script=SEE, gpus=2, numNodes=2, numCores=1, model="srunmpi",
                 stdout="mn.out")
        jobs.add(name="big", exec="/bin/true", gpus=3)
        names = await pilot.submit(jobs)
        states = await pilot.wait4(names, timeout=120)
        info = (await pilot.info("big"))["big"]
    if ex is not None:
        await ex.aclose()
    def rows(name):
        return [line.split() for line in open(os.path.join(WD, name)).read().splitlines()]
    print(json.dumps(dict(
        res=res,
        states={k: v.value for k, v in states.items()},
        one=[rows(f"one.{i}")[0] for i in range(8)],
        cpu=rows("cpu.out"),
        mn=rows("mn.out"),
        big=list(info.messages),
    )), flush=True)

anyio.run(main)
"""


def cluster_gpus() -> int:
    """GPUs per node the cluster declares (0 where none)."""
    done = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%G"], capture_output=True, text=True, check=False, timeout=30
    )
    counts = [int(g.rsplit(":", 1)[1]) for g in done.stdout.split() if g.startswith("gpu:")]
    return min(counts) if counts else 0


@pytest.mark.parametrize("mode", ["steps", "agents"])
def test_gpu_jobs_see_their_devices_per_node(
    slurm_cluster: SlurmCluster, tmp_path: Path, mode: str
) -> None:
    if cluster_gpus() < 2:
        pytest.skip("the test cluster declares no GPUs (QCGPJ_SLURM_GPUS=0 or an older script)")
    done = slurm_cluster.run_in_allocation(
        [sys.executable, "-c", DRIVER, str(tmp_path), mode],
        nodes=2,
        tasks=8,
        timeout=150,
        salloc_args=["--gres=gpu:2"],
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result; stdout: {done.stdout}\nstderr: {done.stderr}"
    out: dict[str, Any] = json.loads(lines[-1])
    assert out["res"]["total_gpus"] == 4 and out["res"]["free_gpus"] == 4
    assert out["states"] == {"one": "SUCCEED", "cpu": "SUCCEED", "mn": "SUCCEED", "big": "FAILED"}
    assert out["big"] == [
        "Not enough resources for job big: needs 1 core with 3 GPUs per node; "
        "the pilot has 2 nodes x 4 cores, at most 2 GPUs per node"
    ]
    runs = []
    for node, c, q, start, end, step in out["one"]:
        cuda, qcg = c.removeprefix("c="), q.removeprefix("q=")
        assert cuda in ("0", "1"), cuda  # exactly one device (Slurm's, or the agent's)
        assert qcg == cuda  # the pilot's id is the one the job sees
        # as a step of its own, or started by its node's agent (no step)
        assert (step == "step=none") == (mode == "agents"), step
        runs.append((node, cuda, float(start), float(end)))
    for (n1, d1, s1, e1), (n2, d2, s2, e2) in itertools.combinations(runs, 2):
        if n1 == n2 and s1 < e2 and s2 < e1:
            assert d1 != d2, f"{n1}: device {d1} shared by two running jobs"
    assert {(r[0], r[1]) for r in runs} == {(n, d) for n in ("n1", "n2") for d in ("0", "1")}
    ((_, c, q, _, _, _),) = out["cpu"]
    assert (c, q) == ("c=", "q=")  # a CPU job sees no GPU
    mn = sorted(out["mn"])
    assert [tuple(r[:3]) for r in mn] == [("n1", "c=0,1", "q=0,1"), ("n2", "c=0,1", "q=0,1")]
