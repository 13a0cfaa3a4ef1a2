"""Batch mode end to end: ``python -m qcgpj_async --file-path F`` in a subprocess.

Exit codes (0 all jobs succeeded, 1 some did not, 2 invalid input), one clear
stderr line per problem and never a traceback, the summary line, every flag,
and every request of the protocol in a file (their replies in service.log).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from procfs import alive

from qcgpj_async import JobState, NullExecutor, Pilot, __version__
from qcgpj_async.cli import _progress, _progress_line

TIMEOUT = 60
SUMMARY = re.compile(
    r"qcgpj-async: (\d+) jobs?: (\d+) succeeded(, \d+ failed)?"
    r"(, \d+ omitted)?(, \d+ cancelled)?; report: (.+)"
)


def qcgpj(
    *args: str,
    cwd: Path,
    exe: tuple[str, ...] = (sys.executable, "-m", "qcgpj_async"),
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*exe, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def requests_file(path: Path, requests: Any) -> str:
    path.write_text(json.dumps(requests, indent=1))
    return str(path)


def job(name: str, script: str | None = None, **extra: Any) -> dict[str, Any]:
    execution: dict[str, Any] = (
        {"script": script} if script is not None else {"exec": "echo", "args": [name]}
    )
    return {"name": name, "execution": execution, **extra}


def batch(path: Path, *jobs: dict[str, Any], control: bool = True) -> str:
    reqs: list[dict[str, Any]] = [{"request": "submit", "jobs": list(jobs)}]
    if control:
        reqs.append({"request": "control", "command": "finishAfterAllTasksDone"})
    return requests_file(path, reqs)


def lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stderr.splitlines()


def before_summary(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr less the closing block: failed jobs, makespan line, summary line."""
    out = lines(proc)[:-1]
    while out and out[-1].startswith(("qcgpj-async:   ", "qcgpj-async: makespan ")):
        out.pop()
    return out


def summary(proc: subprocess.CompletedProcess[str]) -> re.Match[str]:
    m = SUMMARY.fullmatch(lines(proc)[-1])
    assert m, proc.stderr
    return m


def service_dir(wd: Path) -> Path:
    (d,) = wd.glob(".qcgpjm-service-*")
    return d


def replies(wd: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """The (request number, request name, reply) lines of service.log."""
    log = (service_dir(wd) / "service.log").read_text()
    return [
        (int(n), name, json.loads(reply))
        for n, name, reply in re.findall(r"request #(\d+) \((\w+)\): (\{.*\})$", log, re.M)
    ]


# -- exit codes ----------------------------------------------------------------------------


def test_all_succeed_exit_0(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"), job("b", iteration={"stop": 3}))
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path / "wd"), cwd=tmp_path)
    assert proc.returncode == 0
    makespan, _ = lines(proc)  # nothing but the makespan line and the summary
    assert re.fullmatch(
        r"qcgpj-async: makespan .+, utilisation .+% of \d+ cores; more: qcgpj-async report "
        r"wd/\.qcgpjm-service-.+",
        makespan,
    ), makespan
    m = summary(proc)
    assert m.group(1, 2) == ("2", "2") and m.group(3, 4, 5) == (None, None, None)
    assert proc.stdout == ""


def test_a_failed_job_exit_1(tmp_path: Path) -> None:
    f = batch(
        tmp_path / "r.json", job("f", "exit 3"), job("o", dependencies={"after": ["f"]}), job("t")
    )
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert lines(proc)[-1].startswith("qcgpj-async: 3 jobs: 1 succeeded, 1 failed, 1 omitted; ")


def test_cancelled_job_exit_1(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {"request": "submit", "jobs": [job("s", "sleep 30")]},
            {"request": "cancelJob", "jobNames": ["s"]},
        ],
    )
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert ", 1 cancelled; " in lines(proc)[-1]


