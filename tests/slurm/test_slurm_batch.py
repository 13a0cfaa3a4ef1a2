"""Batch mode inside a real batch job: ``sbatch`` a script that runs ``python -m qcgpj_async``.

Needs ``.ci/slurm-cluster.sh up``. The batch script runs on the first node of
a 2 x 4-CPU allocation (this host, as every virtual node is), records the
allocation as Slurm states it, then execs the service on a request file;
the service discovers the allocation and runs each one-node job through the
launch agent of its node, the others as steps.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SlurmCluster

pytestmark = pytest.mark.slurm

ITERATIONS = 16

REQUESTS: list[dict[str, Any]] = [
    {
        "request": "submit",
        "jobs": [
            {
                "name": "one",
                "iteration": {"stop": ITERATIONS},
                "execution": {
                    "script": "echo $SLURMD_NODENAME ${SLURM_STEP_ID:-none} $QCG_PM_NODELIST "
                    "$SLURM_JOB_NODELIST $SLURM_NTASKS",
                    "stdout": "one.${it}",
                },
                "resources": {"numCores": {"exact": 1}},
            },
            {
                "name": "mpi",
                "execution": {
                    "script": "echo $SLURM_PROCID $SLURMD_NODENAME $SLURM_NTASKS",
                    "model": "srunmpi",
                    "stdout": "mpi.out",
                },
                "resources": {"numNodes": {"exact": 2}, "numCores": {"exact": 2}},
            },
            {
                "name": "omp",
                "execution": {
                    "script": "echo $SLURM_CPUS_PER_TASK $OMP_NUM_THREADS $SLURMD_NODENAME",
                    "model": "threads",
                    "stdout": "omp.out",
                },
                # numNodes: a numCores-only job may be placed across nodes, and a
                # threads step gets only the cores of its first node.
                "resources": {"numNodes": {"exact": 1}, "numCores": {"exact": 4}},
            },
        ],
    },
    {"request": "control", "command": "finishAfterAllTasksDone"},
]

SCRIPT = """#!/bin/bash
scontrol show hostnames "$SLURM_JOB_NODELIST" > alloc.hosts
echo "$SLURM_JOB_CPUS_PER_NODE" > alloc.cpus
exec {python} -m qcgpj_async --file-path reqs.json --wd run
"""

SUMMARY = re.compile(r"^qcgpj-async: (\d+) jobs: (\d+) succeeded; report: (\S+)$")


def cpus_total(spec: str) -> int:
    """The CPUs of Slurm's per-node list: ``4(x2),2`` is 10."""
    total = 0
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part)
        assert m, spec
        total += int(m[1]) * int(m[2] or 1)
    return total


def allocation_nodes(allocation: str) -> set[str]:
    """Node names of a report's allocation, e.g. ``n1[0:3],n2[1]``."""
    return set(re.findall(r"([^,\[\]]+)\[", allocation))


