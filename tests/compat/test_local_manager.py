"""LocalManager: server arguments, cfg, start and finish, event loops and threads, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qcgpj_async.compat import Jobs, LocalManager, Manager, errors
from qcgpj_async.compat._server_args import parse_server_args

T = 60


def test_server_args_map_to_the_pilot(tmp_path: Path) -> None:
    m = LocalManager(
        [
            "--wd",
            str(tmp_path),
            "--nodes",
            "a:2,b:3",
            "--system-core",
            "--id",
            "x",
            "--log",
            "debug",
            "--report-format",
            "text",
            "--report-file",
            "r.txt",
        ]
    )
    try:
        assert m.resources() == {
            "total_nodes": 2,
            "total_cores": 5,
            "used_cores": 1,
            "free_cores": 4,
        }
        m.submit(Jobs().add(name="j", exec="/bin/true"))
        assert m.wait4("j", timeout=T) == {"j": "SUCCEED"}
        assert m.pilot_id == "x" and m.address is None
    finally:
        m.finish()
    svc = tmp_path / ".qcgpjm-service-x"
    assert (svc / "r.txt").read_text().startswith("j (SUCCEED)")
    assert "DEBUG" in (svc / "service.log").read_text()


def test_server_args_forms_and_values() -> None:
    a = parse_server_args(
        ["--nodes=4", "--resources", "LOCAL", "--kill-grace", "2.5", "--net-port", 7]
    )
    assert a.pilot == {"nodes": "4", "resources": "local", "kill_grace": 2.5}
    assert a.net and a.net_opts == {"port": 7}
    with pytest.raises(errors.WrongArgumentsError, match="^unsupported server argument 7$"):
        parse_server_args(["7"])
    net = parse_server_args(["--net-port", "5000", "--net-pub-port", "5001"])
    assert net.net and net.net_opts == {"port": 5000, "pub_port": 5001}
    with pytest.raises(errors.WrongArgumentsError, match="--log: 'loud' is not one of"):
        parse_server_args(["--log", "loud"])
    with pytest.raises(errors.WrongArgumentsError, match="--wd needs a value"):
        parse_server_args(["--wd"])
    with pytest.raises(errors.WrongArgumentsError, match="--net-port: not a number"):
        parse_server_args(["--net-port", "x"])
    with pytest.raises(errors.WrongArgumentsError, match="--system-core takes no value"):
        parse_server_args(["--system-core=1"])


@pytest.mark.parametrize(
    ("flag", "hint"),
    [
        (["--governor"], "governor mode is not supported"),
        (["--parent", "tcp://x:1"], "governor mode is not supported"),
        (["--slurm-partition-nodes", "2"], "partitioning an allocation is not supported"),
        (["--file-path", "r.json"], "qcgpj-async --file-path FILE"),
        (["--bogus"], ""),
    ],
)
def test_unsupported_server_args_are_named(flag: list[str], hint: str, tmp_path: Path) -> None:
    with pytest.raises(errors.WrongArgumentsError) as e:
        LocalManager(["--wd", str(tmp_path), *flag])
    assert str(e.value).startswith(f"unsupported server argument {flag[0]}")
    assert hint in str(e.value)
    assert not list(tmp_path.glob(".qcgpjm-service-*"))  # nothing was started


def test_noop_flags_and_unknown_cfg_keys_are_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qcgpj_async.compat")
    args = [
        "--wd",
        str(tmp_path),
        "--nodes",
        "1",
        "--disable-nl",
        "--tags",
        "a,b",
        "--nl-start-method",
        "ssh",
        "--envschema",
        "slurm",
        "--enable-rt-stats",
        "--show-progress",
    ]
    m = LocalManager(args, {"init_timeout": 5, "no_such_key": 1, "poll_delay": 0.5})
    try:
        assert m.resources()["total_cores"] == 1
    finally:
        m.finish()
    notes = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert [n.split()[2] for n in notes] == [
        "--disable-nl",
        "--tags",
        "--nl-start-method",
        "--envschema",
        "--enable-rt-stats",
        "--show-progress",
    ]


def test_client_log_file_from_cfg(tmp_path: Path) -> None:
    log = tmp_path / "client" / "api.log"
    m = LocalManager(
        ["--wd", str(tmp_path), "--nodes", "1"], {"log_file": str(log), "log_level": "debug"}
    )
    m.finish()
    assert "started" in log.read_text()
    assert m.log_handler is None


def test_a_pilot_that_cannot_start_is_a_service_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.ServiceError, match="^Service not started: .*file"):
        LocalManager(["--wd", str(tmp_path / "file" / "wd"), "--nodes", "1"])
    with pytest.raises(errors.ServiceError, match="^Service not started"):
        LocalManager(["--wd", str(tmp_path), "--nodes", "0"])


def test_works_while_an_event_loop_runs_on_this_thread(tmp_path: Path) -> None:
    # Jupyter: the cell's synchronous code runs inside the kernel's running loop.
    async def cell() -> dict[str, str]:
        m = LocalManager(["--wd", str(tmp_path), "--nodes", "2"])
        try:
            names = m.submit(Jobs().add(name="j", exec="/bin/true", iteration=3))
            return m.wait4(names, timeout=T)
        finally:
            m.finish()

    assert asyncio.run(cell()) == {"j": "SUCCEED"}


def test_finish_stops_running_jobs(tmp_path: Path) -> None:
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "1", "--kill-grace", "5"])
    m.submit(Jobs().add(name="s", exec="/bin/sleep", args=["60"]))
    with pytest.raises(errors.TimeoutElapsed):
        m.wait4("s", timeout=0.3)
    pid = int(m.info("s")["jobs"]["s"]["data"]["runtime"]["pid"])
    m.finish()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no process of the job is left
    report = (tmp_path / f".qcgpjm-service-{m.pilot_id}" / "jobs.report").read_text()
    assert json.loads(report.splitlines()[-1])["name"] == "s"


def test_a_send_request_finish_stops_the_manager(tmp_path: Path) -> None:
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "1"])
    assert m.send_request({"request": "finish"})["code"] == 0
    m.finish()  # still the way to release the thread
    with pytest.raises(errors.ConnectionError, match="Not connected"):
        m.finish()


def test_an_unfinished_manager_does_not_hang_the_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from qcgpj_async.compat import LocalManager, Jobs
        m = LocalManager(["--wd", {str(tmp_path)!r}, "--nodes", "1", "--kill-grace", "1"])
        m.submit(Jobs().add(name="s", exec="/bin/sleep", args=["60"]))
        try:
            m.wait4("s", timeout=0.3)
        except Exception:
            pass
        print(m.info("s")["jobs"]["s"]["data"]["runtime"]["pid"])
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=T)
    assert run.returncode == 0, run.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(int(run.stdout), 0)


def test_kill_manager_process(tmp_path: Path) -> None:
    m = LocalManager(["--wd", str(tmp_path), "--nodes", "1"])
    m.submit(Jobs().add(name="s", exec="/bin/sleep", args=["60"]))
    with pytest.raises(errors.TimeoutElapsed):
        m.wait4("s", timeout=0.3)
    pid = int(m.info("s")["jobs"]["s"]["data"]["runtime"]["pid"])
    m.kill_manager_process()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_jobs_builder_as_the_original() -> None:
    orig = pytest.importorskip("qcg.pilotjob.api.job", reason="the original is not installed")
    cases = [
        {
            "name": "a",
            "exec": "/bin/date",
            "args": "x",
            "numCores": 2,
            "iteration": 3,
            "after": "b",
        },
        {
            "name": "b",
            "script": "echo",
            "numNodes": {"min": 1, "max": 2},
            "iteration": [1, 2],
            "wt": "10m",
            "modules": ["m"],
            "venv": "v",
            "model": "threads",
            "model_opts": {},
        },
        {"name": "c", "exec": "x", "iteration": {"start": 2, "stop": 4}, "stdout": "o", "wd": "w"},
    ]
    ours, theirs = Jobs(), orig.Jobs()
    for c in cases:
        ours.add(dict(c))
        theirs.add(dict(c))
    ours.add_std({"name": "d", "execution": {"script": "s", "args": [], "env": {}}})
    theirs.add_std({"name": "d", "execution": {"script": "s", "args": [], "env": {}}})
    assert ours.ordered_jobs() == theirs.ordered_jobs()
    assert ours.jobs() == theirs.jobs() and ours.job_names() == theirs.job_names()
    ours.remove("a")
    theirs.remove("a")
    assert ours.ordered_job_names() == theirs.ordered_job_names() == ["b", "c", "d"]
    bad = [
        {"exec": "x", "bogus": 1},
        {"exec": "x", "numCores": "2"},
        {"script": "x", "exec": "y"},
        {"args": []},
        {"exec": "x", "numCores": {"exact": 1, "foo": 2}},
        {"exec": "x", "iteration": {"start": 1}},
        {"exec": "x", "iteration": {"stop": 1, "values": [1]}},
        {"exec": "x", "iteration": 70000},
    ]
    for attrs in bad:
        with pytest.raises(errors.InvalidJobDescriptionError) as mine:
            Jobs().add(dict(attrs, name="n"))
        with pytest.raises(orig.InvalidJobDescriptionError) as original:
            orig.Jobs().add(dict(attrs, name="n"))
        assert str(mine.value) == str(original.value)
    with pytest.raises(errors.JobNotDefinedError):
        Jobs().remove("nope")


def test_jobs_files_round_trip(tmp_path: Path) -> None:
    jobs = Jobs().add(name="a", exec="/bin/true").add(name="b", script="echo", after="a")
    jobs.save_to_file(tmp_path / "j.json")
    loaded = Jobs()
    loaded.load_from_file(tmp_path / "j.json")
    assert loaded.ordered_jobs() == jobs.ordered_jobs()
    with pytest.raises(errors.FileError, match="nope.json"):
        Jobs().load_from_file(tmp_path / "nope.json")
    with pytest.raises(errors.InvalidJobDescriptionError, match="already in list"):
        loaded.load_from_file(tmp_path / "j.json")


def test_manager_without_pyzmq_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zmq", None)
    monkeypatch.delitem(sys.modules, "qcgpj_async.adapters.zmq", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'qcgpj_async\[zmq\]'"):
        Manager("tcp://127.0.0.1:1")
    with pytest.raises(ImportError, match=r"qcgpj_async\[zmq\]"):
        LocalManager(["--net"])


def test_manager_connect_failure_is_a_connection_error() -> None:
    pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'qcgpj_async[zmq]')")
    with pytest.raises(errors.ConnectionError, match=r"^Failed to connect to tcp://127.0.0.1:9"):
        Manager("127.0.0.1:9", {"init_timeout": 0.3})


def test_manager_talks_to_a_qcgpj_async_net_service(tmp_path: Path) -> None:
    pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'qcgpj_async[zmq]')")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcgpj_async",
            "--net",
            "--wd",
            str(tmp_path),
            "--nodes",
            "2",
            "--id",
            "s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "... serving at tcp://..." once bound
        assert "serving at" in line, line
        address = (tmp_path / ".qcgpjm-service-s" / "address").read_text()
        m = Manager(address, {"poll_delay": 1})
        names = m.submit(Jobs().add(name="j", exec="/bin/true", iteration=2))
        assert m.wait4(names, timeout=T) == {"j": "SUCCEED"}
        assert m.wait4_any_job_finish(T)[1] == "SUCCEED"
        assert m.status("j:1")["jobs"]["j:1"]["data"]["status"] == "SUCCEED"
        m.finish()
        assert proc.wait(T) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_manager_talks_to_the_originals_service(tmp_path: Path) -> None:
    pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'qcgpj_async[zmq]')")
    pytest.importorskip("qcg.pilotjob.service", reason="the original is not installed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcg.pilotjob.service",
            "--net",
            "--net-port",
            str(port),
            "--wd",
            str(tmp_path),
            "--nodes",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        m = Manager(f"127.0.0.1:{port}", {"poll_delay": 1, "init_timeout": T})
        names = m.submit(
            Jobs().add(name="j", exec="/bin/true", iteration=2).add(name="k", exec="/bin/false")
        )
        assert m.wait4(names, timeout=T) == {"j": "SUCCEED", "k": "FAILED"}
        assert m.status("j:1")["jobs"]["j:1"]["data"]["status"] == "SUCCEED"
        assert m.info_parsed("j")["j"].iterations["total"] == 2
        assert m.resources()["total_cores"] == 2
        m.finish()
        assert proc.wait(T) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