def test_without_control_the_run_still_ends(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a", "echo done > a.out"), control=False)
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0
    assert (tmp_path / "a.out").read_text() == "done\n"


# -- invalid input: exit 2, one line, no traceback -----------------------------------------------


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    (line,) = lines(proc)
    assert line.startswith("qcgpj-async: error: ")
    return line


def test_missing_file(tmp_path: Path) -> None:
    line = one_error(qcgpj("--file-path", "nope.json", cwd=tmp_path))
    assert line == "qcgpj-async: error: request file 'nope.json' not found"
    assert not list(tmp_path.glob(".qcgpjm-service-*"))  # nothing was started


def test_file_is_a_directory(tmp_path: Path) -> None:
    line = one_error(qcgpj("--file-path", str(tmp_path), cwd=tmp_path))
    assert str(tmp_path) in line


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('[\n  {"request": "submit",\n   "jobs": [}\n]\n')
    line = one_error(qcgpj("--file-path", "r.json", cwd=tmp_path))
    assert line.startswith(
        "qcgpj-async: error: request file 'r.json': invalid JSON at line 3 column 13: "
    )


def test_unreadable_request_files(tmp_path: Path) -> None:
    (tmp_path / "bin.json").write_bytes(b'[{"request": "status"}, "\xff"]')
    assert one_error(qcgpj("--file-path", "bin.json", cwd=tmp_path)) == (
        "qcgpj-async: error: request file 'bin.json': not UTF-8 text (byte 25)"
    )
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert one_error(qcgpj("--file-path", "deep.json", cwd=tmp_path)) == (
        "qcgpj-async: error: request file 'deep.json': JSON nested too deeply"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--wd", "r.json"], "cannot create the working directory '{wd}/r.json': File exists"),
        (["--wd", "/proc/qcgpj-nope"], "cannot create the working directory '/proc/qcgpj-nope': "),
        (
            ["--report-file", "sub/r.txt"],
            "report file 'sub/r.txt': a file name in the service "
            "directory, without a directory part",
        ),
        (["--report-file="], "report file '': a file name"),
        (
            ["--nodes", "9999999999"],
            "nodes: 9999999999 cores in '9999999999', more than the 10,000,000 one pilot manages",
        ),
    ],
)
def test_setup_errors_are_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj(
        "--file-path",
        f,
        *(["--nodes", "1"] if "--nodes" not in flags else []),
        *flags,
        cwd=tmp_path,
    )
    line = one_error(proc)
    assert line.startswith("qcgpj-async: error: " + message.format(wd=tmp_path)), line
    assert not list(tmp_path.glob(".qcgpjm-service-*"))  # nothing left behind


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("")
    assert "invalid JSON at line 1 column 1" in one_error(
        qcgpj("--file-path", "r.json", cwd=tmp_path)
    )


@pytest.mark.parametrize(
    ("content", "kind"), [({"jobs": []}, "dict"), ("submit", "str"), (3, "int"), (None, "NoneType")]
)
def test_not_a_list(tmp_path: Path, content: object, kind: str) -> None:
    requests_file(tmp_path / "r.json", content)
    line = one_error(qcgpj("--file-path", "r.json", cwd=tmp_path))
    assert line == (
        f"qcgpj-async: error: request file 'r.json': must hold a JSON list of requests, not {kind}"
    )


def test_a_single_request_object_is_accepted(tmp_path: Path) -> None:
    requests_file(tmp_path / "r.json", {"request": "submit", "jobs": [job("a")]})
    proc = qcgpj("--file-path", "r.json", cwd=tmp_path)
    assert proc.returncode == 0 and summary(proc).group(1, 2) == ("1", "1")


def test_no_file_path(tmp_path: Path) -> None:
    line = one_error(qcgpj(cwd=tmp_path))
    assert "--file-path" in line


