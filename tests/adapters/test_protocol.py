"""The request protocol (reference section 1) driven directly, on asyncio and trio.

Every request's success reply has the original's shape; every error message
the reference lists comes out word for word; a reply never carries a
top-level key whose value is None.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from qcgpj_async import JobState, NullExecutor, Pilot
from qcgpj_async.adapters.protocol import Protocol, error_reply, ok_reply

pytestmark = pytest.mark.anyio
T = 30  # seconds: a generous bound for anything that should take milliseconds

HISTORY_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?: [A-Z]+")


def ok(reply: dict[str, Any]) -> Any:
    """The data of a success reply, checking the reply's shape on the way."""
    assert reply["code"] == 0, reply
    assert set(reply) <= {"code", "message", "data"}, reply
    assert None not in reply.values(), reply
    return reply.get("data")


def err(reply: dict[str, Any]) -> str:
    """The message of an error reply."""
    assert reply["code"] == 1, reply
    assert set(reply) == {"code", "message"}, reply
    assert isinstance(reply["message"], str)
    return str(reply["message"])


@pytest.fixture
async def instant(tmp_path: Path) -> AsyncIterator[Protocol]:
    """A protocol on a 2-node pilot whose jobs end at once (no processes)."""
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path, executor=NullExecutor()) as pilot:
        yield Protocol(pilot)


@pytest.fixture
async def real(tmp_path: Path) -> AsyncIterator[Protocol]:
    """A protocol on a 2-core pilot running real processes."""
    async with Pilot(nodes="2", wd=tmp_path, kill_grace=1) as pilot:
        yield Protocol(pilot)
        # whatever a test left running is stopped here, not waited for
        left = [n for n, j in pilot._engine.jobs.items() if not j.state.is_final]
        if left:
            await pilot.cancel(left)


def sleeper(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "execution": {"exec": "sleep", "args": ["30"]}, **extra}


def echo(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "execution": {"exec": "echo", "args": [name]}, **extra}


async def until_state(protocol: Protocol, name: str, state: JobState) -> None:
    with anyio.fail_after(T):
        while (await protocol.pilot.status(name))[name] is not state:
            await anyio.sleep(0.01)  # a process we started has to get going


# -- helpers of the module --------------------------------------------------------


def test_reply_helpers_leave_none_out() -> None:
    assert ok_reply() == {"code": 0}
    assert ok_reply({"a": 1}) == {"code": 0, "data": {"a": 1}}
    assert ok_reply(message="m") == {"code": 0, "message": "m"}
    assert error_reply("bad") == {"code": 1, "message": "bad"}


# -- generic errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"request": ""},
        {"request": None},
        {"request": 5},
        {"jobs": []},
        [],
        "submit",
        None,
        3,
    ],
)
async def test_invalid_request(instant: Protocol, request_: object) -> None:
    assert err(await instant.handle(request_)) == "Invalid request: Invalid request"


async def test_unknown_request_name(instant: Protocol) -> None:
    assert (
        err(await instant.handle({"request": "bogus"}))
        == "Invalid request: Unknown request name: bogus"
    )


@pytest.mark.parametrize("name", ["register", "notify"])
async def test_governor_requests_are_errors(instant: Protocol, name: str) -> None:
    assert "governor" in err(await instant.handle({"request": name}))


# -- submit --------------------------------------------------------------------------


async def test_submit_reply(instant: Protocol) -> None:
    reply = await instant.handle({"request": "submit", "jobs": [echo("a"), echo("b")]})
    assert ok(reply) == {"submitted": 2, "jobs": ["a", "b"]}
    assert reply["message"] == "2 jobs submitted"


async def test_submit_rejects_the_whole_batch(instant: Protocol) -> None:
    bad = {"name": "bad", "execution": {"exec": "x", "script": "y"}}
    msg = err(await instant.handle({"request": "submit", "jobs": [echo("good"), bad]}))
    assert "Job script and exec or args or env defined" in msg
    assert "good" not in instant.pilot._engine.jobs  # nothing of the batch was taken


