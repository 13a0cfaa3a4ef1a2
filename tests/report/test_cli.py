"""``qcgpj-async report`` and ``status`` on real runs: finished, running, killed by SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from procfs import alive

from qcgpj_async.report import load_run, summarize

TIMEOUT = 60
QCGPJ = (sys.executable, "-m", "qcgpj_async")


def qcgpj(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*QCGPJ, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def requests(path: Path, *jobs: dict[str, Any]) -> str:
    path.write_text(json.dumps([{"request": "submit", "jobs": list(jobs)}]))
    return str(path)


def script(name: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "execution": {"script": text}, **extra}


def service_dir(wd: Path) -> Path:
    (d,) = wd.glob(".qcgpjm-service-*")
    return d


def wait_for(what: str, check: Any, proc: subprocess.Popen[str] | None = None) -> Any:
    """Poll a file-based condition (files the service writes) until true, failing loudly."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        got = check()
        if got:
            return got
        assert proc is None or proc.poll() is None, f"the service ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def journal(wd: Path) -> list[dict[str, Any]]:
    found = list(wd.glob(".qcgpjm-service-*/journal.jsonl"))
    if not found:
        return []
    out = []
    for line in found[0].read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break  # the line being written
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished batch on two nodes of 2 cores: 1 job succeeds, 2 fail, 1 omitted."""
    tmp = tmp_path_factory.mktemp("finished")
    f = requests(
        tmp / "r.json",
        script("ok", "sleep 0.2", resources={"numCores": {"exact": 2}}),
        script("bad", "exit 3"),
        {**script("dep", "true"), "dependencies": {"after": ["bad"]}},
        script("it", "sleep 0.2; test ${it} != 1", iteration={"stop": 3}),
    )
    proc = qcgpj("--file-path", f, "--wd", "wd", "--nodes", "n1:2,n2:2", cwd=tmp)
    assert proc.returncode == 1, proc.stderr
    (tmp / "stderr.txt").write_text(proc.stderr)
    return tmp


def test_report_of_a_finished_run(finished: Path) -> None:
    proc = qcgpj("report", "wd", cwd=finished)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "(pilot " in out and ", finished)" in out
    assert "  4 jobs: 1 succeeded, 2 failed, 1 omitted\n" in out
    assert "  6 iterations: 3 succeeded, 2 failed, 1 omitted" in out
    assert "resources   2 nodes, 4 cores\n" in out  # from the journal, not guessed
    assert "FAILED   bad   exit code 3" in out
    assert "OMITTED  dep   dependency bad ended FAILED" in out
    assert "--jobs --state FAILED,OMITTED" in out
    for label in ("queue wait", "task start", "run time"):
        assert f"\n{label:14}       5 " in out  # five tasks ran


def test_report_numbers_match_the_task_table(finished: Path) -> None:
    proc = qcgpj("report", "wd", "--jobs", "--format", "jsonl", cwd=finished)
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert {r["name"] for r in rows} == {"ok", "bad", "dep", "it:0", "it:1", "it:2"}
    s = summarize(load_run(finished / "wd"))
    ran = [r for r in rows if r["runtime"] is not None]
    assert s.usage.busy == pytest.approx(sum(r["runtime"] * r["cores"] for r in ran))
    first = min(r["started"] for r in ran)
    last = max(r["ended"] for r in ran)
    assert s.makespan == pytest.approx(last - first)
    assert s.utilisation == pytest.approx(s.usage.busy / (4 * (last - first)))
    assert 0 < s.utilisation <= 1
    assert s.start_overhead >= 0 and s.finish_overhead >= 0
    assert s.wall == pytest.approx(s.start_overhead + s.makespan + s.finish_overhead)
    assert next(r for r in rows if r["name"] == "ok")["cores"] == 2
    final = json.loads((service_dir(finished / "wd") / "final_status.json").read_text())
    assert final["JobStats"]["FailedJobs"] == 3  # the original's fields, as they were
    assert final["JobStates"] == {
        "QUEUED": 0,
        "SCHEDULED": 0,
        "EXECUTING": 0,
        "SUCCEED": 1,
        "FAILED": 2,
        "CANCELED": 0,
        "OMITTED": 1,
    }
    assert final["IterationStates"]["SUCCEED"] == 3


def test_jobs_filters_and_sorting(finished: Path) -> None:
    def names(*args: str) -> list[str]:
        proc = qcgpj("report", "wd", "--jobs", "--format", "jsonl", *args, cwd=finished)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(x)["name"] for x in proc.stdout.splitlines()]

    assert sorted(names("--state", "FAILED")) == ["bad", "it:1"]
    assert names("--name", "it:*", "--sort", "name") == ["it:0", "it:1", "it:2"]
    assert names("--name", "it", "--sort", "name", "--reverse") == ["it:2", "it:1", "it:0"]
    on_n1 = names("--node", "n1")
    assert "ok" in on_n1 and "dep" not in on_n1
    assert names("--sort=-runtime", "--limit", "1") in (["ok"], ["it:0"], ["it:1"], ["it:2"])
    table = qcgpj("report", "wd", "--jobs", "--state", "omitted", cwd=finished).stdout
    header, row = table.splitlines()
    assert header.split()[:2] == ["name", "state"]
    assert row.split()[:2] == ["dep", "OMITTED"] and row.endswith("dependency bad ended FAILED")
    typo = qcgpj("report", "wd", "--jobs", "--state", "FAILD", cwd=finished)
    assert typo.returncode == 2 and "unknown state FAILD: one of QUEUED, " in typo.stderr
    bad = qcgpj("report", "wd", "--jobs", "--sort", "colour", cwd=finished)
    assert bad.returncode == 2 and "--sort 'colour'" in bad.stderr


def test_report_of_nothing(tmp_path: Path) -> None:
    proc = qcgpj("report", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "neither a service directory" in proc.stderr


def test_the_original_flags_still_run_a_batch(tmp_path: Path) -> None:
    proc = qcgpj("--file-path", requests(tmp_path / "r.json", script("a", "true")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("qcgpj-async: 1 job: 1 succeeded; report: ")


def test_report_reads_the_originals_jobs_report(tmp_path: Path) -> None:
    # a line as the original writes it (docs of QCG-PilotJob 0.14.2)
    line = {
        "name": "j0",
        "state": "SUCCEED",
        "history": [
            {"state": "QUEUED", "date": "2026-11-22T22:28:32.771930"},
            {"state": "SCHEDULED", "date": "2026-11-22T22:28:32.772010"},
            {"state": "EXECUTING", "date": "2026-11-22T22:28:32.800000"},
            {"state": "SUCCEED", "date": "2026-11-22T22:28:32.900000"},
        ],
        "runtime": {"allocation": "n0[0:1:2]", "wd": "/x", "rtime": "0:00:00.1", "exit_code": "0"},
    }
    (tmp_path / "jobs.report").write_text(json.dumps(line) + "\n")
    run = load_run(tmp_path / "jobs.report")
    (t,) = run.tasks
    assert t.alloc == (("n0", (0, 1, 2)),)
    assert t.ended - t.started == pytest.approx(0.1, abs=1e-6)
    assert run.nodes == {"n0": 3} and run.nodes_inferred
    proc = qcgpj("report", str(tmp_path / "jobs.report"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 job: 1 succeeded" in proc.stdout


def start_batch(tmp_path: Path, *jobs: dict[str, Any]) -> subprocess.Popen[str]:
    f = requests(tmp_path / "r.json", *jobs)
    return subprocess.Popen(
        [*QCGPJ, "--file-path", f, "--wd", str(tmp_path / "wd"), "--nodes", "n0:2"],
        stderr=subprocess.PIPE,
        text=True,
    )


def running_records(wd: Path, n: int) -> list[dict[str, Any]]:
    recs = journal(wd)
    runs = [r for r in recs if r["t"] == "run"]
    return runs if len(runs) >= n else []


def test_status_of_a_running_batch_and_watch(tmp_path: Path) -> None:
    proc = start_batch(
        tmp_path,
        script("f", "exit 4"),
        script("s", "exec sleep 30", iteration={"stop": 2}),
        {**script("after", "true"), "dependencies": {"after": ["s"]}},
    )
    watcher = None
    try:
        wait_for("two running iterations", lambda: running_records(tmp_path / "wd", 2), proc)
        st = qcgpj("status", "wd", cwd=tmp_path)
        assert st.returncode == 0, st.stderr
        out = st.stdout
        assert out.splitlines()[0].startswith("pilot ") and " running; up " in out
        assert "  3 jobs: 1 queued, 1 running, 1 failed\n" in out
        assert "  4 iterations: 1 queued, 2 running, 1 failed\n" in out
        assert "running (2 seen;" in out
        assert any(x.strip().startswith("s:0") and "n0[" in x for x in out.splitlines())
        assert "FAILED   f  exit code 4" in out
        watcher = subprocess.Popen(
            [*QCGPJ, "status", "wd", "--watch", "0.2"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        proc.send_signal(signal.SIGTERM)  # the batch ends: the watcher sees it and stops
        proc.communicate(timeout=TIMEOUT)
        wout, _ = watcher.communicate(timeout=TIMEOUT)
        assert watcher.returncode == 0
        assert " finished; up " in wout.split("pilot ")[-1]
    finally:
        for p in (proc, watcher):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_report_of_a_run_killed_by_sigkill(tmp_path: Path) -> None:
    proc = start_batch(
        tmp_path,
        script("q", "true"),
        script("s", "exec sleep 30", iteration={"stop": 2}),
    )
    runs: list[dict[str, Any]] = []
    try:
        runs = wait_for("two running iterations", lambda: running_records(tmp_path / "wd", 2), proc)
        proc.kill()  # SIGKILL: no close record, jobs.report as far as it got
        proc.communicate(timeout=TIMEOUT)
        assert journal(tmp_path / "wd")[-1]["t"] != "close"
        rep = qcgpj("report", "wd", cwd=tmp_path)
        assert rep.returncode == 0, rep.stderr
        assert "ended without closing its journal" in rep.stdout
        assert "  3 iterations: 2 running, 1 succeeded  " in rep.stdout
        run = load_run(tmp_path / "wd")
        assert run.alive is False and run.closed is None
        s = {t.name: t for t in run.tasks}
        assert s["s:0"].state == "EXECUTING" and s["s:0"].alloc[0][0] == "n0"
        assert s["s:0"].started is not None
        st = qcgpj("status", "wd", cwd=tmp_path)
        assert st.returncode == 0 and "dead: its process is gone" in st.stdout
        watch = qcgpj("status", "wd", "--watch", "0.1", cwd=tmp_path)
        assert watch.returncode == 1  # it will never end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # the killed service's jobs: process groups it started for this test, by pid
        for r in runs:
            if alive(r["pid"]):
                os.killpg(r["pid"], signal.SIGKILL)


@pytest.mark.parametrize("fmt", ["text", "none"])
def test_report_of_other_report_formats(tmp_path: Path, fmt: str) -> None:
    f = requests(
        tmp_path / "r.json",
        script("bad", "exit 3"),
        script("it", "test ${it} != 1", iteration={"stop": 3}),
    )
    proc = qcgpj("--file-path", f, "--wd", "wd", "--report-format", fmt, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = qcgpj("report", "wd", cwd=tmp_path).stdout
    assert "  2 jobs: 2 failed\n" in out
    assert "  4 iterations: 2 succeeded, 2 failed" in out
    assert "FAILED   bad   exit code 3" in out
    if fmt == "text":  # histories and allocations read from the text blocks
        assert f"\n{'run time':14}       4 " in out
        run = load_run(tmp_path / "wd")
        assert {t.name: t.alloc[0][0] for t in run.tasks} == dict.fromkeys(
            ["bad", "it:0", "it:1", "it:2"], run.tasks[0].alloc[0][0]
        )


def test_batch_closing_lines_agree_with_the_report(finished: Path) -> None:
    from qcgpj_async.report import format_duration, summary_lines

    sdir = service_dir(finished / "wd")
    *failed, hint, makespan, last = summary_lines(str(sdir), str(sdir / "jobs.report"))
    s = summarize(load_run(sdir))
    assert makespan.startswith(
        f"makespan {format_duration(s.makespan)}, utilisation {100 * s.utilisation:.1f}% of 4 "
        "cores; "
    )
    # the first three by end time, as the report lists them
    by_end = sorted(s.unsuccessful, key=lambda t: t.ended or 0.0)[:3]
    assert failed == [f"  {t.state} {t.name}: {t.reason}" for t in by_end]
    assert hint.endswith(" --jobs --state FAILED,OMITTED)")
    assert last.startswith("4 jobs: 1 succeeded, 2 failed, 1 omitted; report: ")


def test_the_pilots_closing_lines_agree_with_the_files(
    finished: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch prints its closing lines from what the pilot gathered as runs ended
    # (Pilot.run_totals: no file read at the end); the same lines computed from the
    # service directory's files must say the same.
    from qcgpj_async.report import summary_lines

    sdir = service_dir(finished / "wd")
    printed = [
        line.removeprefix("qcgpj-async: ")
        for line in (finished / "stderr.txt").read_text().splitlines()
    ]
    monkeypatch.chdir(finished)  # paths in the lines are relative to where the batch ran
    from_files = summary_lines(str(sdir), str(sdir / "jobs.report"))
    *failed, hint, makespan, last = printed
    *failed_f, hint_f, makespan_f, last_f = from_files
    assert failed == [line.removeprefix("qcgpj-async: ") for line in failed_f]
    assert len(failed) == 3 and (hint, last) == (hint_f, last_f)

    def util(line: str) -> float:
        m = re.search(r"utilisation ([\d.]+)% of 4 cores", line)
        assert m, line
        return float(m.group(1))

    assert abs(util(makespan) - util(makespan_f)) <= 0.2


def test_the_fast_path_reads_as_json_does(finished: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from qcgpj_async.report import _reports

    fast = load_run(finished / "wd")
    assert sum(1 for t in fast.tasks if t.state == "SUCCEED") == 3
    monkeypatch.setattr(_reports, "_SUCCEEDED", re.compile(rb"(?!)"))  # never matches
    slow = load_run(finished / "wd")
    assert {t.name: t for t in fast.tasks} == {t.name: t for t in slow.tasks}
    assert fast.jobs == slow.jobs


def test_report_of_a_gpu_run(tmp_path: Path) -> None:
    # 4 one-GPU tasks on 2 declared GPUs, and a CPU task: each run's GPUs in jobs.report,
    # the pilot's in the journal's header, their use in the report.
    f = requests(
        tmp_path / "r.json",
        {
            **script("g", "sleep 0.2"),
            "iteration": {"stop": 4},
            "resources": {"nodeCrs": {"gpu": 1}},
        },
        script("cpu", "sleep 0.1"),
    )
    proc = qcgpj("--file-path", f, "--wd", "wd", "--nodes", "4", "--gpus", "0,1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = load_run(tmp_path / "wd")
    assert run.gpus == {"n0": 2}
    by_name = {t.name: t for t in run.tasks}
    assert [by_name[f"g:{i}"].gpus for i in range(4)] == [1, 1, 1, 1]
    assert by_name["cpu"].gpus == 0
    s = summarize(run)
    held = sum(by_name[f"g:{i}"].ended - by_name[f"g:{i}"].started for i in range(4))
    assert s.gpu_busy == pytest.approx(held)
    assert 0 < s.gpu_utilisation <= 1
    out = qcgpj("report", "wd", cwd=tmp_path).stdout
    assert "resources   1 node, 4 cores, 2 GPUs\n" in out
    assert re.search(r"gpus        2: utilisation \d+\.\d% of the makespan", out), out