def test_bad_flag_is_a_usage_error(tmp_path: Path) -> None:
    proc = qcgpj("--report-format", "xml", "--file-path", "r.json", cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid choice: 'xml'" in proc.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_bad_durations_are_usage_errors(tmp_path: Path, value: str) -> None:
    for flag in ("--kill-grace", "--net-linger"):
        proc = qcgpj(f"{flag}={value}", "--file-path", "r.json", cwd=tmp_path)
        assert proc.returncode == 2
        assert f"argument {flag}: " in proc.stderr and repr(value) in proc.stderr


def test_file_alone_reads_the_original_default_file(tmp_path: Path) -> None:
    batch(tmp_path / "qcg_pm_reqs.json", job("a"))
    proc = qcgpj("--file", "--nodes", "1", cwd=tmp_path)
    assert proc.returncode == 0 and summary(proc).group(1, 2) == ("1", "1")
    (tmp_path / "empty").mkdir()
    missing = qcgpj("--file", "--nodes", "1", cwd=tmp_path / "empty")
    assert missing.returncode == 2 and "qcg_pm_reqs.json" in missing.stderr


def test_rejected_requests_do_not_stop_the_others(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {"request": "submit", "jobs": [{"name": "bad", "execution": {}}]},
            {"request": "submit", "jobs": [job("good", "echo ok > good.out")]},
            {
                "request": "submit",
                "jobs": [
                    {
                        "name": "two",
                        "execution": {"exec": "x", "script": "y"},
                        "resources": {"numCores": {"min": 3, "max": 2}},
                    }
                ],
            },
            {"request": "bogus"},
            7,
            {"request": "submit", "jobs": [job("later", "echo later > later.out")]},
            {"request": "control", "command": "finishAfterAllTasksDone"},
        ],
    )
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    problems, last = before_summary(proc), lines(proc)[-1]
    assert problems == [
        "qcgpj-async: request #1 (submit) rejected: Wrong submit request: job 'bad': execution: "
        "Job execution (exec or script) not defined",
        problems[1],
        "qcgpj-async: request #4 (bogus) rejected: Invalid request: Unknown request name: bogus",
        "qcgpj-async: request #5 (invalid) rejected: Invalid request: Invalid request",
    ]
    # both problems of one job, on the line of its request
    assert problems[1].startswith("qcgpj-async: request #3 (submit) rejected: ")
    assert "Job script and exec or args or env defined" in problems[1]
    assert (
        "resources.numCores: Maximum number greater than minimal: min (3) greater than max (2)"
        in problems[1]
    )
    # the valid requests before and after ran
    assert (tmp_path / "good.out").read_text() == "ok\n"
    assert (tmp_path / "later.out").read_text() == "later\n"
    assert last.startswith("qcgpj-async: 2 jobs: 2 succeeded; report: ")
    # the rejections are in the log too
    log = (service_dir(tmp_path) / "service.log").read_text()
    assert "request #1 (submit) rejected: Wrong submit request: job 'bad'" in log
    assert "request #4 (bogus) rejected" in log


def test_rejected_request_and_failed_job_exit_2(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [{"request": "submit", "jobs": [job("f", "false")]}, {"request": "nope"}],
    )
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2  # invalid input wins over a failed job
    assert ", 1 failed; " in lines(proc)[-1]


# -- the summary line and the report ------------------------------------------------------------


