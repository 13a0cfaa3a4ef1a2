"""The fork server: jobs start and are reaped there; it failing or its pilot dying loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from qcgpj_async import Jobs, JobState, Pilot
from qcgpj_async.executors import LocalExecutor
from qcgpj_async.executors._forkserver import Reader, pack

pytestmark = pytest.mark.anyio
T = 30


def test_messages_are_framed_across_reads() -> None:
    msgs = [
        ("started", 1, 4242),
        ("failed", 2, "job b: executable 'x' not found"),
        ("start", 3, "c:1", ["/bin/echo", "é"], {"A": "1"}, ["B"], "/w", None, "o", "o"),
    ]
    data = b"".join(pack(m) for m in msgs) * 50
    r, w = os.pipe()
    try:
        reader, got = Reader(r), []
        for i in range(0, len(data), 7):  # a read may end anywhere, even inside a header
            os.write(w, data[i : i + 7])
            got += reader.read() or []
        os.close(w)
        assert reader.read() is None  # the end of the pipe
    finally:
        os.close(r)
    assert got == msgs * 50


def running(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not reaped yet) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or being reaped while read (ESRCH)
        return False


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_jobs_are_children_of_the_fork_server(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        (server,) = children(os.getpid())  # started with the pilot
        await pilot.submit(Jobs().add(name="a", script="echo $PPID > ppid", iteration=3))
        assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
        assert children(os.getpid()) == [server]
    assert int((tmp_path / "ppid").read_text()) == server
    assert children(os.getpid()) == []  # gone with the pilot


async def test_an_unused_fork_server_is_stopped_with_the_pilot(tmp_path: Path) -> None:
    for _ in range(3):  # closed at once: before its interpreter has even started
        async with Pilot(nodes="2", wd=tmp_path):
            (server,) = children(os.getpid())
        assert children(os.getpid()) == []
        assert not os.path.exists(f"/proc/{server}")  # reaped, not a zombie


async def test_without_the_fork_server_jobs_are_our_children(tmp_path: Path) -> None:
    ex = LocalExecutor(fork_server=False)
    async with Pilot(nodes="2", wd=tmp_path, executor=ex) as pilot:
        await pilot.submit(Jobs().add(name="a", script="echo $PPID > ppid"))
        assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
    assert int((tmp_path / "ppid").read_text()) == os.getpid()


async def test_a_dead_fork_server_fails_its_jobs_and_the_next_start_here(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="long", script="echo $$ > pid; exec sleep 60"))
        with anyio.fail_after(T):
            while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
                await anyio.sleep(0.01)  # a file the job writes
        job_pid = int((tmp_path / "pid").read_text())
        (server,) = children(os.getpid())
        os.kill(server, signal.SIGKILL)
        assert await pilot.wait4("long", timeout=T) == {"long": JobState.FAILED}
        info = (await pilot.info("long"))["long"]
        assert info.runtime is not None and info.runtime.exit_code == -signal.SIGKILL
        with anyio.fail_after(T):  # its process was killed, not left running
            while running(job_pid):
                await anyio.sleep(0.01)
        await pilot.submit(Jobs().add(name="next", script="echo $PPID > ppid"))
        assert await pilot.wait4("next", timeout=T) == {"next": JobState.SUCCEED}
    assert int((tmp_path / "ppid").read_text()) == os.getpid()  # started here instead


async def test_a_fork_server_that_cannot_start_leaves_jobs_to_the_pilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qcgpj_async.executors import _forkserver_link

    monkeypatch.setattr(_forkserver_link.sys, "executable", str(tmp_path / "no-python"))
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="a", script="echo $PPID > ppid.${it}", iteration=3))
        assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
    assert {int((tmp_path / f"ppid.{i}").read_text()) for i in range(3)} == {os.getpid()}


async def test_a_fork_server_that_dies_at_once_leaves_jobs_to_the_pilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qcgpj_async.executors import _forkserver_link

    monkeypatch.setattr(_forkserver_link, "_SCRIPT", str(tmp_path / "no-such-script.py"))
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="a", script="echo $PPID > ppid.${it}", iteration=4))
        assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
    assert {int((tmp_path / f"ppid.{i}").read_text()) for i in range(4)} == {os.getpid()}


async def test_a_bug_in_a_callback_fails_the_pilot_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pilot = Pilot(nodes="2", wd=tmp_path)

    def broken(*args: object, **kw: object) -> list[object]:
        raise RuntimeError("engine bug")

    with anyio.fail_after(T), pytest.raises(Exception) as caught:  # an exception group
        async with pilot:
            monkeypatch.setattr(pilot._engine, "exited", broken)
            await pilot.submit(Jobs().add(name="a", exec="/bin/true"))
            await anyio.sleep_forever()  # the bug ends the block
    assert "RuntimeError('engine bug')" in repr(caught.value)  # in the task group's group
    log = next(tmp_path.glob(".qcgpjm-service-*/service.log")).read_text()
    assert "internal error handling a job's start or end" in log


async def test_each_job_gets_the_base_environment_and_only_its_own_variables(
    tmp_path: Path,
) -> None:
    def env_of(name: str) -> dict[str, str]:
        lines = (tmp_path / f"{name}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    dump = "env > ${jname}.env"
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs().add(
                name="t",
                exec="bash",
                args=["-c", dump],
                model="threads",
                numCores=2,
                env={"ONLY_T": "yes"},
            )
        )
        assert await pilot.wait4("t", timeout=T) == {"t": JobState.SUCCEED}
        await pilot.submit(Jobs().add(name="plain", script=dump))
        assert await pilot.wait4("plain", timeout=T) == {"plain": JobState.SUCCEED}
        pilot.set_env("QCGPJ_TEST_SET", "1")
        await pilot.submit(Jobs().add(name="set", script=dump))
        assert await pilot.wait4("set", timeout=T) == {"set": JobState.SUCCEED}
        pilot.set_env("QCGPJ_TEST_SET", None)
        await pilot.submit(Jobs().add(name="unset", script=dump))
        assert await pilot.wait4("unset", timeout=T) == {"unset": JobState.SUCCEED}
    t, plain, set_, unset = (env_of(n) for n in ("t", "plain", "set", "unset"))
    assert (t["OMP_NUM_THREADS"], t["ONLY_T"], t["QCG_PM_NPROCS"]) == ("2", "yes", "2")
    assert "OMP_NUM_THREADS" not in plain and "ONLY_T" not in plain  # not the last job's
    assert plain["QCG_PM_NPROCS"] == "1" and plain["PATH"] == os.environ["PATH"]
    assert len({e["QCG_PM_STEP_ID"] for e in (t, plain, set_, unset)}) == 4
    assert set_["QCGPJ_TEST_SET"] == "1" and "QCGPJ_TEST_SET" not in unset