async def test_submit_duplicate_name_and_too_big(instant: Protocol) -> None:
    ok(await instant.handle({"request": "submit", "jobs": [echo("a")]}))
    msg = err(await instant.handle({"request": "submit", "jobs": [echo("a")]}))
    assert "Job a already exist" in msg
    big = {**echo("big"), "resources": {"numCores": {"exact": 5}}}
    # Accepted, and FAILED at once with the original's phrase first (not the whole request).
    ok(await instant.handle({"request": "submit", "jobs": [big, echo("b")]}))
    listed = ok(await instant.handle({"request": "listJobs"}))["jobs"]["big"]
    assert listed["status"] == "FAILED"
    assert listed["messages"].startswith("Not enough resources for job big: needs 5 cores")


@pytest.mark.parametrize("jobs", [None, [], "a", {"name": "a"}])
async def test_submit_without_jobs(instant: Protocol, jobs: object) -> None:
    request = {"request": "submit"} if jobs is None else {"request": "submit", "jobs": jobs}
    assert (
        err(await instant.handle(request))
        == "Invalid request: Wrong submit request - missing jobs data"
    )


async def test_submit_after_finish_after_all_is_accepted(instant: Protocol) -> None:
    # as the original: the service ends once every job ended, these included
    ok(await instant.handle({"request": "control", "command": "finishAfterAllTasksDone"}))
    assert ok(await instant.handle({"request": "submit", "jobs": [echo("late")]}))["jobs"] == [
        "late"
    ]


async def test_submit_after_finish_or_at_the_end_is_refused(instant: Protocol) -> None:
    instant.closing = True  # the transport ends the service
    msg = err(await instant.handle({"request": "submit", "jobs": [echo("late")]}))
    assert msg == "Finish request already requested - no more jobs accepted"
    instant.closing = False
    ok(await instant.handle({"request": "finish"}))
    msg = err(await instant.handle({"request": "submit", "jobs": [echo("later")]}))
    assert msg == "Finish request already requested - no more jobs accepted"


# -- jobStatus --------------------------------------------------------------------------


async def test_job_status(instant: Protocol) -> None:
    ok(
        await instant.handle(
            {"request": "submit", "jobs": [echo("j1"), {**echo("it"), "iteration": {"stop": 3}}]}
        )
    )
    await instant.pilot.wait4all(timeout=T)
    data = ok(await instant.handle({"request": "jobStatus", "jobNames": ["j1", "it", "it:2"]}))
    assert data == {
        "jobs": {
            "j1": {"status": 0, "data": {"jobName": "j1", "status": "SUCCEED"}},
            "it": {"status": 0, "data": {"jobName": "it", "status": "SUCCEED"}},
            "it:2": {"status": 0, "data": {"jobName": "it:2", "status": "SUCCEED"}},
        }
    }
    # as the original: one unknown name fails the whole request
    for names, message in (
        (["j1", "nope"], "Job 'nope' doesn't exist"),
        (["it:9", "j1"], "Unknown iteration 9 for job it"),
        (["j1:0"], "Unknown iteration 0 for job j1"),
    ):
        assert err(await instant.handle({"request": "jobStatus", "jobNames": names})) == message


@pytest.mark.parametrize("names", [None, [], "j1", [1], ["a", None]])
async def test_job_status_missing_names(instant: Protocol, names: object) -> None:
    request: dict[str, Any] = {"request": "jobStatus"}
    if names is not None:
        request["jobNames"] = names
    assert (
        err(await instant.handle(request))
        == "Invalid request: Wrong job status request - missing job names"
    )


# -- jobInfo -------------------------------------------------------------------------------


async def test_job_info_plain_job(real: Protocol, tmp_path: Path) -> None:
    ok(await real.handle({"request": "submit", "jobs": [echo("j1")]}))
    await real.pilot.wait4("j1", timeout=T)
    assert (
        err(await real.handle({"request": "jobInfo", "jobNames": ["j1", "nope"]}))
        == "Job 'nope' doesn't exist"
    )
    data = ok(await real.handle({"request": "jobInfo", "jobNames": ["j1"]}))
    entry = data["jobs"]["j1"]
    assert entry["status"] == 0
    info = entry["data"]
    assert info["jobName"] == "j1" and info["status"] == "SUCCEED"
    assert "iterations" not in info and "childs" not in info and "messages" not in info
    runtime = info["runtime"]
    assert set(runtime) == {"allocation", "wd", "rtime", "exit_code", "pid", "pname"}
    assert all(isinstance(v, str) for v in runtime.values())  # the original's strings
    assert re.fullmatch(r"n0\[\d\]", runtime["allocation"])
    assert runtime["wd"] == str(tmp_path)
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", runtime["rtime"])
    assert runtime["exit_code"] == "0" and runtime["pname"] == "echo"
    history = info["history"]
    assert history.startswith("\n")
    lines = history[1:].split("\n")
    assert all(HISTORY_LINE.fullmatch(line) for line in lines), history
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        "QUEUED",
        "SCHEDULED",
        "EXECUTING",
        "SUCCEED",
    ]