def test_batch_mode_inside_sbatch_spreads_jobs_over_the_allocation(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    (tmp_path / "reqs.json").write_text(json.dumps(REQUESTS))
    job = slurm_cluster.run_batch(SCRIPT.format(python=sys.executable), tmp_path, timeout=90)
    context = f"job {job.job_id}\n--- stdout\n{job.stdout}\n--- stderr\n{job.stderr}"
    assert job.returncode == 0, context

    # The summary line, last on stderr, and the report it names.
    summary = SUMMARY.match(job.stderr.strip().splitlines()[-1])
    assert summary, context
    assert summary[1] == summary[2] == "3", context
    report = tmp_path / summary[3]
    assert report.name == "jobs.report" and report.parent.parent == tmp_path / "run"
    entries = [json.loads(line) for line in report.read_text().splitlines()]
    names = [e["name"] for e in entries]
    assert sorted(names) == sorted(["one", "mpi", "omp", *(f"one:{i}" for i in range(ITERATIONS))])
    assert {e["state"] for e in entries} == {"SUCCEED"}, entries

    # Discovery: what the service found is the allocation Slurm gave.
    hosts = (tmp_path / "alloc.hosts").read_text().split()
    cpus = (tmp_path / "alloc.cpus").read_text().strip()
    assert len(hosts) == 2 and set(hosts) <= set(slurm_cluster.nodes)
    assert cpus == "4(x2)"
    final = json.loads((report.parent / "final_status.json").read_text())
    assert final["Resources"]["TotalNodes"] == len(hosts)
    assert final["Resources"]["TotalCores"] == cpus_total(cpus)
    used = set().union(
        *(
            allocation_nodes(e["runtime"]["allocation"])
            for e in entries
            if ":" in e["name"] or e["name"] != "one"
        )
    )
    assert used == set(hosts), entries

    # The one-core jobs: started by the launch agent of the node the pilot chose
    # (no step of their own), seeing a one-core job there; both nodes used.
    rows = [(tmp_path / "run" / f"one.{i}").read_text().split() for i in range(ITERATIONS)]
    for node, step, qcg_nodes, job_nodes, ntasks in rows:
        assert step == "none"  # not a step of its own, nor the batch script's
        assert node == qcg_nodes == job_nodes and ntasks == "1"
    assert {r[0] for r in rows} == set(hosts)

    # The 2-node srunmpi job: 2 ranks on each node.
    ranks = sorted((tmp_path / "run" / "mpi.out").read_text().splitlines())
    assert [r.split()[0] for r in ranks] == ["0", "1", "2", "3"]
    assert {r.split()[2] for r in ranks} == {"4"}
    per_node = [r.split()[1] for r in ranks]
    assert sorted(per_node.count(h) for h in hosts) == [2, 2]

    # The 4-core threads job: one task with 4 CPUs.
    cpus_per_task, omp, node = (tmp_path / "run" / "omp.out").read_text().split()
    assert (cpus_per_task, omp) == ("4", "4") and node in hosts


# A step per job (the same with the launch agents: the next test). The tasks loop: Slurm
# signals each process of a step on its own, so a shell in ``sleep 60 & wait`` whose
# sleep dies first returns from ``wait`` and may exit 0 before its own SIGTERM, without
# its trap (seen on the test cluster, through agents: 3 tasks of 100).
STOPPED = """#!/bin/bash
exec {python} -m qcgpj_async --file-path reqs.json --wd run --kill-grace 5 {mode}
"""


def long_jobs(trap: str) -> list[dict[str, object]]:
    """Four 2-core iterations that loop until SIGTERM, which runs ``trap``."""
    script = f"trap '{trap}' TERM; touch ready.${{it}}; while :; do sleep 0.1; done"
    return [
        {
            "request": "submit",
            "jobs": [
                {
                    "name": "long",
                    "iteration": {"stop": 4},
                    "execution": {"script": script},
                    "resources": {"numCores": {"exact": 2}},
                }
            ],
        }
    ]


def scancel_batch(
    cluster: SlurmCluster, tmp_path: Path, requests: list[dict[str, object]], mode: str
) -> tuple[Path, dict[str, Any]]:
    """Run ``requests`` in a batch job, scancel it once every task is ready; the run
    directory and the jobs.report entries, after the checks every such run passes."""
    (tmp_path / "reqs.json").write_text(json.dumps(requests))
    run = tmp_path / "run"
    script = STOPPED.format(python=sys.executable, mode=mode)
    with cluster.batch_job(script, tmp_path) as job_id:
        deadline = time.monotonic() + 60
        while not all((run / f"ready.{i}").exists() for i in range(4)):
            assert time.monotonic() < deadline, f"job {job_id}: the tasks never started"
            time.sleep(0.05)  # files the tasks write
        subprocess.run(["scancel", job_id], check=True, timeout=30, stdin=subprocess.DEVNULL)
        end = cluster.job_end(job_id)
    err = (tmp_path / "batch.err").read_text()
    assert (end["JobState"], end["ExitCode"]) == ("CANCELLED", "143:0"), (end, err)
    assert "qcgpj-async: terminated: every job was stopped" in err
    (report,) = run.glob(".qcgpjm-service-*/jobs.report")
    entries = {e["name"]: e for e in map(json.loads, report.read_text().splitlines())}
    assert sorted(entries) == ["long", *(f"long:{i}" for i in range(4))]
    return run, entries


def test_scancel_of_the_batch_job_stops_every_job_and_writes_the_reports(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    run, entries = scancel_batch(
        slurm_cluster, tmp_path, long_jobs("echo TERM > term.${it}; exit 0"), "--no-agents"
    )
    # Every job's task got SIGTERM and cleaned up before the service ended.
    assert sorted(p.name for p in run.glob("term.*")) == [f"term.{i}" for i in range(4)]
    # Slurm signals the steps itself too, at the same moment as the service:
    # a task whose trap ran and exited 0 before the service stopped it
    # succeeded. Either way each one is in the report, ended by its trap.
    assert {entries[f"long:{i}"]["state"] for i in range(4)} <= {"CANCELED", "SUCCEED"}, entries
    assert {entries[f"long:{i}"]["runtime"]["exit_code"] for i in range(4)} == {"0"}, entries


def test_scancel_with_agents_lets_every_trap_run_to_its_end(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    # Through the launch agents, a trap that takes a second.
    trap = "echo TERM > term.${it}; sleep 1; echo done >> term.${it}; exit 0"
    run, entries = scancel_batch(slurm_cluster, tmp_path, long_jobs(trap), "")
    # srun, SIGTERMed in the batch step, does not end the agents' step before the tasks
    # end (22.05): every trap ran to its end, within --kill-grace and KillWait.
    terms = {p.name: p.read_text().split() for p in run.glob("term.*")}
    assert terms == {f"term.{i}": ["TERM", "done"] for i in range(4)}, terms
    assert {entries[f"long:{i}"]["state"] for i in range(4)} <= {"CANCELED", "SUCCEED"}, entries
    assert {entries[f"long:{i}"]["runtime"]["exit_code"] for i in range(4)} == {"0"}, entries
