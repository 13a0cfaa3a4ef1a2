"""Compatibility fixes found by running the original's documented workflows against ours."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qcgpj_async.compat import Jobs, LocalManager
from qcgpj_async.model import job_from_std, substitute

T = 60


def test_dollar_dollar_variables_are_the_originals_escape() -> None:
    v = {"it": "3", "ncores": "2"}
    assert substitute("out.$${it}", v) == "out.3"
    assert substitute("$${it}-${it}-$${ncores}", v) == "3-3-2"
    assert substitute("kill $$; echo $$ ${HOME} $${HOME}", v) == "kill $$; echo $$ ${HOME} $${HOME}"
    assert substitute("$${other}", v) == "$${other}"


def test_dollar_dollar_in_every_field(tmp_path: Path) -> None:
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "2"])
    try:
        jobs = (
            Jobs()
            .add(name="a", exec="/bin/echo", args=["$${it}"], stdout="a.$${it}", iteration=2)
            .add(name="s", script="echo $${it} $$", stdout="s.$${it}", wd="w$${it}", iteration=2)
            .add(name="d", exec="/bin/true", after="a:$${it}", iteration=2)
        )
        assert m.wait4(m.submit(jobs), timeout=T) == {
            "a": "SUCCEED",
            "s": "SUCCEED",
            "d": "SUCCEED",
        }
    finally:
        m.finish()
    assert (tmp_path / "a.1").read_text() == "1\n"
    it, pid = (tmp_path / "w1" / "s.1").read_text().split()
    assert it == "1" and pid.isdigit()  # a bare $$ is still the shell's pid


def test_script_with_empty_args_and_env_is_valid(tmp_path: Path) -> None:
    std = {"name": "s", "execution": {"script": "echo hi", "args": [], "env": {}, "stdout": "o"}}
    spec = job_from_std(std)
    assert spec.execution.script == "echo hi"
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "1"])
    try:
        assert m.wait4(m.submit(Jobs().add_std(std)), timeout=T) == {"s": "SUCCEED"}
        with pytest.raises(Exception, match="Job script and exec or args or env defined"):
            m.submit(Jobs().add_std({"name": "t", "execution": {"script": "x", "args": ["a"]}}))
    finally:
        m.finish()
    assert (tmp_path / "o").read_text() == "hi\n"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "r.json").write_text(
        '[{"request": "submit", "jobs": [{"name": "a", "execution": {"exec": "/bin/true"}}]}]'
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "qcgpj_async",
            "--file-path",
            "r.json",
            "--nodes",
            "1",
            "--id",
            "c",
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=T,
    )


def test_cli_accepts_the_originals_noop_flags_with_a_note(tmp_path: Path) -> None:
    run = _cli(
        tmp_path,
        "--disable-nl",
        "--tags",
        "a,b",
        "--nl-ready-threshold",
        "0.5",
        "--enable-rt-stats",
    )
    assert run.returncode == 0, run.stderr
    log = (tmp_path / ".qcgpjm-service-c" / "service.log").read_text()
    notes = [ln.split(" INFO ")[1] for ln in log.splitlines() if " accepted: " in ln]
    assert [n.split()[0] for n in notes] == [
        "--disable-nl",
        "--tags",
        "--nl-ready-threshold",
        "--enable-rt-stats",
    ]


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        (["--governor"], "the governor mode is not supported: run one qcgpj-async per allocation"),
        (["--parent", "tcp://h:1"], "the governor mode is not supported"),
        (["--slurm-partition-nodes", "2"], "partitioning an allocation is not supported"),
        (["--slurm-limit-nodes-range-begin", "1"], "give the nodes with --nodes"),
    ],
)
def test_cli_flags_of_missing_features_get_one_line(
    tmp_path: Path, flag: list[str], says: str
) -> None:
    run = _cli(tmp_path, *flag)
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"qcgpj-async: error: {flag[0]}: ") and says in line
    assert "usage:" not in run.stderr
    assert not (tmp_path / ".qcgpjm-service-c").exists()


def test_a_job_that_can_never_fit_fails_alone(tmp_path: Path) -> None:
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "2,2", "--system-core"])
    try:
        names = m.submit(
            Jobs()
            .add(name="big", exec="/bin/true", numNodes=1, numCores=6)
            .add(name="ok", exec="/bin/true")
        )
        assert names == ["big", "ok"]
        assert m.wait4(names, timeout=T) == {"big": "FAILED", "ok": "SUCCEED"}
        info = m.info("big")["jobs"]["big"]["data"]
        assert info["messages"] == (
            "Not enough resources for job big: needs 6 cores on 1 node; "
            "the pilot has 2 nodes x 2 cores, 1 kept by --system-core"
        )
    finally:
        m.finish()


RESUME_REQUESTS = """[
 {"request": "submit", "jobs": [
   {"name": "ok", "execution": {"exec": "/bin/true"}},
   {"name": "slow", "execution": {"script": "if [ -f marker ]; then exit 0; fi; touch marker; sleep 60"}}]},
 {"request": "submit", "jobs": [
   {"name": "later", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["slow"]}}]}
]"""


def test_resume_with_the_same_request_file_goes_on(tmp_path: Path) -> None:
    # What a resubmitted sbatch script does: the same command line, plus --resume.
    (tmp_path / "r.json").write_text(RESUME_REQUESTS)
    cmd = [
        sys.executable,
        "-m",
        "qcgpj_async",
        "--file-path",
        "r.json",
        "--nodes",
        "2",
        "--kill-grace",
        "1",
    ]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + T
        while not (tmp_path / "marker").exists():  # "slow" runs: stop the run there
            assert time.monotonic() < deadline, "the first run did not start slow"
            time.sleep(0.05)
        first.terminate()
        assert first.wait(T) == 143
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = subprocess.run(
        [*cmd, "--resume", "."], cwd=tmp_path, capture_output=True, text=True, timeout=T
    )
    assert second.returncode == 0, second.stderr
    out = second.stderr.splitlines()
    assert out[0] == (
        "qcgpj-async: resumed .: 3 jobs from the journal, 1 had ended, 2 run again; "
        "3 jobs of the request file were among them"
    )
    assert out[-1].startswith("qcgpj-async: 3 jobs: 3 succeeded"), out
    assert not any("resumed" in line for line in out[1:]), out  # said once
    # The job that ended before the resume is reported as restored, not as a run of 0 s.
    report = out[-1].rpartition("report: ")[2]
    entries = {e["name"]: e for e in map(json.loads, (tmp_path / report).read_text().splitlines())}
    assert entries["ok"].get("restored") is True and entries["ok"]["state"] == "SUCCEED"
    assert "restored" not in entries["later"]
    table = subprocess.run(
        [sys.executable, "-m", "qcgpj_async", "report", ".", "--jobs", "--format", "jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=T,
        check=True,
    ).stdout
    rows = {r["name"]: r for r in map(json.loads, table.splitlines())}
    assert rows["ok"]["reason"] == "succeed before the resume (restored from the journal)"


def test_mpi_model_without_a_launcher_runs_once_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qcgpj_async.executors")
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "2"])
    try:
        job = {
            "name": "mpi",
            "execution": {
                "exec": "/bin/sh",
                "args": ["-c", "echo run >> out"],
                "model": "openmpi",
                "env": {"PATH": str(tmp_path / "no-mpi-here")},
            },
            "resources": {"numCores": 2},
            "iteration": {"stop": 2},
        }
        assert m.wait4(m.submit(Jobs().add_std(job)), timeout=T) == {"mpi": "SUCCEED"}
    finally:
        m.finish()
    assert (tmp_path / "out").read_text() == "run\nrun\n"  # once per iteration, not per core
    lines = [r.getMessage() for r in caplog.records if r.name == "qcgpj_async.executors.local"]
    assert lines == [
        "job mpi: model openmpi: no MPI launcher (mpirun) found: the program runs once"
    ]
