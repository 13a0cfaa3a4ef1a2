"""GPU jobs through the Pilot with declared devices: no GPU needed, real processes.

Every job writes what it was shown (``$CUDA_VISIBLE_DEVICES``, ``$QCG_PM_GPUS``)
and when it started and ended; the tests check that no two jobs running at
the same time shared a device, from those times (an order, never a duration).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from qcgpj_async import Jobs, JobState, Pilot

pytestmark = pytest.mark.anyio
T = 60  # seconds: a generous bound

# start time, the devices seen, end time; the sleep makes the four first overlap
WRITE = (
    'echo "$(date +%s.%N) ${CUDA_VISIBLE_DEVICES-unset} ${QCG_PM_GPUS-unset} '
    '${ROCR_VISIBLE_DEVICES-unset}" > {out}; sleep 0.3; date +%s.%N >> {out}'
)


def job(jobs: Jobs, name: str, wd: Path, **kw: object) -> None:
    out = wd / f"{name}.out"
    jobs.add(name=name, script=WRITE.replace("{out}", str(out)), **kw)


def seen(wd: Path, name: str) -> tuple[float, list[str], str, str, float]:
    first, last = (wd / f"{name}.out").read_text().splitlines()
    start, cuda, qcg, rocr = first.split(" ")
    return float(start), cuda.split(",") if cuda else [], qcg, rocr, float(last)


def no_shared_device(runs: list[tuple[float, list[str], float]]) -> None:
    for (s1, d1, e1), (s2, d2, e2) in itertools.combinations(runs, 2):
        if s1 < e2 and s2 < e1:  # ran at the same time
            assert not set(d1) & set(d2), f"a device shared by overlapping jobs: {d1} {d2}"


async def test_eight_one_gpu_jobs_on_four_devices(tmp_path: Path) -> None:
    jobs = Jobs()
    for i in range(8):
        job(jobs, f"g{i}", tmp_path, gpus=1)
    job(jobs, "cpu", tmp_path)
    async with Pilot(nodes="n0:8", gpus="0,1,2,3", wd=tmp_path) as pilot:
        res = await pilot.resources()
        assert (res.total_gpus, res.free_gpus) == (4, 4)
        assert res.to_dict()["total_gpus"] == 4  # resourcesInfo
        names = await pilot.submit(jobs)
        with anyio.fail_after(T):
            states = await pilot.wait4(names)
        assert set(states.values()) == {JobState.SUCCEED}
        assert (await pilot.resources()).free_gpus == 4
    runs = []
    for i in range(8):
        start, devs, qcg, _, end = seen(tmp_path, f"g{i}")
        assert len(devs) == 1 and devs[0] in {"0", "1", "2", "3"}, devs
        assert qcg == devs[0]
        runs.append((start, devs, end))
    no_shared_device(runs)
    assert {d for _, devs, _ in runs for d in devs} == {"0", "1", "2", "3"}
    _, devs, qcg, _, _ = seen(tmp_path, "cpu")
    assert devs == [] and qcg == ""  # a CPU job is shown no device


async def test_two_gpu_jobs_and_amd_variables(tmp_path: Path) -> None:
    jobs = Jobs()
    for i in range(4):
        job(jobs, f"p{i}", tmp_path, gpus=2)
    async with Pilot(nodes="n0:4:gpu=3+5+7+9", gpu_vendor="amd", wd=tmp_path) as pilot:
        with anyio.fail_after(T):
            states = await pilot.wait4(await pilot.submit(jobs))
    assert set(states.values()) == {JobState.SUCCEED}
    runs = []
    for i in range(4):
        start, devs, qcg, rocr, end = seen(tmp_path, f"p{i}")
        assert devs == ["0", "1"]  # HIP/CUDA numbering: the devices ROCr shows
        ids = rocr.split(",")
        assert len(ids) == 2 and set(ids) <= {"3", "5", "7", "9"} and qcg == rocr
        runs.append((start, ids, end))
    no_shared_device(runs)


async def test_too_many_gpus_fails_with_the_numbers_and_cancel_frees(tmp_path: Path) -> None:
    async with Pilot(nodes="n0:4", gpus=["0", "1"], wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="big", exec="/bin/true", gpus=3))
        info = (await pilot.info("big"))["big"]
        assert info.state is JobState.FAILED
        assert info.messages == (
            "Not enough resources for job big: needs 1 core with 3 GPUs per node; "
            "the pilot has 1 node x 4 cores, at most 2 GPUs per node",
        )
        await pilot.submit(Jobs().add(name="hog", exec="/bin/sleep", args=["60"], gpus=2))
        job(jobs := Jobs(), "after", tmp_path, gpus=2)
        await pilot.submit(jobs)
        assert (await pilot.status("after"))["after"] is JobState.QUEUED
        res = await pilot.resources()
        assert (res.used_gpus, res.free_gpus) == (2, 0)
        assert pilot.service_status()["Resources"]["UsedGpus"] == 2
        await pilot.cancel("hog")
        with anyio.fail_after(T):
            states = await pilot.wait4(["hog", "after"])
        assert states == {"hog": JobState.CANCELED, "after": JobState.SUCCEED}
    assert seen(tmp_path, "after")[1] == ["0", "1"]


async def test_no_gpus_on_the_host_means_failed_not_queued(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="g", exec="/bin/true", gpus=1))
        info = (await pilot.info("g"))["g"]
        assert info.state is JobState.FAILED
        assert "no GPU (none declared" in info.messages[0]
        assert "total_gpus" not in (await pilot.resources()).to_dict()