async def test_job_info_iterations_and_childs(instant: Protocol) -> None:
    ok(
        await instant.handle(
            {"request": "submit", "jobs": [{**echo("it"), "iteration": {"start": 2, "stop": 5}}]}
        )
    )
    await instant.pilot.wait4all(timeout=T)
    plain = ok(await instant.handle({"request": "jobInfo", "jobNames": ["it"]}))
    info = plain["jobs"]["it"]["data"]
    assert info["iterations"] == {"start": 2, "stop": 5, "total": 3, "finished": 3, "failed": 0}
    assert "childs" not in info
    full = ok(
        await instant.handle(
            {"request": "jobInfo", "jobNames": ["it"], "params": {"withChilds": True}}
        )
    )
    childs = full["jobs"]["it"]["data"]["childs"]
    assert [(c["iteration"], c["state"]) for c in childs] == [
        (2, "SUCCEED"),
        (3, "SUCCEED"),
        (4, "SUCCEED"),
    ]
    assert all(set(c) <= {"iteration", "state", "runtime"} for c in childs)
    assert all(c["runtime"]["allocation"].startswith("n") for c in childs)


async def test_job_info_of_one_iteration(real: Protocol) -> None:
    ok(
        await real.handle(
            {
                "request": "submit",
                "jobs": [
                    {
                        "name": "it",
                        "iteration": {"start": 1, "stop": 3},
                        "execution": {"script": "exit $((${it} - 1))"},
                    }
                ],
            }
        )
    )
    await real.pilot.wait4all(timeout=T)
    data = ok(await real.handle({"request": "jobInfo", "jobNames": ["it:1", "it:2"]}))["jobs"]
    one, two = data["it:1"]["data"], data["it:2"]["data"]
    assert one["jobName"] == "it:1" and one["status"] == "SUCCEED"
    assert two["jobName"] == "it:2" and two["status"] == "FAILED"
    assert "iterations" not in one and "childs" not in one and "messages" not in one
    assert one["runtime"]["exit_code"] == "0" and two["runtime"]["exit_code"] == "1"
    assert two["messages"]  # why it failed
    lines = one["history"][1:].split("\n")
    assert all(HISTORY_LINE.fullmatch(line) for line in lines), one["history"]
    assert [line.rsplit(": ", 1)[1] for line in lines][-2:] == ["EXECUTING", "SUCCEED"]
    assert (
        err(await real.handle({"request": "jobInfo", "jobNames": ["it:3"]}))
        == "Unknown iteration 3 for job it"
    )


async def test_job_info_messages_of_a_failed_job(real: Protocol) -> None:
    ok(
        await real.handle(
            {
                "request": "submit",
                "jobs": [{"name": "missing", "execution": {"exec": "/no/such/program"}}],
            }
        )
    )
    assert await real.pilot.wait4("missing", timeout=T) == {"missing": JobState.FAILED}
    info = ok(await real.handle({"request": "jobInfo", "jobNames": ["missing"]}))
    data = info["jobs"]["missing"]["data"]
    assert data["status"] == "FAILED"
    assert data["messages"]
    assert data["runtime"]["exit_code"] == "-1"


async def test_job_info_missing_names(instant: Protocol) -> None:
    assert (
        err(await instant.handle({"request": "jobInfo"}))
        == "Invalid request: Wrong job info request - missing job names"
    )


# -- listJobs, resourcesInfo -------------------------------------------------------------------


async def test_list_jobs(instant: Protocol) -> None:
    assert ok(await instant.handle({"request": "listJobs"})) == {"length": 0, "jobs": {}}
    ok(await instant.handle({"request": "submit", "jobs": [echo("a"), echo("b")]}))
    await instant.pilot.wait4all(timeout=T)
    data = ok(await instant.handle({"request": "listJobs"}))
    assert data == {"length": 2, "jobs": {"a": {"status": "SUCCEED"}, "b": {"status": "SUCCEED"}}}