def test_summary_points_at_the_report(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj("--file-path", f, "--wd", "wd", cwd=tmp_path)
    assert proc.returncode == 0
    m = summary(proc)
    report = Path(m.group(6))
    assert not report.is_absolute()  # relative to where the user is
    assert (tmp_path / report).resolve() == service_dir(tmp_path / "wd") / "jobs.report"
    (entry,) = map(json.loads, (tmp_path / report).read_text().splitlines())
    assert entry["name"] == "a" and entry["state"] == "SUCCEED"


def test_report_format_text(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--report-format", "text", cwd=tmp_path)
    assert proc.returncode == 0
    text = (service_dir(tmp_path) / "jobs.report").read_text()
    head, *rest = text.splitlines()
    assert head == "a (SUCCEED)"
    assert [r.rsplit(": ", 1)[1] for r in rest[:4]] == [
        "QUEUED",
        "SCHEDULED",
        "EXECUTING",
        "SUCCEED",
    ]
    assert "\tallocation: " in text and "\texit_code: 0" in text


def test_report_format_none(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--report-format", "none", cwd=tmp_path)
    assert proc.returncode == 0
    svc = service_dir(tmp_path)
    assert sorted(p.name for p in svc.iterdir()) == [
        "final_status.json",
        "journal.jsonl",
        "service.log",
    ]
    assert (tmp_path / summary(proc).group(6)).resolve() == svc.resolve()


def test_report_file(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj(
        "--file-path", f, "--wd", str(tmp_path), "--report-file", "my.report", cwd=tmp_path
    )
    assert proc.returncode == 0
    svc = service_dir(tmp_path)
    assert (svc / "my.report").exists() and not (svc / "jobs.report").exists()
    assert summary(proc).group(6).endswith("my.report")


# -- the other flags -------------------------------------------------------------------------------


def test_wd(tmp_path: Path) -> None:
    f = batch(
        tmp_path / "r.json",
        job("a", "pwd > where; echo x > rel/out"),
        {"name": "b", "execution": {"script": "pwd > where.b", "wd": "sub"}},
    )
    proc = qcgpj("--file-path", f, "--wd", "a/b", cwd=tmp_path)
    assert proc.returncode == 1  # rel/ does not exist: job a fails (on purpose)
    wd = tmp_path / "a" / "b"
    assert (wd / "where").read_text().strip() == str(wd)
    assert (wd / "sub" / "where.b").read_text().strip() == str(wd / "sub")
    assert service_dir(wd).is_dir()
    assert not list(tmp_path.glob(".qcgpjm-service-*"))


def test_default_wd_is_the_current_directory(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a", "echo hi > a.out"))
    proc = qcgpj("--file-path", f, cwd=tmp_path)
    assert proc.returncode == 0
    assert (tmp_path / "a.out").read_text() == "hi\n"
    assert service_dir(tmp_path).is_dir()


def test_nodes(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {"request": "resourcesInfo"},
            {
                "request": "submit",
                "jobs": [
                    job(
                        "wide",
                        'echo "$QCG_PM_NODELIST $QCG_PM_NPROCS"',
                        resources={"numCores": {"exact": 5}},
                    )
                ],
            },
        ],
    )
    for w in ("w1", "w2"):
        (tmp_path / w).mkdir()
    proc = qcgpj("--file-path", f, "--wd", "w1", "--nodes", "n1:2,n2:4", cwd=tmp_path)
    assert proc.returncode == 0
    (_, _, reply), _ = replies(tmp_path / "w1")
    assert reply["data"] == {"total_nodes": 2, "total_cores": 6, "used_cores": 0, "free_cores": 6}
    # unnamed nodes are n0, n1, ...
    proc = qcgpj("--file-path", f, "--wd", "w2", "--nodes", "3,3", cwd=tmp_path)
    assert proc.returncode == 0
    status = json.loads((service_dir(tmp_path / "w2") / "final_status.json").read_text())
    assert status["Resources"]["TotalNodes"] == 2 and status["Resources"]["TotalCores"] == 6
    assert status["System"]["Ifaces"] == ["FILE"]  # the original's name of the interface


def test_bad_nodes(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj("--file-path", f, "--nodes", "n1:x", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = lines(proc)
    assert line.startswith("qcgpj-async: error: ") and "n1:x" in line


def test_system_core(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {"request": "resourcesInfo"},
            {"request": "submit", "jobs": [job("all", resources={"numCores": {"exact": 2}})]},
            {"request": "submit", "jobs": [job("one", 'echo "$QCG_PM_NPROCS" > one.out')]},
            {"request": "resourcesInfo"},
        ],
    )
    proc = qcgpj(
        "--file-path", f, "--wd", str(tmp_path), "--nodes", "2", "--system-core", cwd=tmp_path
    )
    assert proc.returncode == 1  # "all" can never fit: it ends FAILED, the rest runs
    out = lines(proc)
    assert out[-1].startswith("qcgpj-async: 2 jobs: 1 succeeded, 1 failed")
    assert any("FAILED all: Not enough resources for job all: needs 2 cores" in x for x in out)
    assert (tmp_path / "one.out").read_text() == "1\n"
    report = {
        r["name"]: r
        for r in map(json.loads, (service_dir(tmp_path) / "jobs.report").read_text().splitlines())
    }
    assert report["all"]["state"] == "FAILED"
    assert report["all"]["messages"] == (
        "Not enough resources for job all: needs 2 cores; "
        "the pilot has 1 node x 2 cores, 1 kept by --system-core"
    )
    assert report["one"]["runtime"]["allocation"] == "n0[1]"  # core 0 is the manager's
    # As the original: the reserved core counts in the total, as used.
    first = next(r for r in replies(tmp_path) if r[1] == "resourcesInfo")[2]
    assert first["data"] == {"total_nodes": 1, "total_cores": 2, "used_cores": 1, "free_cores": 1}
    status = json.loads((service_dir(tmp_path) / "final_status.json").read_text())
    assert status["Resources"] == {"TotalNodes": 1, "TotalCores": 2, "UsedCores": 1, "FreeCores": 1}


def test_id_names_the_service_directory(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--id", "my-run", cwd=tmp_path)
    assert proc.returncode == 0
    assert service_dir(tmp_path).name == ".qcgpjm-service-my-run"
    status = json.loads((service_dir(tmp_path) / "final_status.json").read_text())
    assert status["System"]["InstanceId"] == "my-run"
    # the same id again: a new directory, the first one is kept
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--id", "my-run", cwd=tmp_path)
    assert proc.returncode == 0
    assert sorted(p.name for p in tmp_path.glob(".qcgpjm-service-*")) == [
        ".qcgpjm-service-my-run",
        ".qcgpjm-service-my-run.1",
    ]


def test_version(tmp_path: Path) -> None:
    proc = qcgpj("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"qcgpj_async {__version__}"


def test_help_lists_the_original_flags(tmp_path: Path) -> None:
    proc = qcgpj("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for flag in (
        "--file-path",
        "--wd",
        "--nodes",
        "--report-format",
        "--report-file",
        "--system-core",
        "--show-progress",
        "--id",
        "--log",
        "--resources",
    ):
        assert flag in proc.stdout


def test_log_level(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("a"))
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--log", "warning", cwd=tmp_path)
    assert proc.returncode == 0
    assert (service_dir(tmp_path) / "service.log").read_text() == ""


# -- --show-progress ------------------------------------------------------------------------------


def test_show_progress_final_line(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", job("s", "sleep 0.1", iteration={"stop": 4}), job("f", "false"))
    proc = qcgpj(
        "--file-path", f, "--wd", str(tmp_path), "--nodes", "2", "--show-progress", cwd=tmp_path
    )
    assert proc.returncode == 1
    progress, failed, hint, _, last = lines(proc)  # non-tty: whole lines, no escape codes
    assert failed == "qcgpj-async:   FAILED f: exit code 1"
    assert hint.endswith(" --jobs --state FAILED)")
    m = re.fullmatch(
        r"done 2/2 jobs \(1 failed; iterations 5/5\), running 0, queued 0, (\d+) it/s, ETA -",
        progress,
    )
    assert m, progress
    # the rate counts from the start of the run: 5 iterations, 2 rounds of 0.1 s at least
    assert 0 < int(m.group(1)) <= 5 / 0.2
    assert last.startswith("qcgpj-async: 2 jobs: 1 succeeded, 1 failed; ")


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.anyio
async def test_progress_line(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path, kill_grace=1) as pilot:
        await pilot.submit(
            [
                job("bad", "false"),
                job("ok"),
                job("s1", "sleep 30"),
                job("s2", "sleep 30"),
                job("q", "sleep 30"),
            ]
        )
        await pilot.wait4(["bad", "ok"], timeout=TIMEOUT)
        with anyio.fail_after(TIMEOUT):
            while (await pilot.status(["s1", "s2"])) != {
                "s1": JobState.EXECUTING,
                "s2": JobState.EXECUTING,
            }:
                await anyio.sleep(0.01)  # processes we started have to get going
        t0 = time.monotonic() - 20  # 2 done in 20 s: 0.1 jobs/s, 3 left: 30 s
        plain = FakeStream(tty=False)
        _progress_line(pilot, plain, t0)
        line = "done 2/5 jobs (1 failed; iterations 2/5), running 2, queued 1, 0 it/s, ETA 0:30"
        assert plain.getvalue() == line + "\n"
        tty = FakeStream(tty=True)
        _progress_line(pilot, tty, t0)
        assert tty.getvalue() == "\r\x1b[2K" + line  # redrawn in place
        _progress_line(pilot, tty, t0, final=True)
        assert tty.getvalue().endswith(line + "\n")
        await pilot.cancel(["s1", "s2", "q"])
    # the live line on a terminal: redrawn every 0.5 s
    async with Pilot(nodes="1", wd=tmp_path, executor=NullExecutor()) as pilot:
        await pilot.submit(job("n"))
        tty = FakeStream(tty=True)
        with anyio.move_on_after(0.7):
            await _progress(pilot, tty, time.monotonic())
        assert tty.getvalue().startswith(
            "\r\x1b[2Kdone 1/1 jobs (0 failed; iterations 1/1), running 0, queued 0, "
        )
        assert tty.getvalue().count("\r") == 1
    # iterations count one by one
    async with Pilot(nodes="4", wd=tmp_path) as pilot:
        await pilot.submit(job("it", "true", iteration={"stop": 6}))
        await pilot.wait4all(timeout=TIMEOUT)
        out = FakeStream(tty=False)
        _progress_line(pilot, out, time.monotonic() - 2)
        assert out.getvalue() == (
            "done 1/1 jobs (0 failed; iterations 6/6), running 0, queued 0, 3 it/s, ETA -\n"
        )


# -- every request in a file ------------------------------------------------------------------------


def test_every_request_in_a_file(tmp_path: Path) -> None:
    # one core: "hold" takes it, so "b" waits (QUEUED) until "hold" is cancelled
    f = requests_file(
        tmp_path / "r.json",
        [
            {
                "request": "submit",
                "jobs": [
                    job("hold", "sleep 30"),
                    job("b", "true"),
                    job("c", "true", dependencies={"after": ["b"]}),
                ],
            },
            {"request": "jobStatus", "jobNames": ["hold", "b"]},
            {"request": "jobInfo", "jobNames": ["hold"], "params": {"withChilds": True}},
            {"request": "listJobs"},
            {"request": "resourcesInfo"},
            {"request": "status"},
            {"request": "status", "options": {"allJobsFinished": True}},
            {"request": "cancelJob", "jobNames": ["b"]},
            {"request": "removeJob", "jobNames": ["c"]},
            {"request": "cancelJob", "jobNames": ["hold"]},
            {"request": "submit", "jobs": [job("a", "echo a > a.out")]},
            {"request": "control", "command": "finishAfterAllTasksDone"},
        ],
    )
    t = time.monotonic()
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--nodes", "1", cwd=tmp_path)
    assert time.monotonic() - t < 10  # "hold" was killed, not waited for
    assert proc.returncode == 1  # two jobs were cancelled
    assert before_summary(proc) == []
    assert lines(proc)[:2] == [
        "qcgpj-async:   CANCELED b: cancelled before it started",
        "qcgpj-async:   OMITTED c: dependency b ended CANCELED",
    ]
    assert lines(proc)[-1] == (
        "qcgpj-async: 3 jobs: 1 succeeded, 2 cancelled; report: " + summary(proc).group(6)
    )
    got = replies(tmp_path)
    assert [(n, name) for n, name, _ in got] == [
        (1, "submit"),
        (2, "jobStatus"),
        (3, "jobInfo"),
        (4, "listJobs"),
        (5, "resourcesInfo"),
        (6, "status"),
        (7, "status"),
        (8, "cancelJob"),
        (9, "removeJob"),
        (10, "cancelJob"),
        (11, "submit"),
        (12, "control"),
    ]
    r = {n: reply for n, _, reply in got}
    assert all(reply["code"] == 0 for reply in r.values())
    assert r[1]["data"] == {"submitted": 3, "jobs": ["hold", "b", "c"]}
    assert r[1]["message"] == "3 jobs submitted"
    statuses = r[2]["data"]["jobs"]
    assert statuses["hold"]["data"]["status"] in ("SCHEDULED", "EXECUTING")
    assert statuses["b"] == {"status": 0, "data": {"jobName": "b", "status": "QUEUED"}}
    info = r[3]["data"]["jobs"]["hold"]["data"]
    assert info["jobName"] == "hold" and info["runtime"]["allocation"] == "n0[0]"
    assert info["history"].startswith("\n")
    assert r[4]["data"]["length"] == 3
    assert r[4]["data"]["jobs"]["b"] == {"status": "QUEUED", "inQueue": 0}
    assert r[5]["data"] == {"total_nodes": 1, "total_cores": 1, "used_cores": 1, "free_cores": 0}
    assert r[6]["data"]["JobStats"]["TotalJobs"] == 3
    assert r[6]["data"]["Resources"]["UsedCores"] == 1
    assert r[7]["data"] == {"AllJobsFinished": False}
    assert r[8]["data"] == {"canceled": 1}
    assert r[9]["data"] == {"removed": 1}  # "c" was OMITTED when "b" was cancelled
    assert r[10]["data"] == {"canceled": 1}
    assert r[11]["data"] == {"submitted": 1, "jobs": ["a"]}
    assert r[12] == {"code": 0, "message": "finishAfterAllTasksDone command accepted"}
    assert (tmp_path / "a.out").read_text() == "a\n"
    final = json.loads((service_dir(tmp_path) / "final_status.json").read_text())
    assert final["JobStats"] == {
        "TotalJobs": 3,
        "InScheduleJobs": 0,
        "FailedJobs": 0,
        "FinishedJobs": 3,
        "ExecutingJobs": 0,
    }
    assert final["Resources"]["UsedCores"] == 0


def test_finish_request_stops_at_once(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {"request": "submit", "jobs": [job("s", "sleep 30", iteration={"stop": 3})]},
            {"request": "finish"},
            {"request": "submit", "jobs": [job("never", "echo x > never.out")]},
        ],
    )
    t = time.monotonic()
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--nodes", "2", cwd=tmp_path)
    assert time.monotonic() - t < 10
    assert proc.returncode == 1
    assert lines(proc)[-1].startswith("qcgpj-async: 1 job: 0 succeeded, 1 cancelled; ")
    got = replies(tmp_path)
    assert [name for _, name, _ in got] == ["submit", "finish"]  # nothing after finish
    assert set(got[1][2]["data"]) == {"when"}
    assert not (tmp_path / "never.out").exists()
    report = [
        json.loads(x) for x in (service_dir(tmp_path) / "jobs.report").read_text().splitlines()
    ]
    # the two running iterations were killed; the queued third one never ran
    assert {e["name"]: e["state"] for e in report} == {
        "s:0": "CANCELED",
        "s:1": "CANCELED",
        "s:2": "CANCELED",
        "s": "CANCELED",
    }
    by_name = {e["name"]: e for e in report}
    assert by_name["s:2"]["runtime"] == {} and "allocation" in by_name["s:0"]["runtime"]
    assert report[-1]["iterations"] == {
        "start": 0,
        "stop": 3,
        "total": 3,
        "finished": 3,
        "failed": 3,
    }


def test_iterations_that_never_ran_are_reported(tmp_path: Path) -> None:
    # as the original: one report line per ended iteration, also for those
    # cancelled while queued or omitted by an a:${it} dependency
    f = requests_file(
        tmp_path / "r.json",
        [
            {
                "request": "submit",
                "jobs": [
                    {"name": "a", "execution": {"exec": "false"}, "iteration": {"stop": 2}},
                    {
                        "name": "b",
                        "execution": {"exec": "true"},
                        "iteration": {"stop": 2},
                        "dependencies": {"after": ["a:${it}"]},
                    },
                    {
                        "name": "q",
                        "execution": {"exec": "sleep", "args": ["30"]},
                        "iteration": {"stop": 6},
                    },
                ],
            },
            {"request": "cancelJob", "jobNames": ["q"]},
        ],
    )
    for fmt in ("json", "text"):
        wd = tmp_path / fmt
        proc = qcgpj(
            "--file-path",
            f,
            "--wd",
            str(wd),
            "--nodes",
            "4",
            "--kill-grace",
            "1",
            "--report-format",
            fmt,
            cwd=tmp_path,
        )
        assert proc.returncode == 1
        text = (service_dir(wd) / "jobs.report").read_text()
        if fmt == "json":
            states = {e["name"]: e for e in map(json.loads, text.splitlines())}
        else:
            states = {
                m.group(1): m.group(2)
                for m in re.finditer(r"^(\S+) \((\w+)\)$", text, re.MULTILINE)
            }
        expected = {
            "a:0": "FAILED",
            "a:1": "FAILED",
            "b:0": "OMITTED",
            "b:1": "OMITTED",
            **{f"q:{i}": "CANCELED" for i in range(6)},
        }
        for name, state in expected.items():
            entry = states[name]
            assert (entry["state"] if fmt == "json" else entry) == state, (name, entry)
        if fmt == "json":
            assert states["q:5"]["runtime"] == {}
            assert [h["state"] for h in states["b:1"]["history"]] == ["OMITTED"]
        log = (service_dir(wd) / "service.log").read_text()
        assert " INFO b:1 OMITTED\n" in log and " INFO q:5 CANCELED\n" in log


def test_resume_without_wd_goes_on_in_the_resumed_runs_wd(tmp_path: Path) -> None:
    run = tmp_path / "run"
    f = batch(tmp_path / "r.json", job("a", "echo a > a.out"))
    assert qcgpj("--file-path", f, "--wd", str(run), "--nodes", "1", cwd=tmp_path).returncode == 0
    (first,) = run.glob(".qcgpjm-service-*")
    for target in (run, first):  # a working directory, or a service directory in it
        proc = qcgpj("--resume", str(target), "--nodes", "1", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "1 job: 1 succeeded" in proc.stderr  # restored, not run again
    assert len(list(run.glob(".qcgpjm-service-*"))) == 3
    assert not list(tmp_path.glob(".qcgpjm-service-*"))
    assert (run / "a.out").read_text() == "a\n"


def test_request_errors_in_a_file(tmp_path: Path) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {"request": "submit", "jobs": [job("hold", "sleep 30")]},
            {"request": "removeJob", "jobNames": ["hold"]},
            {"request": "jobStatus"},
            {"request": "control"},
            {"request": "control", "command": "X"},
            {"request": "cancelJob", "jobNames": ["hold"]},
            {"request": "control", "command": "finishAfterAllTasksDone"},
            {"request": "control", "command": "finishAfterAllTasksDone"},
        ],
    )
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), "--nodes", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert before_summary(proc) == [
        "qcgpj-async: request #2 (removeJob): hold: Job 'hold' not finished - can not be removed",
        "qcgpj-async: request #3 (jobStatus) rejected: Invalid request: Wrong job status request"
        " - missing job names",
        "qcgpj-async: request #4 (control) rejected: Invalid request: Wrong control request - "
        "missing command",
        "qcgpj-async: request #5 (control) rejected: Invalid request: Wrong control request - "
        'unknown command "X"',
        "qcgpj-async: request #8 (control) rejected: Finish request already requested",
    ]


# -- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [
        ("SIGINT", 130, "interrupted"),
        # what Slurm sends at the time limit or on scancel: the jobs must not outlive the run
        ("SIGTERM", 143, "terminated"),
    ],
)
def test_signal_stops_every_job(tmp_path: Path, sig: str, code: int, word: str) -> None:
    f = requests_file(
        tmp_path / "r.json",
        [
            {
                "request": "submit",
                "jobs": [job("s", "echo $$ > pid.${it}; exec sleep 30", iteration={"stop": 2})],
            }
        ],
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcgpj_async",
            "--file-path",
            f,
            "--wd",
            str(tmp_path),
            "--nodes",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        for i in range(2):
            pid_file = tmp_path / f"pid.{i}"
            while not pid_file.exists() or not pid_file.read_text().strip():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)  # a file the job writes
            pids.append(int(pid_file.read_text()))
        t = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=TIMEOUT)
        assert time.monotonic() - t < 5
        assert proc.returncode == code
        first, *closing, last = err.splitlines()
        # at once: what happens now; then the summary, stopped jobs counted as cancelled
        assert first == (
            "qcgpj-async: stopping 1 job (SIGTERM; SIGKILL in 10 s; Ctrl-C again to kill now)"
        )
        assert sorted(closing[:2]) == [
            "qcgpj-async:   CANCELED s:0: killed by SIGTERM",
            "qcgpj-async:   CANCELED s:1: killed by SIGTERM",
        ]
        assert SUMMARY.fullmatch(closing[-1]) and " 1 job: 0 succeeded, 1 cancelled; " in err
        assert last == f"qcgpj-async: {word}: every job was stopped"
        deadline = time.monotonic() + TIMEOUT
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.01)  # SIGKILL is delivered asynchronously
        assert not [p for p in pids if alive(p)]
        assert (service_dir(tmp_path) / "final_status.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


# -- the console script ---------------------------------------------------------------------------------


def test_console_script(tmp_path: Path) -> None:
    script = shutil.which("qcgpj-async", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the qcgpj-async console script is not installed")
    proc = qcgpj("--version", cwd=tmp_path, exe=(script,))
    assert proc.returncode == 0 and proc.stdout.strip() == f"qcgpj_async {__version__}"
    f = batch(tmp_path / "r.json", job("a", "echo hi > a.out"))
    proc = qcgpj("--file-path", f, "--wd", str(tmp_path), cwd=tmp_path, exe=(script,))
    assert proc.returncode == 0
    assert (tmp_path / "a.out").read_text() == "hi\n"
