"""Allocation discovery inside real Slurm allocations (needs ``.ci/slurm-cluster.sh up``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from qcgpj_async.executors._slurm_env import SlurmEnvironmentError, expand_hostlist

if TYPE_CHECKING:
    # Only for annotations: at run time "conftest" may name another directory's.
    from conftest import SlurmCluster

pytestmark = pytest.mark.slurm

# Prints, as one JSON line, what discovery finds and what Slurm itself says.
PROBE = """
import json, os, subprocess
from qcgpj_async.executors._slurm_env import discover, in_allocation
nodelist = os.environ["SLURM_JOB_NODELIST"]
hostnames = subprocess.run(
    ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
).stdout.split()
print(json.dumps({
    "discover": discover(os.environ),
    "in_allocation": in_allocation(os.environ),
    "hostnames": hostnames,
    "cpus_per_node": os.environ["SLURM_JOB_CPUS_PER_NODE"],
    "nodename": os.environ.get("SLURMD_NODENAME"),
}))
"""


def probe_result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON line PROBE printed (the last line of stdout)."""
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_discover_matches_scontrol(slurm_cluster: SlurmCluster) -> None:
    found = probe_result(slurm_cluster.run_python(PROBE, nodes=2, tasks=8))
    assert found["in_allocation"] is True
    assert found["cpus_per_node"] == "4(x2)"
    assert len(found["hostnames"]) == 2
    assert set(found["hostnames"]) <= set(slurm_cluster.nodes)
    assert found["discover"] == [[host, 4] for host in found["hostnames"]]


def test_discover_uneven_allocation(slurm_cluster: SlurmCluster) -> None:
    # 6 CPUs on two 4-CPU nodes: Slurm packs them as 4 + 2.
    found = probe_result(slurm_cluster.run_python(PROBE, nodes=2, tasks=6))
    assert [node for node, _ in found["discover"]] == found["hostnames"]
    assert sorted(cpus for _, cpus in found["discover"]) == [2, 4]
    assert found["cpus_per_node"] in ("4,2", "2,4")


def test_discover_inside_a_step_sees_the_whole_allocation(slurm_cluster: SlurmCluster) -> None:
    # A pilot may itself run as a step on one node: the job-level variables
    # still describe every node of the allocation.
    script = (
        'last=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | tail -n 1)\n'
        'exec srun --exact -N1 -n1 -c1 -w "$last" "$0" -c "$1"\n'
    )
    done = slurm_cluster.run_in_allocation(["bash", "-c", script, sys.executable, PROBE])
    found = probe_result(done)
    assert found["nodename"] == found["hostnames"][-1]
    assert found["discover"] == [[host, 4] for host in found["hostnames"]]


def test_exact_steps_run_concurrently_on_both_nodes(slurm_cluster: SlurmCluster) -> None:
    # Eight 1-CPU steps, four per node, meet at a rendezvous: each waits
    # (bounded) until all eight have started. If steps serialized, as they do
    # without --exact, the first ones would give up.
    script = r"""
d=$(mktemp -d)
pids=()
for node in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do
  for i in 1 2 3 4; do
    srun --exact -N1 -n1 -c1 -w "$node" bash -c '
      touch "$0/$SLURMD_NODENAME.$SLURM_STEP_ID"
      for _ in $(seq 200); do
        if [ "$(ls "$0" | wc -l)" -ge 8 ]; then echo "met $SLURMD_NODENAME"; exit 0; fi
        sleep 0.05
      done
      echo "alone $SLURMD_NODENAME"; exit 1' "$d" &
    pids+=($!)
  done
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
rm -rf "$d"
exit $rc
"""
    done = slurm_cluster.run_in_allocation(["bash", "-c", script], timeout=60)
    met = sorted(done.stdout.split("\n"))
    met = [line for line in met if line]
    assert len(met) == 8, done.stdout + done.stderr
    assert all(line.startswith("met ") for line in met), done.stdout
    # SLURMD_NODENAME tells the virtual nodes apart (hostname does not).
    per_node = {line.split()[1] for line in met}
    assert len(per_node) == 2
    assert [line.split()[1] for line in met].count(min(per_node)) == 4


def load_recorded_tables() -> ModuleType:
    """The unit tests' module holding the recorded ``scontrol`` outputs."""
    path = Path(__file__).resolve().parents[1] / "executors" / "test_slurm_env.py"
    spec = importlib.util.spec_from_file_location("_recorded_slurm_outputs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scontrol_hostnames(nodelist: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["scontrol", "show", "hostnames", nodelist],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_recorded_scontrol_outputs_match_live(slurm_cluster: SlurmCluster) -> None:
    # Keeps the unit tests' fake scontrol honest against this Slurm version.
    tables = load_recorded_tables()
    mismatches = []
    for nodelist, out, err, expected in tables.EXPANDED:
        live = scontrol_hostnames(nodelist)
        if (live.returncode, live.stdout, live.stderr) != (0, out, err):
            mismatches.append((nodelist, live.returncode, live.stdout, live.stderr))
        assert expand_hostlist(nodelist) == expected
    for nodelist, out, err in tables.REJECTED:
        live = scontrol_hostnames(nodelist)
        if (live.returncode, live.stdout, live.stderr) != (0, out, err):
            mismatches.append((nodelist, live.returncode, live.stdout, live.stderr))
        with pytest.raises(SlurmEnvironmentError):
            expand_hostlist(nodelist)
    assert mismatches == []