async def test_list_jobs_in_queue(real: Protocol) -> None:
    # 2 cores: two sleepers run, the rest wait in arrival order
    ok(
        await real.handle(
            {
                "request": "submit",
                "jobs": [
                    sleeper("s1"),
                    sleeper("s2"),
                    sleeper("q1"),
                    {**sleeper("q2"), "dependencies": {"after": ["s1"]}},
                    sleeper("q3"),
                ],
            }
        )
    )
    await until_state(real, "s1", JobState.EXECUTING)
    await until_state(real, "s2", JobState.EXECUTING)
    jobs = ok(await real.handle({"request": "listJobs"}))["jobs"]
    assert jobs["s1"] == {"status": "EXECUTING"}
    assert jobs["s2"] == {"status": "EXECUTING"}
    assert [jobs[n] for n in ("q1", "q2", "q3")] == [
        {"status": "QUEUED", "inQueue": 0},
        {"status": "QUEUED", "inQueue": 1},
        {"status": "QUEUED", "inQueue": 2},
    ]


async def test_list_jobs_messages(real: Protocol) -> None:
    ok(
        await real.handle(
            {
                "request": "submit",
                "jobs": [{"name": "missing", "execution": {"exec": "/no/such/program"}}],
            }
        )
    )
    await real.pilot.wait4("missing", timeout=T)
    entry = ok(await real.handle({"request": "listJobs"}))["jobs"]["missing"]
    assert entry["status"] == "FAILED"
    assert isinstance(entry["messages"], str) and entry["messages"]


async def test_resources_info(real: Protocol) -> None:
    assert ok(await real.handle({"request": "resourcesInfo"})) == {
        "total_nodes": 1,
        "total_cores": 2,
        "used_cores": 0,
        "free_cores": 2,
    }
    ok(await real.handle({"request": "submit", "jobs": [sleeper("s")]}))
    await until_state(real, "s", JobState.EXECUTING)
    assert ok(await real.handle({"request": "resourcesInfo"})) == {
        "total_nodes": 1,
        "total_cores": 2,
        "used_cores": 1,
        "free_cores": 1,
    }


# -- status -------------------------------------------------------------------------------------


async def test_status_all_jobs_finished(real: Protocol) -> None:
    request = {"request": "status", "options": {"allJobsFinished": True}}
    assert ok(await real.handle(request)) == {"AllJobsFinished": True}
    ok(await real.handle({"request": "submit", "jobs": [sleeper("s")]}))
    assert ok(await real.handle(request)) == {"AllJobsFinished": False}
    ok(await real.handle({"request": "cancelJob", "jobNames": ["s"]}))
    await real.pilot.wait4("s", timeout=T)
    assert ok(await real.handle(request)) == {"AllJobsFinished": True}


async def test_status_full(instant: Protocol, tmp_path: Path) -> None:
    ok(
        await instant.handle(
            {"request": "submit", "jobs": [echo("a"), {**echo("it"), "iteration": {"stop": 3}}]}
        )
    )
    await instant.pilot.wait4all(timeout=T)
    data = ok(await instant.handle({"request": "status"}))
    assert set(data) == {"System", "Resources", "JobStats", "IterationStats"}
    assert set(data["System"]) == {
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
    }
    assert data["System"]["InstanceId"] == instant.pilot.id
    assert data["System"]["Wd"] == str(tmp_path)
    assert data["Resources"] == {"TotalNodes": 2, "TotalCores": 4, "UsedCores": 0, "FreeCores": 4}
    assert data["JobStats"] == {
        "TotalJobs": 2,
        "InScheduleJobs": 0,
        "FailedJobs": 0,
        "FinishedJobs": 2,
        "ExecutingJobs": 0,
    }
    assert data["IterationStats"] == {
        "TotalIterations": 4,
        "InScheduleIterations": 0,
        "FailedIterations": 0,
        "FinishedIterations": 4,
        "ExecutingIterations": 0,
    }
    # an option that is off (or not a dict) gives the full status
    assert "System" in ok(
        await instant.handle({"request": "status", "options": {"allJobsFinished": False}})
    )
    assert "System" in ok(await instant.handle({"request": "status", "options": "x"}))


