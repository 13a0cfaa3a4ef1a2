"""SIGINT/SIGTERM to the service: jobs stopped (SIGTERM, SIGKILL after the grace), reports
written, exit 130/143; a second signal kills at once; --net alike; the stopped jobs resume.

(tests/cli/test_batch.py checks the plain case: a job that obeys SIGTERM.)
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import (
    T,
    all_gone,
    ended,
    job,
    journal,
    report,
    requests_file,
    run_service,
    service,
    service_dirs,
    stop_all,
    submit,
    until,
)

# Ignores SIGTERM (says so in ``term``) and leaves a child in its process group.
STUBBORN = (
    "if [ -f second ]; then echo again >> runs; exit 0; fi; "
    "trap 'echo got >> term' TERM; sleep 60 & echo $! > child; echo $$ > pid; "
    "while true; do sleep 0.1; done"
)


def stubborn_pids(wd: Path) -> list[int]:
    until(
        lambda: (
            (wd / "child").exists()
            and (wd / "pid").exists()
            and (wd / "child").read_text()
            and (wd / "pid").read_text()
        ),
        "the job's pids",
    )
    return [int((wd / "pid").read_text()), int((wd / "child").read_text())]


def start(
    wd: Path, *extra: str, reqs: list[dict[str, object]] | None = None, grace: str = "1"
) -> subprocess.Popen[str]:
    f = requests_file(
        wd / "r.json", reqs or [submit(job("quick", "echo q >> runs"), job("stubborn", STUBBORN))]
    )
    return service(
        "--file-path", f, "--wd", str(wd), "--nodes", "2", "--kill-grace", grace, *extra, cwd=wd
    )


@contextlib.contextmanager
def stubborn_running(
    wd: Path, *extra: str, grace: str = "1"
) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """The service (:func:`start`) once the stubborn job runs: ``(proc, its pids)``.

    Whatever happens in the block, the service and the job's group are killed on leaving.
    """
    proc = start(wd, *extra, grace=grace)
    pids: list[int] = []
    try:
        pids += stubborn_pids(wd)
        yield proc, pids
    finally:
        stop_all([proc], pids)


def test_sigterm_waits_the_grace_then_kills_and_the_job_resumes(tmp_path: Path) -> None:
    wd = tmp_path
    with stubborn_running(wd) as (proc, pids):
        until(lambda: "quick" in ended(journal(service_dirs(wd)[0])), "quick to end")
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=T)
        took = time.monotonic() - t
    assert proc.returncode == 143
    first, *_, summary, last = err.splitlines()
    assert (
        first == "qcgpj-async: stopping 1 job (SIGTERM; SIGKILL in 1 s; Ctrl-C again to kill now)"
    )
    assert "qcgpj-async:   CANCELED stubborn: killed by SIGKILL" in err
    assert summary.startswith("qcgpj-async: 2 jobs: 1 succeeded, 1 cancelled; report: ")
    assert last == "qcgpj-async: terminated: every job was stopped"
    assert 0.9 < took < 10  # the grace (1 s), then SIGKILL
    assert (wd / "term").read_text() == "got\n"  # it was asked first
    assert all_gone(pids) == []  # the job and its child: the whole group
    (d,) = service_dirs(wd)
    assert (d / "final_status.json").exists()
    rep = report(d)
    assert (
        rep["stubborn"]["state"] == "CANCELED" and rep["stubborn"]["runtime"]["exit_code"] == "-9"
    )
    assert ended(journal(d)) == {"quick": "SUCCEED"}  # stopped is not ended: it will resume
    assert journal(d)[-1]["interrupted"] == 1
    (wd / "second").touch()
    done = run_service("--resume", str(wd), "--wd", str(wd), "--nodes", "2", cwd=wd)
    assert done.returncode == 0, done.stderr
    assert (wd / "runs").read_text() == "q\nagain\n"


def test_second_sigint_kills_at_once(tmp_path: Path) -> None:
    wd = tmp_path
    with stubborn_running(wd, grace="60") as (proc, pids):
        proc.send_signal(signal.SIGINT)
        until(lambda: (wd / "term").exists(), "the job to get SIGTERM")
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)  # not the 60 s grace: now
        _, err = proc.communicate(timeout=T)
        took = time.monotonic() - t
    assert proc.returncode == 130
    first, *_, last = err.splitlines()
    assert re.fullmatch(
        r"qcgpj-async: stopping [12] jobs? \(SIGTERM; SIGKILL in 60 s; Ctrl-C again to kill now\)",
        first,
    ), first
    assert last == "qcgpj-async: interrupted: every job was stopped"
    assert took < 10
    assert all_gone(pids) == []
    (d,) = service_dirs(wd)
    assert report(d)["stubborn"]["runtime"]["exit_code"] == "-9"
    assert (d / "final_status.json").exists()


def test_signal_in_net_mode(tmp_path: Path) -> None:
    pytest.importorskip("zmq")
    wd = tmp_path
    with stubborn_running(wd, "--net") as (proc, pids):
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=T)
    assert proc.returncode == 130
    assert err.endswith("qcgpj-async: interrupted: every job was stopped\n")
    assert all_gone(pids) == []
    (d,) = service_dirs(wd)
    assert report(d)["stubborn"]["state"] == "CANCELED"
    assert (d / "final_status.json").exists()
