"""Every example in examples/ runs as its README says, and does what it says.

Request files run through ``python -m qcgpj_async --file-path ... --wd <tmp>``,
the controller as a script with a tmp working directory; each outcome is
checked (exit code, the files the jobs write, the order the DAG ran in, the
cores the sweep's iterations got).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qcgpj_async.model import jobs_from_std

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
README = (EXAMPLES / "README.md").read_text()
TIMEOUT = 60


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_batch(example: str, wd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a request file from the repository root, as examples/README.md does."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "qcgpj_async",
            "--file-path",
            f"examples/{example}",
            "--wd",
            str(wd),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def two_cores() -> tuple[str, ...]:
    """Examples written for a 2-core laptop: declare 2 cores on a smaller host."""
    return () if host_cores() >= 2 else ("--nodes", "2")


def succeeded(proc: subprocess.CompletedProcess[str], jobs: int) -> None:
    assert proc.returncode == 0, proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    assert re.match(rf"qcgpj-async: {jobs} jobs?: {jobs} succeeded; report: ", summary), summary
    assert "Traceback" not in proc.stderr


def service_dir(wd: Path) -> Path:
    (d,) = wd.glob(".qcgpjm-service-*")
    return d


def report(wd: Path) -> dict[str, dict[str, Any]]:
    """jobs.report (JSON lines) by job or iteration name."""
    lines = (service_dir(wd) / "jobs.report").read_text().splitlines()
    return {e["name"]: e for e in map(json.loads, lines)}


def when(entry: dict[str, Any], state: str) -> dt.datetime:
    """When a report entry reached ``state``."""
    (date,) = [h["date"] for h in entry["history"] if h["state"] == state]
    return dt.datetime.fromisoformat(date)


def cores_of(allocation: str) -> int:
    """The number of cores of an allocation such as ``n0[0:1],n1[3]``."""
    return sum(len(part.split(":")) for part in re.findall(r"\[([\d:]+)\]", allocation))


# -- the README lists every example with the command the tests run --------------------


BATCH_COMMANDS = {
    "batch/seed-example.json": "--wd run/seed",
    "batch/file-interface.json": "--wd run/requests",
    "batch/mpi-example.json": "--wd run/mpi --nodes n1:4,n2:4",
    "openmp.json": "--wd run/openmp",
    "sweep-maximum-iters.json": "--wd run/sweep --nodes 8",
    "dag.json": "--wd run/dag",
}


def test_readme_lists_every_example_with_its_command() -> None:
    files = {
        p.relative_to(EXAMPLES).as_posix()
        for p in EXAMPLES.rglob("*")
        if p.suffix in (".json", ".py")
    }
    assert files == {*BATCH_COMMANDS, "controller.py"}
    for name, args in BATCH_COMMANDS.items():
        command = f".venv/bin/python -m qcgpj_async --file-path examples/{name} {args}"
        assert command in README, command
    assert ".venv/bin/python examples/controller.py run/controller" in README


# -- every request file is valid ----------------------------------------------------------


REQUEST_FILES = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.json"))
KNOWN_REQUESTS = {
    "submit",
    "jobStatus",
    "jobInfo",
    "cancelJob",
    "removeJob",
    "listJobs",
    "resourcesInfo",
    "status",
    "control",
    "finish",
}


@pytest.mark.parametrize("name", REQUEST_FILES)
def test_request_file_parses_and_its_jobs_validate(name: str) -> None:
    requests = json.loads((EXAMPLES / name).read_text())
    assert isinstance(requests, list) and requests
    submitted = 0
    for request in requests:
        assert isinstance(request, dict) and request.get("request") in KNOWN_REQUESTS, request
        if request["request"] == "submit":
            specs = jobs_from_std(request["jobs"])  # raises on any invalid job
            assert [s.name for s in specs] == [j["name"] for j in request["jobs"]]
            submitted += len(specs)
    assert submitted
    # like the seeds, every file ends by telling the service to finish
    assert requests[-1] == {"request": "control", "command": "finishAfterAllTasksDone"}


# -- each example's outcome ------------------------------------------------------------------


def test_seed_example(tmp_path: Path) -> None:
    proc = run_batch("batch/seed-example.json", tmp_path)
    succeeded(proc, 1)
    outputs = sorted(p.name for p in tmp_path.glob("job.out.*"))
    assert outputs == ["job.out.0", "job.out.1", "job.out.2", "job.out.3"]
    for i in range(4):
        text = (tmp_path / f"job.out.{i}").read_text()
        assert re.fullmatch(rf"job {i} executed at .+ @ \S+\n", text), text
    svc = service_dir(tmp_path)
    assert {"service.log", "jobs.report", "final_status.json"} <= {p.name for p in svc.iterdir()}
    entries = report(tmp_path)
    assert set(entries) == {"example", "example:0", "example:1", "example:2", "example:3"}
    assert all(e["state"] == "SUCCEED" for e in entries.values())
    assert entries["example"]["iterations"] == {
        "start": 0,
        "stop": 4,
        "total": 4,
        "finished": 4,
        "failed": 0,
    }


def test_file_interface_example(tmp_path: Path) -> None:
    proc = run_batch("batch/file-interface.json", tmp_path, *two_cores())
    succeeded(proc, 2)
    sandbox = tmp_path / "sleep.sandbox"
    assert sorted(p.name for p in sandbox.iterdir()) == ["sleep2.2.1.stderr", "sleep2.2.1.stdout"]
    assert (tmp_path / "echo.stdout").read_text() == "hello from echo, request 1\n"
    log = (service_dir(tmp_path) / "service.log").read_text()
    replies = dict(re.findall(r"request #\d+ \((\w+)\): (\{.*\})$", log, re.M))
    assert list(replies) == [
        "submit",
        "listJobs",
        "jobStatus",
        "jobInfo",
        "resourcesInfo",
        "control",
    ]
    data = {name: json.loads(text) for name, text in replies.items()}
    assert all(r["code"] == 0 for r in data.values())
    assert data["submit"]["data"] == {"submitted": 2, "jobs": ["msleep2", "echo"]}
    listed = data["listJobs"]["data"]["jobs"]
    assert set(listed) == {"msleep2", "echo"}
    assert data["jobStatus"]["data"]["jobs"]["msleep2"]["data"]["jobName"] == "msleep2"
    assert set(data["jobInfo"]["data"]["jobs"]) == {"msleep2", "echo"}
    resources = data["resourcesInfo"]["data"]
    assert resources["used_cores"] == 2  # msleep2's exactly 2 cores were taken at once
    assert data["control"]["message"] == "finishAfterAllTasksDone command accepted"
    info = report(tmp_path)["msleep2"]
    assert cores_of(info["runtime"]["allocation"]) == 2


def test_mpi_example(tmp_path: Path) -> None:
    proc = run_batch("batch/mpi-example.json", tmp_path, "--nodes", "n1:4,n2:4")
    succeeded(proc, 2)
    out = (tmp_path / "pw.benzene.scf.out").read_text()
    assert out == (
        "mpirun would start 8 ranks of pw.x on n1,n2 (4,4 per node)\n"
        'input:\n&control\n  calculation = "scf"\n/\n'
    )
    assert report(tmp_path)["qe-example"]["runtime"]["allocation"] == "n1[0:1:2:3],n2[0:1:2:3]"


def test_openmp_example(tmp_path: Path) -> None:
    proc = run_batch("openmp.json", tmp_path, *two_cores())
    succeeded(proc, 1)
    lines = (tmp_path / "omp.out").read_text().splitlines()
    assert lines[-1] == "Number of threads = 2"
    assert sorted(lines[:-1]) == ["Hello World from thread = 0", "Hello World from thread = 1"]
    assert cores_of(report(tmp_path)["openmp-example"]["runtime"]["allocation"]) == 2


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        # 10 iterations on 8 cores: 2 rounds of 5 sharing the 8 cores as 1, 1, 2, 2, 2
        ("8", [1, 1, 2, 2, 2, 1, 1, 2, 2, 2]),
        # on 4 cores: 3 rounds of 4, 3 and 3 iterations
        ("4", [1, 1, 1, 1, 1, 1, 2, 1, 1, 2]),
        # on 12 cores: one round, every iteration at once
        ("12", [1, 1, 1, 1, 1, 1, 1, 1, 2, 2]),
    ],
)
def test_sweep_maximum_iters(tmp_path: Path, nodes: str, expected: list[int]) -> None:
    proc = run_batch("sweep-maximum-iters.json", tmp_path, "--nodes", nodes)
    succeeded(proc, 1)
    got = []
    for i in range(10):
        text = (tmp_path / f"sweep.out.{i}").read_text()
        m = re.fullmatch(rf"iteration {i}: (\d+) cores on n0\n", text)
        assert m, text
        got.append(int(m.group(1)))
    assert got == expected
    # each round's iterations share all the cores: the counts add up to the total
    total = int(nodes)
    rounds = -(-10 // total)
    assert sum(got) == rounds * total
    entries = report(tmp_path)
    assert [cores_of(entries[f"sweep:{i}"]["runtime"]["allocation"]) for i in range(10)] == got


def test_sweep_on_this_host(tmp_path: Path) -> None:
    """Without --nodes: this host's cores, shared the same way."""
    proc = run_batch("sweep-maximum-iters.json", tmp_path)
    succeeded(proc, 1)
    total = host_cores()
    got = [int((tmp_path / f"sweep.out.{i}").read_text().split()[2]) for i in range(10)]
    assert sum(got) == -(-10 // min(total, 10)) * total


def test_dag_example(tmp_path: Path) -> None:
    proc = run_batch("dag.json", tmp_path)
    succeeded(proc, 4)
    assert (tmp_path / "dag.result").read_text() == "sum of squares: 3000\n"
    for i in range(4):
        assert (tmp_path / "data" / f"input.{i}").read_text() == f"{(i + 1) * 10}\n"
        assert (tmp_path / "data" / f"square.{i}").read_text() == f"{((i + 1) * 10) ** 2}\n"
    e = report(tmp_path)
    assert all(entry["state"] == "SUCCEED" for entry in e.values())
    # a valid order: nothing was scheduled before what it depends on had succeeded
    setup_done = when(e["setup"], "SUCCEED")
    for i in range(4):
        assert when(e[f"prep:{i}"], "SCHEDULED") >= setup_done  # fan-out
        assert when(e[f"compute:{i}"], "SCHEDULED") >= when(e[f"prep:{i}"], "SUCCEED")  # pairs
        assert when(e["reduce"], "SCHEDULED") >= when(e[f"compute:{i}"], "SUCCEED")  # fan-in
    assert when(e["reduce"], "SCHEDULED") >= when(e["compute"], "SUCCEED")


def test_controller_example(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "examples/controller.py", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    m = re.fullmatch(r"best x = (\S+), f = (\S+)\n", (tmp_path / "summary.txt").read_text())
    assert m, (tmp_path / "summary.txt").read_text()
    best_x, best_f = float(m.group(1)), float(m.group(2))
    assert abs(best_x - 1.234) < 0.05 and best_f < 0.01
    assert proc.stdout.strip().splitlines()[-1] == m.group(0).strip()
    history = json.loads((tmp_path / "search.json").read_text())
    assert [h["round"] for h in history] == [0, 1, 2, 3, 4]
    # every round refines around the best point so far: its grid narrows and holds it
    widths = [h["x"][-1] - h["x"][0] for h in history]
    assert all(b < a for a, b in itertools.pairwise(widths))
    for prev, h in itertools.pairwise(history):
        assert h["x"][0] <= prev["best_x"] <= h["x"][-1]
    # the values the controller read are the ones the jobs wrote
    for h in history:
        r = h["round"]
        assert len(list((tmp_path / f"round{r}").glob("f.*"))) == 8
        for i, f in enumerate(h["f"]):
            assert float((tmp_path / f"round{r}" / f"f.{i}").read_text()) == f
    assert "'summary': 'SUCCEED'" in proc.stdout
