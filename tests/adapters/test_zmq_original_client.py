"""The ORIGINAL client (qcg-pilotjob 0.14.2 ``Manager``) against ``python -m qcgpj_async --net``.

Real processes, real sockets. The expected results are the original
service's (checked side by side once; see benchmarks/zmq_bench.py for a run
of both).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zmq_helpers import OriginalClients, Service, job_script, require_original_client

require_original_client()

from qcg.pilotjob.api import errors  # noqa: E402
from qcg.pilotjob.api.job import Jobs  # noqa: E402

FINAL = {"SUCCEED", "FAILED", "CANCELED", "OMITTED"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("net"), "--nodes", "n0:4,n1:4")
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[OriginalClients]:
    clients = OriginalClients(tmp_path)
    try:
        yield clients
    finally:
        clients.close()


def test_address_file_status_and_localhost_binding(
    service: Service, manager: OriginalClients
) -> None:
    m = manager(service.address)
    system = m.system_status()["System"]
    assert service.address.startswith("tcp://127.0.0.1:")
    assert system["Zmqaddress"] == service.address
    assert system["StatusPublisher"].startswith("tcp://127.0.0.1:")
    assert system["StatusPublisher"] != service.address
    assert system["InstanceId"] == "svc"
    assert m.resources()["total_cores"] == 8


def test_submit_plain_wait4_and_output(service: Service, manager: OriginalClients) -> None:
    m = manager(service.address)
    names = m.submit(
        Jobs().add(name="hello", exec="/bin/echo", args=["hi", 42], stdout="hello.out")
    )
    assert names == ["hello"]
    assert m.wait4(names, timeout=20) == {"hello": "SUCCEED"}
    assert (service.wd / "hello.out").read_text() == "hi 42\n"
    assert m.status("hello") == {
        "jobs": {"hello": {"status": 0, "data": {"jobName": "hello", "status": "SUCCEED"}}}
    }


def test_iterations_status_and_info_parsed_with_childs(
    service: Service, manager: OriginalClients
) -> None:
    m = manager(service.address)
    m.submit(Jobs().add(name="it", exec="/bin/true", iteration=5))
    # Iteration names are waited on through IFI events.
    assert m.wait4(["it:0", "it:4"], timeout=20) == {"it:0": "SUCCEED", "it:4": "SUCCEED"}
    assert m.wait4("it", timeout=20) == {"it": "SUCCEED"}
    st = m.status(["it", "it:3"])["jobs"]
    assert st["it:3"] == {"status": 0, "data": {"jobName": "it:3", "status": "SUCCEED"}}

    raw = m.info("it", withChilds=True)["jobs"]["it"]
    assert raw["status"] == 0
    data = raw["data"]
    assert data["iterations"] == {"start": 0, "stop": 5, "total": 5, "finished": 5, "failed": 0}
    assert [c["iteration"] for c in data["childs"]] == [0, 1, 2, 3, 4]
    assert data["history"].startswith("\n")

    info = m.info_parsed("it", withChilds=True)["it"]
    assert info.name == "it" and info.status == "SUCCEED"
    assert info.iterations["total"] == 5
    assert [c.name for c in info.childs] == [f"it:{i}" for i in range(5)]
    for child in info.childs:
        assert child.status == "SUCCEED"
        assert child.total_cores == 1
        assert set(child.nodes) <= {"n0", "n1"}
        assert child.time is not None and child.time.total_seconds() < 10
        assert child.wdir == str(service.wd)
    plain = m.info_parsed("it")["it"]
    assert plain.childs is None


def test_dependencies_and_omitted(service: Service, manager: OriginalClients) -> None:
    m = manager(service.address)
    jobs = (
        Jobs()
        .add(name="first", exec="/bin/sleep", args=["0.3"])
        .add(name="second", exec="/bin/true", after="first")
        .add(name="bad", exec="/bin/false")
        .add(name="never", exec="/bin/true", after=["bad", "first"])
    )
    assert m.submit(jobs) == ["first", "second", "bad", "never"]
    assert m.wait4(["first", "second", "bad", "never"], timeout=20) == {
        "first": "SUCCEED",
        "second": "SUCCEED",
        "bad": "FAILED",
        "never": "OMITTED",
    }
    # (info_parsed reads the history from the wrong key - the original client's
    # bug - so the raw info is used here.)
    info = m.info(["first", "second"])["jobs"]
    first, second = (info[n]["data"]["history"].splitlines() for n in ("first", "second"))
    started = next(h for h in second if h.endswith("EXECUTING"))
    ended = next(h for h in first if h.endswith("SUCCEED"))
    assert started.rsplit(":", 1)[0] >= ended.rsplit(":", 1)[0]
    bad = m.info("bad")["jobs"]["bad"]["data"]
    assert bad["runtime"]["exit_code"] == "1"


def test_add_std_with_resource_ranges(service: Service, manager: OriginalClients) -> None:
    m = manager(service.address)
    jobs = Jobs()
    jobs.add_std(
        {
            "name": "range",
            "execution": {"exec": "/bin/true"},
            "resources": {"numCores": {"min": 2, "max": 3}},
        }
    )
    jobs.add_std(
        {
            "name": "twonodes",
            "execution": {"exec": "/bin/true"},
            "resources": {"numNodes": {"exact": 2}, "numCores": {"exact": 2}},
        }
    )
    names = m.submit(jobs)
    assert m.wait4(names, timeout=20) == {"range": "SUCCEED", "twonodes": "SUCCEED"}
    info = m.info_parsed(names)
    assert 2 <= info["range"].total_cores <= 3
    assert sorted(info["twonodes"].nodes) == ["n0", "n1"]
    assert all(len(cores) == 2 for cores in info["twonodes"].nodes.values())

    too_big = Jobs()
    too_big.add_std(
        {"name": "huge", "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"min": 9}}}
    )
    # It ends FAILED with the numbers (the seeds' rule), instead of failing the request.
    assert m.submit(too_big) == ["huge"]
    assert m.wait4("huge", timeout=20) == {"huge": "FAILED"}
    assert m.list()["huge"]["messages"].startswith("Not enough resources for job huge: needs 9")


def test_unknown_jobs(service: Service, manager: OriginalClients) -> None:
    # As with the original service: an unknown name fails status, info and wait4;
    # cancel and remove answer success with the errors by name (the client returns).
    m = manager(service.address)
    with pytest.raises(errors.ConnectionError, match="Job 'nope' doesn't exist"):
        m.status("nope")
    with pytest.raises(errors.ConnectionError, match="doesn't exist"):
        m.info("nope")
    with pytest.raises(errors.ConnectionError, match="Job 'nope' doesn't exist"):
        m.wait4("nope", timeout=5)
    assert m.cancel("nope") is None
    assert m.remove("nope") is None


def test_list_cancel_remove_resources(service: Service, manager: OriginalClients) -> None:
    m = manager(service.address)
    m.submit(Jobs().add(name="long", exec="/bin/sleep", args=["30"], numCores=2))
    listed = m.list()
    assert listed["long"]["status"] in {"QUEUED", "SCHEDULED", "EXECUTING"}
    m.remove("long")  # not finished: an error by name in the reply, the client returns
    assert "long" in m.list()
    m.cancel("long")
    assert m.wait4("long", timeout=20) == {"long": "CANCELED"}
    assert m.resources() == {"total_nodes": 2, "total_cores": 8, "used_cores": 0, "free_cores": 8}
    m.remove("long")
    assert "long" not in m.list()
    # A removed name can be used again. (By a new client: this one may still
    # hold the first job's JFI, which its next wait4 would take - the
    # original client's behaviour, with the original service too.)
    m2 = manager(service.address)
    m2.submit(Jobs().add(name="long", exec="/bin/true"))
    assert m2.wait4("long", timeout=20) == {"long": "SUCCEED"}


def test_wait4all_is_event_driven(service: Service, manager: OriginalClients) -> None:
    # A client polling without events would wait DEFAULT_POLL_DELAY (5 s) per
    # round; NOJ ends this wait as soon as the jobs are done.
    m = manager(service.address)
    m.submit(
        Jobs()
        .add(name="all1", exec="/bin/sleep", args=["0.3"])
        .add(name="all2", exec="/bin/sleep", args=["0.3"], iteration=2)
    )
    m.wait4all(timeout_secs=4)
    st = m.status(["all1", "all2"])["jobs"]
    assert {v["data"]["status"] for v in st.values()} == {"SUCCEED"}
    assert m.send_request({"request": "status", "options": {"allJobsFinished": True}})["data"] == {
        "AllJobsFinished": True
    }


def test_wait4_any_job_finish(service: Service, manager: OriginalClients) -> None:
    m = manager(service.address)
    m.submit(Jobs().add(name="any1", exec="/bin/sleep", args=["0.2"]))
    assert m.wait4_any_job_finish(timeout_secs=10) == ("any1", "SUCCEED")


def test_job_gets_the_address(service: Service, manager: OriginalClients) -> None:
    m = manager(service.address)
    m.submit(
        Jobs().add(
            name="env", exec="/bin/sh", args=["-c", "echo $QCG_PM_ZMQ_ADDRESS"], stdout="env.out"
        )
    )
    assert m.wait4("env", timeout=20) == {"env": "SUCCEED"}
    assert (service.wd / "env.out").read_text().strip() == service.address


def test_job_submits_jobs_to_its_own_pilot(
    service: Service, manager: OriginalClients, tmp_path: Path
) -> None:
    # An application controller running AS a job: the original client with
    # no address takes QCG_PM_ZMQ_ADDRESS.
    controller = """
