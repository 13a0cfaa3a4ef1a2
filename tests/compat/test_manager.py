"""Every method of the original's API reference (seeds 001, section 14 of 000), on a
LocalManager and on a Manager over ZMQ, reply shapes checked field by field."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from shapes import (
    FINAL,
    check_info,
    check_list,
    check_resources,
    check_status,
    check_system_status,
)

from qcgpj_async.compat import JobInfo, Jobs, Manager, errors

T = 60  # seconds: every wait here fails loudly instead of hanging


def _mixed_jobs() -> Jobs:
    return (
        Jobs()
        .add(name="it", exec="/bin/echo", args=["${it}"], stdout="it.${it}", iteration=3)
        .add(name="plain", script="echo plain", stdout="plain.out", numCores=2)
        .add(name="bad", exec="/bin/false")
        .add(name="dep", exec="/bin/true", after="bad")
        .add_std({"name": "std", "execution": {"exec": "/bin/true"}, "resources": {"numNodes": 2}})
    )


def test_resources_and_system_status(manager: Any) -> None:
    res = manager.resources()
    check_resources(res)
    assert res == {"total_nodes": 2, "total_cores": 4, "used_cores": 0, "free_cores": 4}
    status = manager.system_status()
    check_system_status(status)
    assert status["Resources"]["TotalCores"] == 4
    assert status["System"]["InstanceId"] == "t"
    reply = manager.send_request({"request": "resourcesInfo"})
    assert reply == {"code": 0, "data": res}


def test_submit_wait4_status_info(manager: Any, tmp_path: Path) -> None:
    names = manager.submit(_mixed_jobs())
    assert names == ["it", "plain", "bad", "dep", "std"]
    assert manager.wait4(names, timeout=T) == {
        "it": "SUCCEED",
        "plain": "SUCCEED",
        "bad": "FAILED",
        "dep": "OMITTED",
        "std": "SUCCEED",
    }
    assert check_status(manager.status(["plain", "it:2", "dep"]), ["plain", "it:2", "dep"]) == {
        "plain": "SUCCEED",
        "it:2": "SUCCEED",
        "dep": "OMITTED",
    }
    assert check_status(manager.status("bad"), ["bad"]) == {"bad": "FAILED"}
    info = check_info(manager.info(["plain", "it", "bad", "std"]), ["plain", "it", "bad", "std"])
    assert info["plain"]["runtime"]["exit_code"] == "0"
    assert info["plain"]["runtime"]["wd"] == str(tmp_path)
    cores = JobInfo._parse_allocation(info["plain"]["runtime"]["allocation"]).values()
    assert sum(len(c) for c in cores) == 2
    assert info["std"]["runtime"]["allocation"].count("[") == 2  # one core on each node
    assert info["bad"]["runtime"]["exit_code"] == "1"
    assert info["it"]["iterations"] == {
        "start": 0,
        "stop": 3,
        "total": 3,
        "finished": 3,
        "failed": 0,
    }
    assert "childs" not in info["it"]
    childs = check_info(manager.info("it", withChilds=True), ["it"])["it"]["childs"]
    assert [c["iteration"] for c in childs] == [0, 1, 2]
    assert {c["state"] for c in childs} == {"SUCCEED"}
    assert (tmp_path / "it.2").read_text() == "2\n"


def test_info_parsed(manager: Any, tmp_path: Path) -> None:
    names = manager.submit(_mixed_jobs())
    manager.wait4(names, timeout=T)
    parsed = manager.info_parsed(["plain", "it"], withChilds=True)
    plain, it = parsed["plain"], parsed["it"]
    assert isinstance(plain, JobInfo)
    assert (plain.name, plain.status, plain.total_cores) == ("plain", "SUCCEED", 2)
    assert sum(len(c) for c in plain.nodes.values()) == 2
    assert plain.wdir == str(tmp_path)
    assert isinstance(plain.time, dt.timedelta)
    assert plain.history[0].endswith(": QUEUED") and plain.history[-1].endswith(": SUCCEED")
    assert it.iterations["total"] == 3 and it.nodes == {} and it.total_cores == 0
    assert [c.name for c in it.childs] == ["it:0", "it:1", "it:2"]
    assert [c.iteration for c in it.childs] == [0, 1, 2]
    assert all(c.status == "SUCCEED" and c.total_cores == 1 for c in it.childs)
    assert '"name": "plain"' in str(plain)


def test_list_cancel_remove(manager: Any) -> None:
    manager.submit(Jobs().add(name="done", exec="/bin/true"))
    manager.wait4("done", timeout=T)
    manager.submit(Jobs().add(name="sleeper", exec="/bin/sleep", args=["60"]))
    manager.submit(Jobs().add(name="waiting", exec="/bin/true", numCores=4))  # after sleeper
    listed = manager.list()
    assert list(listed) == ["done", "sleeper", "waiting"]
    states = check_list(listed)
    assert states["done"] == "SUCCEED" and states["waiting"] == "QUEUED"
    assert listed["waiting"]["inQueue"] == 0
    assert manager.cancel(["sleeper", "waiting"]) is None
    assert manager.wait4(["sleeper", "waiting"], timeout=T) == {
        "sleeper": "CANCELED",
        "waiting": "CANCELED",
    }
    assert manager.remove("done") is None
    assert list(manager.list()) == ["sleeper", "waiting"]
    with pytest.raises(errors.ConnectionError, match=r"^Request failed - Job 'done' doesn't exist"):
        manager.status("done")
    # A removed name can be used again, and its new end is not the old one's.
    manager.submit(Jobs().add(name="done", exec="/bin/false"))
    assert manager.wait4("done", timeout=T) == {"done": "FAILED"}


def test_waits_time_out_and_unknown_names_fail(manager: Any) -> None:
    manager.submit(Jobs().add(name="sleeper", exec="/bin/sleep", args=["60"]))
    with pytest.raises(errors.TimeoutElapsed):
        manager.wait4("sleeper", timeout=0.3)
    with pytest.raises(errors.TimeoutElapsed) as e:
        manager.wait4all(timeout_secs=0.3)
    assert not isinstance(e.value, errors.QCGPJMAError)  # as the original: not caught with them
    with pytest.raises(errors.ConnectionError, match="^Request failed - Job 'nope' doesn't exist"):
        manager.wait4(["sleeper", "nope"], timeout=T)
    assert manager.wait4([]) == {}
    manager.cancel("sleeper")
    manager.wait4all(timeout_secs=T)
    assert manager.status("sleeper")["jobs"]["sleeper"]["data"]["status"] == "CANCELED"


def test_wait4_any_job_finish_reports_each_end_once(manager: Any) -> None:
    manager.submit(
        Jobs().add(name="a", exec="/bin/true", iteration=2).add(name="b", exec="/bin/false")
    )
    manager.wait4all(timeout_secs=T)
    seen = [manager.wait4_any_job_finish(T) for _ in range(4)]
    assert sorted(seen) == [
        ("a", "SUCCEED"),
        ("a:0", "SUCCEED"),
        ("a:1", "SUCCEED"),
        ("b", "FAILED"),
    ]
    with pytest.raises(errors.TimeoutElapsed):
        manager.wait4_any_job_finish(0.2)
    manager.submit(Jobs().add(name="c", exec="/bin/true"))
    assert manager.wait4_any_job_finish(T) == ("c", "SUCCEED")


def test_rejected_submit_submits_nothing(manager: Any) -> None:
    with pytest.raises(errors.ConnectionError, match=r"^Request failed - .*x:y.*name") as e:
        manager.submit(Jobs().add(name="ok", exec="/bin/true").add(name="x:y", exec="/bin/true"))
    assert "x:y" in str(e.value)
    assert manager.list() == {}
    with pytest.raises(errors.InvalidJobDescriptionError, match="^Job a already in list$"):
        Jobs().add(name="a", exec="x").add(name="a", exec="y")


def test_calls_from_several_threads(manager: Any) -> None:
    results: dict[int, Any] = {}

    def worker(k: int) -> None:
        names = manager.submit(Jobs().add(name=f"w{k}", exec="/bin/true", iteration=5))
        results[k] = manager.wait4(names, timeout=T)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert results == {k: {f"w{k}": "SUCCEED"} for k in range(4)}


def test_finish_disconnects(manager: Any) -> None:
    manager.submit(Jobs().add(name="j", exec="/bin/true"))
    assert manager.wait4("j", timeout=T) == {"j": "SUCCEED"}
    assert Manager.is_status_finished("SUCCEED") and not Manager.is_status_finished("QUEUED")
    assert {s for s in FINAL if manager.is_status_finished(s)} == FINAL
    manager.finish()
    for call in (manager.resources, manager.list, lambda: manager.wait4("j"), manager.finish):
        with pytest.raises(errors.ConnectionError, match="^Not connected$"):
            call()
    manager.cleanup()
