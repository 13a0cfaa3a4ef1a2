"""One-core jobs queued in the fork server ahead of free cores: they start in the core
of the job that ends, in order, and are cancelled, failed and stopped as queued jobs."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from qcgpj_async import Jobs, JobState, Pilot

pytestmark = pytest.mark.anyio
T = 30
Q, S, E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def until(pilot: Pilot, name: str, state: JobState) -> None:
    with anyio.fail_after(T):
        while (await pilot.status(name))[name] is not state:
            await anyio.sleep(0.01)


async def test_queued_jobs_start_in_the_core_the_last_one_left_in_order(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        jobs = Jobs().add(name="a", exec="/bin/sleep", args=["0.3"])
        for i in range(6):
            jobs.add(name=f"j{i}", script=f"date +%s.%N > j{i}.t")
        names = await pilot.submit(jobs)
        await until(pilot, "a", E)
        assert pilot._engine.queued > 0  # launched ahead, into the fork server's queue
        assert (await pilot.status("j0"))["j0"] is Q  # and still QUEUED
        queued = (await pilot.info("j0"))["j0"]
        assert queued.runtime is None and [s for s, _ in queued.history] == [Q]
        assert set((await pilot.wait4(names, timeout=T)).values()) == {JobState.SUCCEED}
        info = await pilot.info(names)
    a_end = info["a"].history[-1][1]
    # j0 was scheduled when "a" ended, with the time the fork server saw the end:
    # started there, not after a round trip through the pilot
    assert [s for s, _ in info["j0"].history] == [Q, S, E, JobState.SUCCEED]
    assert info["j0"].history[1][1] == a_end
    assert info["j0"].runtime is not None and info["j0"].runtime.allocation == "n0[0]"
    # one core: one after the other, in the order they were submitted
    times = [float((tmp_path / f"j{i}.t").read_text()) for i in range(6)]
    assert times == sorted(times)
    assert pilot._engine.queued == 0


async def test_a_queued_job_that_cannot_start_passes_its_core_on(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        names = await pilot.submit(
            Jobs()
            .add(name="a", exec="/bin/sleep", args=["0.2"])
            .add(name="missing", exec="/no/such/program")
            .add(name="b", script="echo ok > b.out")
        )
        got = await pilot.wait4(names, timeout=T)
        info = await pilot.info("missing")
        res = await pilot.resources()
    assert got == {"a": JobState.SUCCEED, "missing": JobState.FAILED, "b": JobState.SUCCEED}
    assert "/no/such/program" in " ".join(info["missing"].messages)
    assert (tmp_path / "b.out").read_text() == "ok\n"
    assert res.used_cores == 0 and res.free_cores == 1


async def test_cancel_of_a_queued_job_is_at_once_and_it_never_runs(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs()
            .add(name="a", exec="/bin/sleep", args=["30"])
            .add(name="b", script="touch b.ran")
            .add(name="c", script="touch c.ran", after="b")
            .add(name="it", script="touch it.${it}.ran", iteration=3)
        )
        await until(pilot, "a", E)
        assert pilot._engine.queued == 4  # b, it:0..2 (c waits for b)
        await pilot.cancel(["b", "it:1"])
        assert await pilot.status(["b", "c", "it:1"]) == {  # at once, as a queued job
            "b": JobState.CANCELED,
            "c": JobState.OMITTED,
            "it:1": JobState.CANCELED,
        }
        await pilot.cancel(["a"])
        got = await pilot.wait4(["a", "b", "c", "it"], timeout=T)
        resources = await pilot.resources()
    assert got == {
        "a": JobState.CANCELED,
        "b": JobState.CANCELED,
        "c": JobState.OMITTED,
        "it": JobState.FAILED,
    }  # one iteration cancelled, the others ran
    assert not (tmp_path / "b.ran").exists() and not (tmp_path / "c.ran").exists()
    assert sorted(p.name for p in tmp_path.glob("it.*.ran")) == ["it.0.ran", "it.2.ran"]
    assert resources.used_cores == 0
    report = next(tmp_path.glob(".qcgpjm-service-*/jobs.report")).read_text()
    assert '"name": "b", "state": "CANCELED"' in report


async def test_set_env_reaches_jobs_already_queued(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs()
            .add(name="a", exec="/bin/sleep", args=["0.3"])
            .add(name="b", script="echo ${X:-unset} > x.out")
        )
        await until(pilot, "a", E)
        assert pilot._engine.queued == 1
        pilot.set_env("X", "new")
        await pilot.wait4all(timeout=T)
    assert (tmp_path / "x.out").read_text() == "new\n"


async def test_leaving_by_an_exception_stops_queued_jobs_too(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        async with Pilot(nodes="2", wd=tmp_path, kill_grace=2) as pilot:
            jobs = Jobs().add(name="long", exec="/bin/sleep", args=["30"], iteration=2)
            jobs.add(name="q", script="touch q.${it}.ran", iteration=10)
            await pilot.submit(jobs)
            await until(pilot, "long", E)
            assert pilot._engine.queued == 10
            raise RuntimeError("boom")
    assert not list(tmp_path.glob("q.*.ran"))
    assert children(os.getpid()) == []
    assert (await pilot.status(["long", "q"])) == {
        "long": JobState.CANCELED,
        "q": JobState.CANCELED,
    }


async def test_jobs_queued_in_a_fork_server_that_dies_run_all_the_same(tmp_path: Path) -> None:
    import signal

    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs()
            .add(name="long", exec="/bin/sleep", args=["60"])
            .add(name="q", script="echo $PPID > ppid.${it}", iteration=3)
        )
        await until(pilot, "long", E)
        assert pilot._engine.queued == 3
        (server,) = children(os.getpid())
        os.kill(server, signal.SIGKILL)
        got = await pilot.wait4(["long", "q"], timeout=T)
        assert pilot._engine.queued == 0 and pilot._engine.lookahead == 0
    assert got == {"long": JobState.FAILED, "q": JobState.SUCCEED}  # requeued, not lost
    assert {int((tmp_path / f"ppid.{i}").read_text()) for i in range(3)} == {os.getpid()}