import json, logging
from qcg.pilotjob.api.manager import Manager
from qcg.pilotjob.api.job import Jobs
m = Manager(cfg={"log_file": "controller-api.log"})
names = m.submit(Jobs().add(name="child", exec="/bin/echo", args=["from child"],
                            stdout="child.out", iteration=2))
print(json.dumps(m.wait4(names)))
"""
    m = manager(service.address)
    cmd = job_script(tmp_path, "ctl", controller)
    m.submit(
        Jobs().add(
            name="controller",
            exec=cmd[0],
            args=cmd[1:],
            stdout="controller.out",
            stderr="controller.err",
        )
    )
    assert m.wait4("controller", timeout=30) == {"controller": "SUCCEED"}, (
        service.wd / "controller.err"
    ).read_text()
    out = json.loads((service.wd / "controller.out").read_text())
    assert out == {"child": "SUCCEED"}
    assert m.info_parsed("child")["child"].iterations["finished"] == 2


def test_garbage_frames_do_not_stop_the_service(service: Service, manager: OriginalClients) -> None:
    bad: list[Any] = [
        b"not json at all",
        b"\xff\xfe\x00binary",
        b"[1, 2, 3]",
        b'"a string"',
        b"{}",
        b'{"request": 7}',
        b'{"request": "bogus"}',
        [b'{"request": "status"}', b"second frame"],
        b"[" * 100_000,
        b" " * (64 * 1024 * 1024 + 1),
    ]
    for frame in bad:
        reply = service.request(frame, timeout=30)
        assert reply["code"] == 1, reply
        assert reply["message"].startswith("Invalid request"), reply
    assert (
        service.request(b'{"request": "bogus"}')["message"]
        == "Invalid request: Unknown request name: bogus"
    )
    assert service.request(b"[1]")["message"] == "Invalid request: Invalid request"
    # Still serving, for every client.
    assert service.request({"request": "resourcesInfo"})["code"] == 0
    m = manager(service.address)
    m.submit(Jobs().add(name="after-garbage", exec="/bin/true"))
    assert m.wait4("after-garbage", timeout=20) == {"after-garbage": "SUCCEED"}


def test_finish_ends_the_service(tmp_path: Path, manager: OriginalClients) -> None:
    svc = Service(tmp_path, "--nodes", "2")
    try:
        m = manager(svc.address)
        m.submit(Jobs().add(name="done", exec="/bin/true"))
        assert m.wait4("done", timeout=20) == {"done": "SUCCEED"}
        m.submit(Jobs().add(name="stuck", exec="/bin/sleep", args=["60"]))
        m.finish()
        assert svc.wait(20) == 1  # a job was stopped: not every job succeeded
        final = json.loads((svc.service_dir / "final_status.json").read_text())
        assert final["System"]["Ifaces"] == ["ZMQ"]
        assert final["System"]["Zmqaddress"] == svc.address
        assert final["JobStats"]["TotalJobs"] == 2
        assert final["JobStats"]["FinishedJobs"] == 2  # SUCCEED + CANCELED
        report = [
            json.loads(line) for line in (svc.service_dir / "jobs.report").read_text().splitlines()
        ]
        assert {r["name"]: r["state"] for r in report} == {"done": "SUCCEED", "stuck": "CANCELED"}
        assert "1 succeeded, 1 cancelled" in svc.stderr_text()
    finally:
        svc.close()


def test_finish_lets_a_waiting_client_see_the_end(tmp_path: Path, manager: OriginalClients) -> None:
    # Client A waits for a running and a queued job; client B sends finish. A's
    # wait4 returns with both CANCELED: their final events are published before
    # the interface closes.
    svc = Service(tmp_path, "--nodes", "1", "--kill-grace", "1")
    try:
        a, b = manager(svc.address), manager(svc.address)
        names = a.submit(
            Jobs()
            .add(name="long", exec="/bin/sleep", args=["30"])
            .add(name="queued", exec="/bin/sleep", args=["30"])
        )
        got: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: got.update(a.wait4(names, timeout=20)))
        waiter.start()
        b.finish()
        waiter.join(30)
        assert got == {"long": "CANCELED", "queued": "CANCELED"}
        assert svc.wait(20) == 1
    finally:
        svc.close()


def test_finish_after_all_still_answers_the_last_requests(
    tmp_path: Path, manager: OriginalClients
) -> None:
    # As the original: jobs submitted after finishAfterAllTasksDone still run, and
    # a client's wait4all right after its jobs ended is answered (--net-linger).
    svc = Service(tmp_path, "--nodes", "2")
    try:
        m = manager(svc.address)
        first = m.submit(Jobs().add(name="first", exec="/bin/sleep", args=["1"]))
        m.send_request({"request": "control", "command": "finishAfterAllTasksDone"})
        names = m.submit(Jobs().add(name="late", exec="/bin/sleep", args=["0.3"]))
        assert m.wait4(first + names, timeout=20) == {"first": "SUCCEED", "late": "SUCCEED"}
        m.wait4all(timeout_secs=5)  # answered: the service lingers after the last end
        assert svc.wait(20) == 0
    finally:
        svc.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_flags(tmp_path: Path, manager: OriginalClients) -> None:
    port, pub = _free_port(), _free_port()
    svc = Service(
        tmp_path / "a", "--net-port", str(port), "--net-pub-port", str(pub), "--nodes", "1"
    )
    try:
        assert svc.address == f"tcp://127.0.0.1:{port}"
        status = manager(svc.address).system_status()["System"]
        assert status["StatusPublisher"] == f"tcp://127.0.0.1:{pub}"
    finally:
        svc.close()
    assert svc.proc.returncode == 0
    svc = Service(
        tmp_path / "b", "--net-port-min", "40100", "--net-port-max", "40200", "--nodes", "1"
    )
    try:
        status = manager(svc.address).system_status()["System"]
        for addr in (svc.address, status["StatusPublisher"]):
            assert 40100 <= int(addr.rsplit(":", 1)[1]) < 40200
    finally:
        svc.close()


def test_file_then_net_until_finish_after_all(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.json"
    reqs.write_text(
        json.dumps(
            [
                {"request": "submit", "jobs": [{"name": "f1", "execution": {"exec": "/bin/true"}}]},
                {"request": "control", "command": "finishAfterAllTasksDone"},
            ]
        )
    )
    svc = Service(tmp_path, "--file-path", str(reqs), "--nodes", "2")
    try:
        assert svc.wait(20) == 0
        assert (svc.service_dir / "address").read_text() == svc.address
        assert "1 job: 1 succeeded" in svc.stderr_text()
    finally:
        svc.close()


def test_file_then_net_keeps_serving(tmp_path: Path, manager: OriginalClients) -> None:
    reqs = tmp_path / "reqs.json"
    reqs.write_text(
        json.dumps(
            [
                {"request": "submit", "jobs": [{"name": "f1", "execution": {"exec": "/bin/true"}}]},
            ]
        )
    )
    svc = Service(tmp_path, "--file-path", str(reqs), "--nodes", "2")
    try:
        m = manager(svc.address)
        assert m.wait4("f1", timeout=20) == {"f1": "SUCCEED"}
        assert svc.proc.poll() is None  # served on after the file's requests
        m.submit(Jobs().add(name="f2", exec="/bin/true"))
        assert m.wait4("f2", timeout=20) == {"f2": "SUCCEED"}
        assert m.system_status()["System"]["Ifaces"] == ["FILE", "ZMQ"]  # as the original
        m.finish()
        assert svc.wait(20) == 0
    finally:
        svc.close()


def test_cli_net_without_interface_is_an_error() -> None:
    import subprocess

    res = subprocess.run(
        [sys.executable, "-m", "qcgpj_async"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 2
    assert "--net" in res.stderr