async def test_status_advertises_zmq_addresses(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path, executor=NullExecutor()) as pilot:
        protocol = Protocol(
            pilot, zmq_address="tcp://127.0.0.1:5555", publisher="tcp://127.0.0.1:5556"
        )
        system = ok(await protocol.handle({"request": "status"}))["System"]
    assert system["Zmqaddress"] == "tcp://127.0.0.1:5555"
    assert system["Ifaces"] == ["ZMQ"]  # the original's interface names
    assert system["StatusPublisher"] == "tcp://127.0.0.1:5556"
    assert system["PythonVersion"] == sys.version.replace("\n", " ")
    assert system["Platform"] == sys.platform


async def test_status_counts_failed_omitted_queued_executing(real: Protocol) -> None:
    ok(
        await real.handle(
            {
                "request": "submit",
                "jobs": [
                    {"name": "bad", "execution": {"exec": "false"}},
                    {**echo("after-bad"), "dependencies": {"after": ["bad"]}},
                    sleeper("s1"),
                    sleeper("s2"),
                    sleeper("s3"),
                ],
            }
        )
    )
    await real.pilot.wait4(["bad", "after-bad"], timeout=T)
    await until_state(real, "s2", JobState.EXECUTING)
    await until_state(real, "s1", JobState.EXECUTING)
    stats = ok(await real.handle({"request": "status"}))["JobStats"]
    assert stats == {
        "TotalJobs": 5,
        "InScheduleJobs": 1,
        "FailedJobs": 2,
        "FinishedJobs": 0,
        "ExecutingJobs": 2,
    }


# -- cancelJob ------------------------------------------------------------------------------------


async def test_cancel(real: Protocol) -> None:
    ok(
        await real.handle(
            {
                "request": "submit",
                "jobs": [sleeper("run"), {**sleeper("it"), "iteration": {"stop": 3}}],
            }
        )
    )
    data = ok(await real.handle({"request": "cancelJob", "jobNames": ["it:2", "nope"]}))
    assert data == {"canceled": 1, "errors": {"nope": "Job/iteration nope doesn't exist"}}
    assert ok(await real.handle({"request": "cancelJob", "jobNames": ["run", "it"]})) == {
        "canceled": 2
    }
    assert await real.pilot.wait4(["run", "it"], timeout=T) == {
        "run": JobState.CANCELED,
        "it": JobState.CANCELED,
    }


async def test_cancel_errors(real: Protocol) -> None:
    # as the original: a success reply naming the errors, even when nothing was cancelled
    assert ok(await real.handle({"request": "cancelJob", "jobNames": ["nope", "nope:1"]})) == {
        "canceled": 0,
        "errors": {
            "nope": "Job/iteration nope doesn't exist",
            "nope:1": "Job/iteration nope doesn't exist",
        },
    }
    ok(await real.handle({"request": "submit", "jobs": [{**echo("it"), "iteration": {"stop": 2}}]}))
    assert ok(await real.handle({"request": "cancelJob", "jobNames": ["it:9"]})) == {
        "canceled": 0,
        "errors": {"it:9": "Unknown iteration 9 for job it"},
    }
    await real.pilot.wait4("it", timeout=T)
    assert ok(await real.handle({"request": "cancelJob", "jobNames": ["it"]})) == {
        "canceled": 0,
        "errors": {"it": "Job/iteration it already finished"},
    }
    assert (
        err(await real.handle({"request": "cancelJob"}))
        == "Invalid request: Wrong cancel job request - missing job names"
    )


# -- removeJob ------------------------------------------------------------------------------------


async def test_remove(real: Protocol) -> None:
    ok(await real.handle({"request": "submit", "jobs": [echo("x"), echo("y")]}))
    await real.pilot.wait4all(timeout=T)
    assert ok(await real.handle({"request": "removeJob", "jobNames": ["x"]})) == {"removed": 1}
    assert (
        err(await real.handle({"request": "jobStatus", "jobNames": ["x"]}))
        == "Job 'x' doesn't exist"
    )
    # a removed name can be used again
    ok(await real.handle({"request": "submit", "jobs": [echo("x")]}))
    await real.pilot.wait4("x", timeout=T)
    data = ok(await real.handle({"request": "removeJob", "jobNames": ["x", "nope"]}))
    assert data == {"removed": 1, "errors": {"nope": "Job 'nope' doesn't exist"}}


