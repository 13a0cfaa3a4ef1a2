"""The reply shapes of the original's API (../shared/reference/qcg-pilotjob-0.14.2.md, section 1)."""

from __future__ import annotations

import re
from typing import Any

FINAL = {"SUCCEED", "FAILED", "CANCELED", "OMITTED"}
STATES = FINAL | {"QUEUED", "SCHEDULED", "EXECUTING"}
RESOURCES = {"total_nodes", "total_cores", "used_cores", "free_cores"}
INFO_KEYS = {"jobName", "status", "iterations", "childs", "messages", "runtime", "history"}
ITERATIONS = {"start", "stop", "total", "finished", "failed"}
RUNTIME = {"allocation", "wd", "rtime", "exit_code", "pid", "pname"}
HISTORY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}: (QUEUED|SCHEDULED|EXECUTING|SUCCEED|FAILED|CANCELED|OMITTED)$"
)
RTIME = re.compile(r"^\d+:\d\d:\d\d(\.\d+)?$")
ALLOCATION = re.compile(r"^[^\[\],]+\[\d+(:\d+)*\](,[^\[\],]+\[\d+(:\d+)*\])*$")
SYSTEM = {
    "System": {
        "InstanceId",
        "Started",
        "Generated",
        "Uptime",
        "Zmqaddress",
        "Ifaces",
        "StatusPublisher",
        "Host",
        "Account",
        "Wd",
        "PythonVersion",
        "Python",
        "Platform",
    },
    "Resources": {"TotalNodes", "TotalCores", "UsedCores", "FreeCores"},
    "JobStats": {"TotalJobs", "InScheduleJobs", "FailedJobs", "FinishedJobs", "ExecutingJobs"},
    "IterationStats": {
        "TotalIterations",
        "InScheduleIterations",
        "FailedIterations",
        "FinishedIterations",
        "ExecutingIterations",
    },
}


def check_resources(data: Any) -> None:
    assert set(data) == RESOURCES
    assert all(type(v) is int for v in data.values())
    assert data["used_cores"] + data["free_cores"] == data["total_cores"]


def check_status(data: Any, names: list[str]) -> dict[str, str]:
    """``{"jobs": {n: {"status": 0, "data": {"jobName": n, "status": S}}}}``; the states."""
    assert set(data) == {"jobs"}
    assert list(data["jobs"]) == names
    for n, entry in data["jobs"].items():
        assert entry == {"status": 0, "data": {"jobName": n, "status": entry["data"]["status"]}}
        assert entry["data"]["status"] in STATES
    return {n: e["data"]["status"] for n, e in data["jobs"].items()}


def check_runtime(runtime: Any) -> None:
    assert set(runtime) <= RUNTIME and "allocation" in runtime
    assert all(isinstance(v, str) for v in runtime.values()), runtime
    assert ALLOCATION.match(runtime["allocation"]), runtime["allocation"]
    if "rtime" in runtime:
        assert RTIME.match(runtime["rtime"]), runtime["rtime"]
    if "exit_code" in runtime:
        int(runtime["exit_code"])


def check_info(data: Any, names: list[str]) -> dict[str, Any]:
    """The ``jobInfo`` shape, field by field; the ``data`` of each job."""
    assert set(data) == {"jobs"}
    assert list(data["jobs"]) == names
    out = {}
    for n, entry in data["jobs"].items():
        assert set(entry) == {"status", "data"} and entry["status"] == 0
        d = entry["data"]
        assert set(d) <= INFO_KEYS and {"jobName", "status", "history"} <= set(d)
        assert d["jobName"] == n and d["status"] in STATES
        assert d["history"].startswith("\n")
        lines = d["history"].split("\n")[1:]
        assert lines and all(HISTORY_LINE.match(x) for x in lines), d["history"]
        assert lines[0].endswith(": QUEUED")
        if "iterations" in d:
            assert set(d["iterations"]) == ITERATIONS
            assert all(type(v) is int for v in d["iterations"].values())
        if "runtime" in d:
            check_runtime(d["runtime"])
        if "messages" in d:
            assert isinstance(d["messages"], str)
        for child in d.get("childs", []):
            assert set(child) <= {"iteration", "state", "runtime"}
            assert type(child["iteration"]) is int and child["state"] in STATES
            if "runtime" in child:
                check_runtime(child["runtime"])
        out[n] = d
    return out


def check_list(data: Any) -> dict[str, str]:
    for entry in data.values():
        assert set(entry) <= {"status", "messages", "inQueue"} and entry["status"] in STATES
        if "inQueue" in entry:
            assert type(entry["inQueue"]) is int and entry["status"] == "QUEUED"
        if "messages" in entry:
            assert isinstance(entry["messages"], str)
    return {n: e["status"] for n, e in data.items()}


def check_system_status(data: Any) -> None:
    assert set(data) == set(SYSTEM)
    for key, fields in SYSTEM.items():
        assert set(data[key]) == fields, key
    assert all(
        type(v) is int
        for k in ("Resources", "JobStats", "IterationStats")
        for v in data[k].values()
    )
    assert isinstance(data["System"]["Ifaces"], list)
