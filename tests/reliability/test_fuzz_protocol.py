"""Every request is answered: a Hypothesis fuzz of Protocol.handle with a real Pilot.

Random values, random request dicts, and valid requests mutated at one spot
(wrong types, huge numbers, unicode, deep nesting, missing and unknown keys).
Each reply must be ``{"code": 0 | 1, ...}`` that JSON can carry, the pilot must
keep running, and valid jobs submitted between the garbage must all succeed.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qcgpj_async import JobState, NullExecutor, Pilot
from qcgpj_async.adapters.protocol import Protocol

T = 30
NAMES = [
    "submit",
    "jobStatus",
    "jobInfo",
    "cancelJob",
    "removeJob",
    "listJobs",
    "resourcesInfo",
    "status",
    "control",
    "finish",
    "register",
    "notify",
]


class Launching(NullExecutor):
    """No processes, but every launch goes through a task: a fuzzed job with 10^12
    iterations runs in the background instead of blocking the loop."""

    instant = False


def nest(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


@attrs.frozen
class Deep:
    """Stands for ``nest(depth, leaf)`` in a drawn request: Hypothesis can print it."""

    depth: int
    leaf: Any

    @staticmethod
    def expand(obj: Any) -> Any:
        if isinstance(obj, Deep):
            return nest(obj.depth, obj.leaf)
        if isinstance(obj, dict):
            return {k: Deep.expand(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [Deep.expand(v) for v in obj]
        return obj


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 1, 2**31, 2**63, 10**12, 10**100])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "a:b", "${it}", "\x00", "é🚀", "$$", "j", "a", "../x", "x" * 5000])
)
values = st.recursive(
    leaves,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
deep = st.builds(Deep, st.integers(100, 5000), leaves)
garbage = values | deep

TEMPLATES: list[dict[str, Any]] = [
    {
        "request": "submit",
        "jobs": [
            {
                "name": "j",
                "execution": {
                    "exec": "/bin/true",
                    "args": ["1"],
                    "env": {"A": "b"},
                    "stdout": "o",
                    "wd": "w",
                    "model": "threads",
                },
                "resources": {"numCores": {"min": 1, "max": 2}, "wt": "10s"},
                "iteration": {"start": 0, "stop": 3},
                "attributes": {"x": 1},
            }
        ],
    },
    {
        "request": "submit",
        "jobs": [
            {"name": "a", "execution": {"script": "true"}, "resources": {"numNodes": 1}},
            {
                "name": "b",
                "execution": {"exec": "x"},
                "dependencies": {"after": ["a", "a:${it}"]},
                "iteration": {"values": ["p", "q"]},
            },
            {
                "name": "c",
                "execution": {"exec": "x"},
                "resources": {"numCores": {"scheduler": {"name": "maximum-iters", "params": {}}}},
                "iteration": {"stop": 4},
            },
        ],
    },
    {"request": "jobStatus", "jobNames": ["j", "j:1", "a"]},
    {"request": "jobInfo", "jobNames": ["j"], "params": {"withChilds": True}},
    {"request": "cancelJob", "jobNames": ["j", "b:0"]},
    {"request": "removeJob", "jobNames": ["a"]},
    {"request": "listJobs"},
    {"request": "resourcesInfo"},
    {"request": "status", "options": {"allJobsFinished": True}},
    {"request": "control", "command": "finishAfterAllTasksDone"},
]


def paths(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*here, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*here, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    req = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    path = draw(st.sampled_from(paths(req)[1:]))
    *parent_path, key = path
    parent = req
    for k in parent_path:
        parent = parent[k]
    how = draw(st.sampled_from(["replace", "delete", "add"]))
    if how == "replace":
        parent[key] = draw(garbage)
    elif how == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(garbage)
    else:
        parent.append(draw(garbage))
    return req


requests = (
    garbage
    | st.fixed_dictionaries(
        {"request": st.sampled_from(NAMES) | garbage},
        optional={
            "jobs": garbage,
            "jobNames": garbage,
            "params": garbage,
            "options": garbage,
            "command": garbage,
        },
    )
    | mutated()
)


def check_reply(reply: Any) -> None:
    assert isinstance(reply, dict), reply
    assert reply["code"] in (0, 1), reply
    assert None not in reply.values(), reply
    if reply["code"] == 1:
        assert isinstance(reply["message"], str) and reply["message"], reply
    if reply.get("message", "").startswith("Internal error"):
        # Answered, and the service goes on; but only input nested deeper than
        # Python's recursion limit may get there (formatting it in a message).
        assert "RecursionError" in reply["message"], reply
    json.dumps(reply)  # the ZMQ transport can send it


def valid(n: int) -> dict[str, Any]:
    return {
        "request": "submit",
        "jobs": [
            {
                "name": f"valid-{uuid.uuid4().hex}-{n}",
                "execution": {"exec": "/bin/true"},
                **({"iteration": {"stop": 2}} if n % 2 else {}),
            }
        ],
    }


async def drive(
    wd: Path, reqs: list[Any], executor: NullExecutor | None, count: bool = True
) -> None:
    async with Pilot(
        nodes="n1:2,n2:2", wd=wd, executor=executor, instance_id=uuid.uuid4().hex, kill_grace=1
    ) as pilot:
        fuzz = Protocol(pilot)
        ok = Protocol(pilot)  # unaffected by a fuzzed finish request
        mine: list[str] = []
        for i, req in enumerate(reqs):
            reply = await ok.handle(valid(i))
            assert reply["code"] == 0, reply
            mine += reply["data"]["jobs"]
            with anyio.fail_after(T):
                reply = await fuzz.handle(Deep.expand(req))
            check_reply(reply)
            name = req.get("request") if isinstance(req, dict) else None
            if count:  # Hypothesis statistics: which requests get which answer
                event(f"{name if name in NAMES else 'garbage'}: code {reply['code']}")
            # what the fuzz got accepted may be huge: stop it, keep the valid jobs
            await pilot.cancel(
                [
                    n
                    for n, j in pilot._engine.jobs.items()
                    if n not in mine and not j.state.is_final and not j.canceled
                ]
            )
        states = await pilot.wait4(mine, timeout=T)
        assert set(states.values()) == {JobState.SUCCEED}
        for what in ({"request": "listJobs"}, {"request": "status"}):
            check_reply(await ok.handle(what))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(reqs=st.lists(requests, min_size=1, max_size=6))
def test_every_request_answered_valid_jobs_complete(
    tmp_path: Path, backend: str, reqs: list[Any]
) -> None:
    anyio.run(drive, tmp_path, reqs, Launching(), backend=backend)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(reqs=st.lists(mutated(), min_size=2, max_size=4))
def test_with_real_processes(tmp_path: Path, reqs: list[Any]) -> None:
    anyio.run(drive, tmp_path, reqs, None)


def test_nan_and_huge_values_are_answered(tmp_path: Path) -> None:
    reqs = [
        {
            "request": "submit",
            "jobs": [
                {"name": "n", "execution": {"exec": "x"}, "resources": {"numCores": math.nan}}
            ],
        },
        {
            "request": "submit",
            "jobs": [{"name": "h", "execution": {"exec": "x"}, "iteration": {"stop": 10**12}}],
        },
        {
            "request": "submit",
            "jobs": [{"name": "w", "execution": {"exec": "x"}, "resources": {"numCores": 2**64}}],
        },
        {
            "request": "submit",
            "jobs": [
                {"name": "d", "execution": {"exec": "x"}, "attributes": {"deep": Deep(5000, 1)}}
            ],
        },
        {"request": "jobStatus", "jobNames": ["h:999999999999", "h:" + "9" * 5000]},
    ]
    anyio.run(drive, tmp_path, reqs, Launching(), False)


@pytest.mark.anyio
async def test_regressions_found_by_the_fuzz(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path, executor=Launching()) as pilot:
        proto = Protocol(pilot)

        async def submit(*jobs: Any) -> dict[str, Any]:
            return await proto.handle({"request": "submit", "jobs": list(jobs)})

        ok = {"name": "ok", "execution": {"exec": "x"}}
        # a null among the jobs (was: an internal error, StopIteration in a coroutine)
        assert await submit(None, ok) == {
            "code": 1,
            "message": "Wrong submit request: job #0: must be an object (dict), not NoneType",
        }
        # 10^12 iterations (was: MemoryError at the first launch, after the job was accepted)
        for stop in (10**12, 10**100):
            reply = await submit(
                {"name": "h", "execution": {"exec": "x"}, "iteration": {"stop": stop}}
            )
            assert reply == {
                "code": 1,
                "message": f"Wrong submit request: job 'h': iteration: {stop} iterations, "
                "more than 1000000000 in one job",
            }
        # nested deeper than the journal can write (was: accepted, then the pilot stalled)
        reply = await submit(
            {"name": "d", "execution": {"exec": "x"}, "attributes": {"deep": nest(5000, 1)}}
        )
        assert reply["code"] == 1 and reply["message"].startswith(
            "Wrong submit request: the jobs cannot be recorded"
        )
        assert await pilot.list() == {}
        assert (await submit(ok))["code"] == 0
        assert await pilot.wait4("ok", timeout=T) == {"ok": JobState.SUCCEED}