async def test_remove_errors(real: Protocol) -> None:
    # as the original: a success reply naming the errors, even when nothing was removed
    assert ok(await real.handle({"request": "removeJob", "jobNames": ["nope"]})) == {
        "removed": 0,
        "errors": {"nope": "Job 'nope' doesn't exist"},
    }
    ok(await real.handle({"request": "submit", "jobs": [sleeper("x")]}))
    assert ok(await real.handle({"request": "removeJob", "jobNames": ["x"]})) == {
        "removed": 0,
        "errors": {"x": "Job 'x' not finished - can not be removed"},
    }
    assert (
        err(await real.handle({"request": "removeJob", "jobNames": []}))
        == "Invalid request: Wrong remove job request - missing job names"
    )


# -- control, finish ------------------------------------------------------------------------------


async def test_control(instant: Protocol) -> None:
    assert (
        err(await instant.handle({"request": "control"}))
        == "Invalid request: Wrong control request - missing command"
    )
    assert (
        err(await instant.handle({"request": "control", "command": "X"}))
        == 'Invalid request: Wrong control request - unknown command "X"'
    )
    reply = await instant.handle({"request": "control", "command": "finishAfterAllTasksDone"})
    assert reply == {"code": 0, "message": "finishAfterAllTasksDone command accepted"}
    assert instant.finish_after_all.is_set() and not instant.finish.is_set()
    assert instant.finishing
    assert (
        err(await instant.handle({"request": "control", "command": "finishAfterAllTasksDone"}))
        == "Finish request already requested"
    )


async def test_control_command_not_a_string(instant: Protocol) -> None:
    deep: list[Any] = []
    for _ in range(100_000):  # no repr: formatting it raises RecursionError
        deep = [deep]
    for command in (deep, ["finishAfterAllTasksDone"], 7, {"a": 1}, True):
        reply = await instant.handle({"request": "control", "command": command})
        assert reply == {
            "code": 1,
            "message": "Invalid request: Wrong control request - "
            "command: expected a string, got "
            f"{type(command).__name__}",
        }
    assert not instant.finishing
    ok(await instant.handle({"request": "control", "command": "finishAfterAllTasksDone"}))


async def test_finish(instant: Protocol) -> None:
    assert not instant.finishing
    data = ok(await instant.handle({"request": "finish"}))
    assert set(data) == {"when"} and re.fullmatch(r"\d+s", data["when"])
    assert instant.finish.is_set() and instant.finishing
    assert err(await instant.handle({"request": "finish"})) == "Finish request already requested"
    assert (
        err(await instant.handle({"request": "control", "command": "finishAfterAllTasksDone"}))
        == "Finish request already requested"
    )


async def test_finish_after_control_is_accepted(instant: Protocol) -> None:
    # finishAfterAllTasksDone, then finish: stop now after all
    ok(await instant.handle({"request": "control", "command": "finishAfterAllTasksDone"}))
    ok(await instant.handle({"request": "finish"}))
    assert instant.finish.is_set()


# -- robustness ------------------------------------------------------------------------------------


async def test_a_handler_bug_is_an_error_reply(
    instant: Protocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*args: object, **kw: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(instant.pilot, "resources", boom)
    msg = err(await instant.handle({"request": "resourcesInfo"}))
    assert "resourcesInfo" in msg and "boom" in msg
    # and the protocol goes on
    ok(await instant.handle({"request": "listJobs"}))


async def test_closed_pilot_is_an_error_reply(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path, executor=NullExecutor()) as pilot:
        protocol = Protocol(pilot)
    msg = err(await protocol.handle({"request": "submit", "jobs": [echo("a")]}))
    assert "not running" in msg


def test_submit_errors_start_with_the_originals_phrase() -> None:
    from qcgpj_async.adapters.protocol import submit_error

    # What the original answers (tools match on it), then ours: the job, the field, the rule.
    assert submit_error(["job 'a': name: Job a already exist"]) == "Job a already exist"
    assert (
        submit_error(["job 'a': name: Job a already exist", "job 'b': name: Job b already exist"])
        == "Job a already exist; Job b already exist"
    )
    assert submit_error(
        ["job 'a': name: Job a already exist", "job 'x:y': name: Invalid job name x:y"]
    ) == (
        "Wrong submit request: job 'a': name: Job a already exist; "
        "job 'x:y': name: Invalid job name x:y"
    )
