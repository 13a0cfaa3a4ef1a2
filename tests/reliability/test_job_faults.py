"""Jobs that misbehave end in a final state with a message; the manager's memory stays flat.

Complements tests/runtime/test_pilot.py (missing executable, unwritable output,
bad wd, SIGTERM ignored on cancel, a child left behind, kill -SEGV).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from reliability_helpers import T, all_gone, rss_kb

from qcgpj_async import Jobs, JobState, Pilot

pytestmark = pytest.mark.anyio
OK, FAIL = JobState.SUCCEED, JobState.FAILED


async def test_200_mb_of_stdout_goes_to_the_file_not_the_manager(
    tmp_path: Path, anyio_backend: str
) -> None:
    if anyio_backend == "trio":
        pytest.skip("the manager never touches job output: once is enough")
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="warm", exec="/bin/true"))
        await pilot.wait4all(timeout=T)
        before = rss_kb()
        await pilot.submit(
            Jobs()
            .add(name="tofile", script="head -c 200000000 /dev/zero", stdout="big.out")
            .add(name="todevnull", script="head -c 200000000 /dev/zero")
        )
        assert await pilot.wait4(["tofile", "todevnull"], timeout=T) == {
            "tofile": OK,
            "todevnull": OK,
        }
        after = rss_kb()
    assert (tmp_path / "big.out").stat().st_size == 200_000_000
    assert after - before < 5_000, (before, after)  # KB: nothing of the 200 MB


async def test_crashes_and_stubborn_trees_end_with_a_message(tmp_path: Path) -> None:
    crash = f"{sys.executable} -c 'import ctypes; ctypes.string_at(0)'"  # a real SIGSEGV
    stubborn_tree = (
        "trap '' TERM; for i in 1 2 3; do (trap '' TERM; exec sleep 60) & "
        "echo $! >> kids; done; echo $$ >> kids; while true; do sleep 0.1; done"
    )
    jobs = (
        Jobs()
        .add(name="segv", script=crash)
        .add(name="abort", script="kill -ABRT $$")
        .add(name="full", script="echo hello", stdout="/dev/full")
        .add(name="exit77", exec="/bin/sh", args=["-c", "exit 77"])
        .add(name="stubborn", script=stubborn_tree, wt="1s")
        .add(name="rmwd", script='rm -rf "$PWD"; exit 0', wd="doomed")
        .add(name="again", script="pwd > here", wd="doomed", after="rmwd")
    )
    async with Pilot(nodes="4", wd=tmp_path, kill_grace=0.3) as pilot:
        await pilot.submit(jobs)
        states = await pilot.wait4(jobs.job_names(), timeout=T)
        infos = await pilot.info(jobs.job_names())
    assert states == {
        "segv": FAIL,
        "abort": FAIL,
        "full": FAIL,
        "exit77": FAIL,
        "stubborn": FAIL,
        "rmwd": OK,
        "again": OK,
    }
    codes = {n: i.runtime.exit_code for n, i in infos.items() if i.runtime}
    assert (codes["segv"], codes["abort"], codes["exit77"]) == (-11, -6, 77)
    assert codes["stubborn"] == -9  # ignored SIGTERM: SIGKILL after the grace
    for name in ("segv", "abort", "full", "exit77", "stubborn"):
        assert infos[name].messages, name
    assert infos["stubborn"].messages == ("wall time exceeded (wt 1s)",)
    kids = [int(p) for p in (tmp_path / "kids").read_text().split()]
    assert len(kids) == 4
    assert await anyio.to_thread.run_sync(all_gone, kids) == []  # the whole tree, with the group
    assert (tmp_path / "doomed" / "here").read_text().strip() == str(tmp_path / "doomed")


async def test_memory_stays_flat_over_many_failing_jobs(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")

    def batch(k: int) -> Jobs:
        jobs = Jobs()
        for i in range(50):
            jobs.add(name=f"m{k}.{i}", exec="/no/such/program")
            jobs.add(name=f"c{k}.{i}", script="kill -SEGV $$")
            jobs.add(name=f"w{k}.{i}", exec="/bin/true", wd="afile/sub")
            jobs.add(name=f"e{k}.{i}", exec="/bin/false", stdout=f"out/{i}")
        return jobs

    async with Pilot(nodes="4", wd=tmp_path) as pilot:
        samples = []
        for k in range(6):
            names = await pilot.submit(batch(k))
            states = await pilot.wait4(names, timeout=T)
            assert set(states.values()) == {FAIL}
            for n in names:  # finished and forgotten: what remains is what leaks
                await pilot.remove(n)
            samples.append(rss_kb())
    # after a warm-up batch, 1,000 failed jobs later the manager holds no more memory
    assert samples[-1] - samples[1] < 3_000, samples
