"""The Pilot's edges: cancelled while entering, used after its block, run twice; checked input
of hand-built JobSpecs; waits that could never end."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from qcgpj_async import (
    JobDescriptionError,
    Jobs,
    JobSpec,
    JobState,
    NullExecutor,
    Pilot,
    PilotClosedError,
)
from qcgpj_async.model import Execution, Iteration

pytestmark = pytest.mark.anyio
T = 20


def sleeper(name: str, seconds: str = "30") -> dict[str, object]:
    return {"name": name, "execution": {"exec": "sleep", "args": [seconds]}}


@pytest.mark.parametrize("deadline", [0, 0.0005, 0.002, 0.05])
async def test_cancelled_while_entering_does_not_hang(tmp_path: Path, deadline: float) -> None:
    with anyio.fail_after(T):  # it used to hang here: a cancelled start of the fork server
        with anyio.move_on_after(deadline):
            async with Pilot(nodes=1, wd=tmp_path) as pilot:
                await pilot.submit([sleeper("s")])
                await anyio.sleep(30)


async def test_a_failing_sibling_while_entering_propagates(tmp_path: Path) -> None:
    async def sibling() -> None:
        raise ValueError("sibling failed")

    with anyio.fail_after(T), pytest.raises(BaseException) as caught:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sibling)
            await anyio.lowlevel.checkpoint()  # the sibling fails: this task is cancelled
            async with Pilot(nodes=1, wd=tmp_path):
                await anyio.sleep(30)
    assert caught.group_contains(ValueError, match="sibling failed")  # type: ignore[attr-defined]


async def test_nothing_changes_after_the_block(tmp_path: Path) -> None:
    async with Pilot(nodes=1, wd=tmp_path, executor=NullExecutor()) as pilot:
        await pilot.submit([sleeper("a"), sleeper("b")])
    assert pilot.service_path is not None
    journal = Path(pilot.service_path) / "journal.jsonl"
    before = journal.read_text()
    with pytest.raises(PilotClosedError):
        await pilot.cancel("a")
    with pytest.raises(PilotClosedError):
        await pilot.remove("b")
    assert journal.read_text() == before  # a resume still works from it
    assert await pilot.status("b") == {"b": JobState.SUCCEED}  # reading is fine
    with pytest.raises(PilotClosedError, match="runs once"):
        async with pilot:
            pass


async def test_a_name_given_twice_counts_once(tmp_path: Path) -> None:
    async with Pilot(nodes=1, wd=tmp_path, executor=NullExecutor()) as pilot:
        await pilot.submit([sleeper("a")])
        await pilot.wait4all(timeout=T)
        assert await pilot.remove(["a", "a"]) == 1
        assert await pilot.list() == {}
    async with Pilot(nodes=1, wd=tmp_path / "real", kill_grace=1) as pilot:
        await pilot.submit([sleeper("c")])  # runs: a second cancel would kill it again
        assert await pilot.cancel(["c", "c"]) == 1
        assert await pilot.wait4("c", timeout=T) == {"c": JobState.CANCELED}


async def test_hand_built_specs_are_checked(tmp_path: Path) -> None:
    ok = JobSpec(name="ok", execution=Execution(exec="/bin/true"))
    bad = {
        "x:1": JobSpec(name="x:1", execution=Execution(exec="/bin/true")),
        "y": JobSpec(name="y", execution=Execution()),
        "z": JobSpec(name="z", execution=Execution(exec="/bin/true"), iteration=Iteration(0, 0)),
    }
    async with Pilot(nodes=1, wd=tmp_path, executor=NullExecutor()) as pilot:
        for name, spec in bad.items():
            with pytest.raises(JobDescriptionError) as e:
                await pilot.submit([ok, spec])
            assert len(e.value.problems) == 1 and repr(name) in e.value.problems[0]
            with pytest.raises(JobDescriptionError):
                Jobs().add_spec(spec)
        with pytest.raises(JobDescriptionError) as e:
            await pilot.submit([ok, "bad"])  # type: ignore[list-item]
        assert e.value.problems[0].startswith("job #1")  # its place in the batch
        assert await pilot.list() == {}  # nothing of a rejected batch was taken
        assert await pilot.submit(ok) == ["ok"]


async def test_waits_that_could_never_end(tmp_path: Path) -> None:
    async with Pilot(nodes=1, wd=tmp_path, executor=NullExecutor()) as pilot:
        with pytest.raises(ValueError, match="no job names"):
            await pilot.wait4_any([])
    with anyio.fail_after(T):
        with pytest.raises(PilotClosedError):
            await pilot.wait4_any()  # closed, no job: none can ever end
        events = [ev async for ev in pilot.events()]  # closed: the stream ends at once
    assert events == []


async def test_a_pending_wait4_any_ends_when_the_pilot_closes(tmp_path: Path) -> None:
    got: list[BaseException] = []
    with anyio.fail_after(T):
        async with anyio.create_task_group() as outer:
            async with Pilot(nodes=1, wd=tmp_path, executor=NullExecutor()) as pilot:

                async def waiter() -> None:
                    try:
                        await pilot.wait4_any()  # no job: it waits for one to end
                    except PilotClosedError as e:
                        got.append(e)

                outer.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()  # the waiter waits
    assert len(got) == 1


def test_pilots_of_one_process_get_distinct_default_ids() -> None:
    a, b = Pilot(nodes=1), Pilot(nodes=1)
    prefix = f"{socket.gethostname()}.{os.getpid()}"
    assert a.id != b.id  # each job's QCG_PM_STEP_ID is <id>.<run>: unique across pilots
    assert a.id.startswith(prefix) and b.id.startswith(prefix)
    assert Pilot(nodes=1, instance_id="mine").id == "mine"
