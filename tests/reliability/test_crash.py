"""SIGKILL of the service mid-run, then --resume (twice): nothing that ended runs again.

Every job appends its name to ``runs`` when it starts, so the file counts runs.
Some jobs block until a ``gate`` file exists: they are running when the service
is killed. Killed alone, the service's fork server kills them. Killed together
with its fork server, they are left behind as orphans, which the resume must
kill (by pid, checked against the journal) before it runs them again.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
from pathlib import Path

from reliability_helpers import (
    T,
    alive,
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

WAIT = "while [ ! -f gate ]; do sleep 0.1; done"


def requests() -> list[dict[str, object]]:
    return [
        submit(
            job(
                "blocked",
                f"echo $$ > pid.blocked.${{it}}; echo blocked:${{it}} >> runs; {WAIT}",
                iteration={"stop": 3},
            ),
            # odd iterations end at once, even ones block: what ended is not a prefix
            job(
                "mix",
                "echo mix:${it} >> runs; if [ $((${it} % 2)) = 0 ]; then "
                f"echo $$ > pid.mix.${{it}}; {WAIT}; fi",
                iteration={"stop": 6},
            ),
            job(
                "pair",
                "echo pair:${it} >> runs",
                iteration={"stop": 6},
                dependencies={"after": ["mix:${it}"]},
            ),
            job("quick", "echo quick:${it} >> runs", iteration={"stop": 12}),
            *(job(f"p{i}", f"echo p{i} >> runs") for i in range(8)),
            job("after", "echo after >> runs", dependencies={"after": ["blocked"]}),
        )
    ]


def blocked_running(d: Path) -> bool:
    """Every blocked process is journaled (pid and start) and every quick job has ended."""
    if not (d / "journal.jsonl").exists():
        return False
    recs = journal(d)
    running = {f"{r['job']}:{r['it']}" for r in recs if r["t"] == "run"}
    done = ended(recs)
    return running >= {"blocked:0", "blocked:1", "blocked:2", "mix:0", "mix:2", "mix:4"} and {
        "quick",
        "p7",
        "mix:5",
        "pair:5",
    } <= set(done)


def pids(wd: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(wd.glob("pid.*"))]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_sigkill_then_resume_twice(tmp_path: Path) -> None:
    wd = tmp_path
    f = requests_file(tmp_path / "r.json", requests())
    args = ("--wd", str(wd), "--nodes", "16", "--kill-grace", "2")
    orphans: list[int] = []
    procs: list[subprocess.Popen[str]] = []
    try:
        # 1. the first run, killed while 6 processes run
        first = service("--file-path", f, *args, cwd=tmp_path)
        procs.append(first)
        until(
            lambda: [d for d in wd.glob(".qcgpjm-service-*") if blocked_running(d)],
            "the blocked jobs to be journaled as running",
        )
        orphans = pids(wd)
        assert len(orphans) == 6
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=T)
        assert all_gone(orphans) == []  # the fork server saw the service die
        (d1,) = service_dirs(wd)
        before = ended(journal(d1))
        assert {k for k, v in before.items() if v == "SUCCEED"} >= {
            "quick",
            "p0",
            "mix:1",
            "mix:3",
            "mix:5",
            "pair:1",
            "pair:3",
            "pair:5",
        }

        # 2. resumed: it runs the blocked jobs again, and is killed with its fork server
        second = service("--resume", str(wd), *args, cwd=tmp_path)
        procs.append(second)
        until(
            lambda: len(service_dirs(wd)) == 2 and blocked_running(service_dirs(wd)[1]),
            "the resumed blocked jobs to be journaled as running",
        )
        orphans2 = pids(wd)
        assert not set(orphans2) & set(orphans)
        orphans = orphans2
        second.send_signal(signal.SIGSTOP)  # it must not see its fork server die
        (server,) = children(second.pid)
        os.kill(server, signal.SIGKILL)
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=T)
        assert all(alive(p) for p in orphans)  # own sessions: they outlive both

        # 3. resumed again, from the newest service directory; now the jobs may end
        third = service("--resume", str(wd), *args, cwd=tmp_path)
        procs.append(third)
        assert all_gone(orphans) == []
        (wd / "gate").touch()
        _, err = third.communicate(timeout=T)
        assert third.returncode == 0, err
        lines = err.splitlines()
        resumed, summary = lines[0], lines[-1]
        assert re.fullmatch(
            rf"qcgpj-async: resumed {re.escape(str(wd))}: 13 jobs from the journal, "
            r"\d+ had ended, \d+ run again",
            resumed,
        ), resumed
        assert summary.startswith("qcgpj-async: 13 jobs: 13 succeeded; report: "), err
    finally:
        (wd / "gate").touch()
        stop_all(procs, orphans + pids(wd))

    runs = collections.Counter((wd / "runs").read_text().split())
    # everything that had succeeded before the kill ran exactly once
    for label, state in before.items():
        if state == "SUCCEED" and label in runs:
            assert runs[label] == 1, label
    expected = {
        **{f"quick:{i}": 1 for i in range(12)},
        **{f"p{i}": 1 for i in range(8)},
        **{f"mix:{i}": 3 if i % 2 == 0 else 1 for i in range(6)},
        **{f"pair:{i}": 1 for i in range(6)},
        **{f"blocked:{i}": 3 for i in range(3)},
        "after": 1,
    }
    assert runs == expected
    d3 = service_dirs(wd)[2]
    rep = report(d3)
    assert {rep[n]["state"] for n in ("blocked", "mix", "pair", "quick", "after", "p0")} == {
        "SUCCEED"
    }
    assert rep["mix:3"]["state"] == "SUCCEED"  # restored, still reported
    final = json.loads((d3 / "final_status.json").read_text())
    assert final["JobStats"]["FinishedJobs"] == 13
    assert "left running" not in (service_dirs(wd)[1] / "service.log").read_text()
    log = (d3 / "service.log").read_text()
    assert log.count("left running by the resumed service") == 6


def test_resume_of_a_bad_directory_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_service("--resume", str(tmp_path / "nope"), "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"qcgpj-async: error: resume: {str(tmp_path / 'nope')!r} is not a directory\n"
    )
    proc = run_service("--resume", str(tmp_path), "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "neither a service directory with a journal.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr
