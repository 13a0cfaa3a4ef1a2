"""The Pilot with real processes, on asyncio and trio. No sleeps: waits have timeouts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from procfs import alive

from qcgpj_async import (
    JobDescriptionError,
    JobNotFoundError,
    Jobs,
    JobState,
    NullExecutor,
    Pilot,
    PilotTimeoutError,
)

pytestmark = pytest.mark.anyio
T = 30  # seconds: a generous bound for anything that should take milliseconds


async def until(pilot: Pilot, label: str, state: JobState) -> None:
    """Wait, event-driven, until ``label`` (job or job:it) is in ``state``."""
    events = pilot.events()
    try:
        with anyio.fail_after(T):
            # no await between the status check and the subscription: nothing is missed
            while (await pilot.status(label))[label] is not state:
                await events.__anext__()
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def gone(pids: list[int]) -> list[int]:
    """The pids still alive after a bounded wait (SIGKILL is delivered asynchronously)."""
    with anyio.move_on_after(T):
        while any(alive(p) for p in pids):
            await anyio.sleep(0.01)  # no event tells when the kernel is done
    return [p for p in pids if alive(p)]


async def file_text(path: Path) -> str:
    """The content of a file a job writes, once it is there (bounded wait)."""
    with anyio.fail_after(T):
        while not path.exists() or not path.read_text():
            await anyio.sleep(0.01)  # a file another process writes
    return path.read_text()


def service_dir(wd: Path) -> Path:
    (d,) = wd.glob(".qcgpjm-service-*")
    return d


def report(wd: Path) -> dict[str, dict]:
    lines = (service_dir(wd) / "jobs.report").read_text().splitlines()
    return {e["name"]: e for e in map(json.loads, lines)}


async def test_iterations_write_their_outputs(tmp_path: Path) -> None:
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path) as pilot:
        names = await pilot.submit(
            Jobs().add(
                name="a",
                exec="/bin/echo",
                args=["${it}", "${itval}", "${jname}"],
                stdout="out/a.${it}",
                wd="w",
                iteration={"values": ["x", "y", "z"]},
            )
        )
        assert names == ["a"]
        assert await pilot.wait4(names, timeout=T) == {"a": JobState.SUCCEED}
        info = (await pilot.info("a", with_childs=True))["a"]
    for i, v in enumerate("xyz"):
        assert (tmp_path / "w" / "out" / f"a.{i}").read_text() == f"{i} {v} a\n"
    assert info.iterations is not None
    assert (info.iterations.total, info.iterations.finished, info.iterations.failed) == (3, 3, 0)
    assert info.childs is not None and [c.state for c in info.childs] == [JobState.SUCCEED] * 3
    rep = report(tmp_path)
    assert {"a", "a:0", "a:1", "a:2"} <= set(rep)
    assert rep["a:1"]["runtime"]["exit_code"] == "0"
    assert [h["state"] for h in rep["a:1"]["history"]] == [
        "QUEUED",
        "SCHEDULED",
        "EXECUTING",
        "SUCCEED",
    ]
    final = json.loads((service_dir(tmp_path) / "final_status.json").read_text())
    assert final["JobStats"]["FinishedJobs"] == 1
    assert final["IterationStats"]["FinishedIterations"] == 3


async def test_dependencies_and_omitted(tmp_path: Path) -> None:
    jobs = (
        Jobs()
        .add(name="first", script="echo 1 > order")
        .add(name="second", script="echo 2 >> order", after="first")
        .add(name="bad", exec="/bin/false")
        .add(name="skipped", exec="/bin/true", after=["first", "bad"])
        .add(name="skipped2", exec="/bin/true", after="skipped")
    )
    async with Pilot(nodes="4", wd=tmp_path) as pilot:
        await pilot.submit(jobs)
        states = await pilot.wait4(jobs.job_names(), timeout=T)
        info = (await pilot.info("skipped2"))["skipped2"]
    assert states == {
        "first": JobState.SUCCEED,
        "second": JobState.SUCCEED,
        "bad": JobState.FAILED,
        "skipped": JobState.OMITTED,
        "skipped2": JobState.OMITTED,
    }
    assert (tmp_path / "order").read_text() == "1\n2\n"
    assert "dependency skipped ended OMITTED" in info.messages[0]
    assert report(tmp_path)["bad"]["messages"] == "exit code 1"


async def test_min_max_allocation_seen_by_job(tmp_path: Path) -> None:
    async with Pilot(nodes="n1:2,n2:2", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs()
            .add(
                name="wide",
                script="echo $QCG_PM_NPROCS $QCG_PM_NNODES $QCG_PM_NODELIST "
                "$QCG_PM_TASKS_PER_NODE ${ncores} ${nnodes} ${nlist} > wide.out",
                numCores={"min": 2, "max": 8},
            )
            .add(
                name="node",
                script="echo $QCG_PM_NPROCS $QCG_PM_NODELIST > node.out",
                numNodes=1,
                after="wide",
            )
            .add(
                name="omp",
                script="echo $OMP_NUM_THREADS > omp.out",
                model="threads",
                numCores=3,
                after="node",
            )
        )
        await pilot.wait4all(timeout=T)
    assert (tmp_path / "wide.out").read_text().split() == [
        "4",
        "2",
        "n1,n2",
        "2,2",
        "4",
        "2",
        "n1,n2",
    ]
    assert (tmp_path / "node.out").read_text().split() == ["2", "n1"]
    assert (tmp_path / "omp.out").read_text() == "3\n"


async def test_cancel_queued_running_and_iterations(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs()
            .add(name="run", exec="sleep", args=["60"])
            .add(name="its", exec="sleep", args=["60"], iteration=3)
            .add(name="after", exec="/bin/true", after="run")
        )
        # iteration 0 of "its" runs beside "run"; 1 and 2 are queued
        await until(pilot, "its:0", JobState.EXECUTING)
        await until(pilot, "run", JobState.EXECUTING)  # trio starts tasks in any order
        assert await pilot.status(["run", "its:0", "its:1"]) == {
            "run": JobState.EXECUTING,
            "its:0": JobState.EXECUTING,
            "its:1": JobState.QUEUED,
        }
        assert await pilot.cancel(["its:1"]) == 1
        assert await pilot.status("its:1") == {"its:1": JobState.CANCELED}
        assert await pilot.cancel("its:0") == 1
        assert await pilot.cancel("run") == 1
        states = await pilot.wait4(["run", "after"], timeout=T)
        assert states == {"run": JobState.CANCELED, "after": JobState.OMITTED}
        await until(pilot, "its:2", JobState.EXECUTING)
        await until(pilot, "its:0", JobState.CANCELED)  # once its killed process has exited
        assert await pilot.status(["its:0", "its:1", "its"]) == {
            "its:0": JobState.CANCELED,
            "its:1": JobState.CANCELED,
            "its": JobState.EXECUTING,
        }
        assert await pilot.cancel("its:0") == 0  # already finished: nothing to do
        assert await pilot.cancel("its") == 1
        assert await pilot.wait4("its", timeout=T) == {"its": JobState.CANCELED}


async def test_wait_for_iterations(tmp_path: Path) -> None:
    # As the original client's wait4, which polls jobStatus: "job:it" names an iteration.
    gate = tmp_path / "go"
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs().add(
                name="its",
                iteration=3,
                script=f"if [ ${{it}} = 0 ]; then while [ ! -f {gate} ]; do sleep 0.01; done; fi; "
                "if [ ${it} = 1 ]; then exit 3; fi",
            )
        )
        with pytest.raises(JobNotFoundError):
            await pilot.wait4("its:3", timeout=T)
        await until(pilot, "its:0", JobState.EXECUTING)  # one core: 1 and 2 wait for it
        got: list[tuple[str, JobState]] = []
        waiting = anyio.Event()

        async def any_of() -> None:
            waiting.set()
            got.append(await pilot.wait4_any(["its:1", "its:0"], timeout=T))

        async with anyio.create_task_group() as tg:
            tg.start_soon(any_of)
            await waiting.wait()
            with pytest.raises(PilotTimeoutError, match="its:0"):
                await pilot.wait4(["its:0"], timeout=0.05)
            assert not got
            gate.touch()
        assert got == [("its:0", JobState.SUCCEED)]
        assert await pilot.wait4(["its:1", "its:2"], timeout=T) == {
            "its:1": JobState.FAILED,
            "its:2": JobState.SUCCEED,
        }
        assert await pilot.wait4_any("its:1", timeout=T) == ("its:1", JobState.FAILED)


async def test_wait_for_a_queued_iteration_of_a_cancelled_job(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="g", exec="sleep", args=["60"], iteration=3))
        await until(pilot, "g:0", JobState.EXECUTING)
        got: dict[str, JobState] = {}
        waiting = anyio.Event()

        async def wait_last() -> None:
            waiting.set()
            got.update(await pilot.wait4("g:2", timeout=T))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_last)
            await waiting.wait()
            assert await pilot.cancel("g") == 1
        assert got == {"g:2": JobState.CANCELED}


async def test_cancel_whole_iteration_job(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="its", exec="sleep", args=["60"], iteration=10))
        await until(pilot, "its:1", JobState.EXECUTING)
        assert await pilot.cancel("its") == 1
        assert await pilot.wait4("its", timeout=T) == {"its": JobState.CANCELED}
        info = (await pilot.info("its", with_childs=True))["its"]
    assert info.childs is not None
    assert {c.state for c in info.childs} == {JobState.CANCELED}
    # the ones that started were terminated; one cancelled before its start never started
    assert {c.runtime.exit_code for c in info.childs if c.runtime and c.runtime.pid} == {-15}


async def test_job_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path, kill_grace=0.5) as pilot:
        await pilot.submit(
            Jobs().add(
                name="stubborn",
                script="trap '' TERM; echo ready > ready; while true; do sleep 0.05; done",
            )
        )
        await until(pilot, "stubborn", JobState.EXECUTING)
        await file_text(tmp_path / "ready")  # the trap is set
        await pilot.cancel("stubborn")
        assert await pilot.wait4("stubborn", timeout=T) == {"stubborn": JobState.CANCELED}
        info = (await pilot.info("stubborn"))["stubborn"]
    assert info.runtime is not None and info.runtime.exit_code == -9


async def test_wall_time_kills_and_fails(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs()
            .add(name="long", exec="sleep", args=["60"], wt="1s")
            .add(name="short", exec="/bin/true", wt="1m")
        )
        states = await pilot.wait4(["long", "short"], timeout=T)
        info = (await pilot.info("long"))["long"]
    assert states == {"long": JobState.FAILED, "short": JobState.SUCCEED}
    assert info.messages == ("wall time exceeded (wt 1s)",)
    assert info.runtime is not None and info.runtime.exit_code == -15
    assert info.runtime.rtime is not None and 0.9 < info.runtime.rtime < 20


async def test_failures_carry_messages_and_others_go_on(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    (tmp_path / "afile").write_text("")
    jobs = (
        Jobs()
        .add(name="missing", exec="/no/such/program")
        .add(name="unwritable", exec="/bin/true", stdout="ro/out")
        .add(name="badwd", exec="/bin/true", wd="afile/sub")
        .add(name="nostdin", exec="/bin/cat", stdin="nothere")
        .add(name="signal", script="kill -SEGV $$")
        .add(name="good", exec="/bin/true")
    )
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(jobs)
        states = await pilot.wait4(jobs.job_names(), timeout=T)
        infos = await pilot.info(jobs.job_names())
    if os.geteuid() == 0:  # root writes anywhere
        states.pop("unwritable")
    assert states == {n: JobState.FAILED for n in states if n != "good"} | {
        "good": JobState.SUCCEED
    }
    assert "executable '/no/such/program' not found" in infos["missing"].messages[0]
    assert "cannot create working directory" in infos["badwd"].messages[0]
    assert "cannot open stdin" in infos["nostdin"].messages[0]
    assert infos["signal"].runtime is not None and infos["signal"].runtime.exit_code == -11
    assert infos["missing"].runtime is not None and infos["missing"].runtime.exit_code == -1


async def test_stdout_and_stderr_same_file_and_dollar_dollar(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs().add(
                name="both",
                script="echo out; echo err >&2; echo $$ > pid",
                stdout="log",
                stderr="log",
            )
        )
        await pilot.wait4all(timeout=T)
    assert sorted((tmp_path / "log").read_text().split()) == ["err", "out"]
    assert (tmp_path / "pid").read_text().strip().isdigit()


async def test_text_report_and_no_report(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path / "t", report_format="text") as pilot:
        await pilot.submit(Jobs().add(name="j", exec="/bin/true"))
    text = (service_dir(tmp_path / "t") / "jobs.report").read_text()
    assert text.startswith("j (SUCCEED)\n\t")
    assert "\tallocation: " in text and "\texit_code: 0" in text
    async with Pilot(nodes="1", wd=tmp_path / "n", report_format="none") as pilot:
        await pilot.submit(Jobs().add(name="j", exec="/bin/true"))
    assert not (service_dir(tmp_path / "n") / "jobs.report").exists()


async def test_submit_rejects_whole_batch(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        with pytest.raises(JobDescriptionError) as ei:
            await pilot.submit(
                [
                    {"name": "ok", "execution": {"exec": "/bin/true"}},
                    {"name": "big", "execution": {"exec": "x"}, "resources": {"numCores": 3}},
                    {
                        "name": "dep",
                        "execution": {"exec": "x"},
                        "dependencies": {"after": ["nope"]},
                    },
                ]
            )
        assert ei.value.problems == ("job 'dep': dependencies.after: unknown job 'nope'",)
        assert await pilot.list() == {}
        await pilot.submit({"name": "ok", "execution": {"exec": "/bin/true"}})
        with pytest.raises(JobDescriptionError, match="Job ok already exist"):
            await pilot.submit(Jobs().add(name="ok", exec="/bin/true"))


async def test_unknown_names_and_timeouts(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        for call in (pilot.wait4, pilot.status, pilot.info, pilot.cancel, pilot.remove):
            with pytest.raises(JobNotFoundError):
                await call(["nope"])
        await pilot.submit(Jobs().add(name="s", exec="sleep", args=["60"], iteration=2))
        with pytest.raises(JobNotFoundError, match="Unknown iteration 5 for job s"):
            await pilot.status("s:5")
        with pytest.raises(PilotTimeoutError):
            await pilot.wait4("s", timeout=0.05)
        with pytest.raises(PilotTimeoutError):
            await pilot.wait4all(timeout=0.05)
        with pytest.raises(PilotTimeoutError):
            await pilot.wait4_any(timeout=0.05)
        with pytest.raises(TimeoutError):  # the builtin too
            await pilot.wait4("s", timeout=0.01)
        await pilot.cancel("s")


async def test_wait4_any_and_remove(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(
            Jobs().add(name="slow", exec="sleep", args=["60"]).add(name="fast", exec="/bin/true")
        )
        assert await pilot.wait4_any(["slow", "fast"], timeout=T) == ("fast", JobState.SUCCEED)
        with pytest.raises(Exception, match="not finished - can not be removed"):
            await pilot.remove("slow")
        assert await pilot.remove("fast") == 1
        assert "fast" not in await pilot.list()
        await pilot.submit(Jobs().add(name="fast", exec="/bin/true"))  # the name is free again
        await pilot.wait4("fast", timeout=T)
        await pilot.cancel("slow")
        res = await pilot.resources()
        assert (res.total_nodes, res.total_cores) == (1, 2)


async def test_leaving_by_exception_kills_everything(tmp_path: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Pilot(nodes="2", wd=tmp_path, kill_grace=0.5) as pilot:
            await pilot.submit(
                Jobs()
                .add(
                    name="a",
                    script="sleep 60 & echo $! > child; wait",
                )
                .add(name="b", exec="sleep", args=["60"])
            )
            await until(pilot, "b", JobState.EXECUTING)
            await file_text(tmp_path / "child")
            info = await pilot.info(["a", "b"])
            pids = [i.runtime.pid for i in info.values() if i.runtime and i.runtime.pid]
            pids.append(int((tmp_path / "child").read_text()))
            raise RuntimeError("boom")
    assert len(pids) == 3
    assert await gone(pids) == []  # the job processes and the job's child
    final = json.loads((service_dir(tmp_path) / "final_status.json").read_text())
    assert final["JobStats"]["FinishedJobs"] == 2  # CANCELED counts as finished


async def test_leaving_by_cancellation_kills_everything(tmp_path: Path) -> None:
    pid = None
    with anyio.move_on_after(T) as scope:
        async with Pilot(nodes="1", wd=tmp_path, kill_grace=0.5) as pilot:
            await pilot.submit(Jobs().add(name="b", exec="sleep", args=["60"]))
            await until(pilot, "b", JobState.EXECUTING)
            pid = (await pilot.info("b"))["b"].runtime.pid  # type: ignore[union-attr]
            scope.cancel()
            await anyio.sleep(60)
    assert pid is not None
    assert await gone([pid]) == []


async def test_children_left_behind_are_killed_with_the_job(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="forker", script="sleep 60 & echo $! > child"))
        assert await pilot.wait4("forker", timeout=T) == {"forker": JobState.SUCCEED}
    assert await gone([int((tmp_path / "child").read_text())]) == []


async def test_null_executor_runs_the_api_without_processes(tmp_path: Path) -> None:
    async with Pilot(nodes="1000", wd=tmp_path, executor=NullExecutor()) as pilot:
        names = await pilot.submit(
            Jobs()
            .add(name="many", exec="/does/not/matter", iteration=5000)
            .add(name="next", exec="x", after="many", numNodes=1)
        )
        assert await pilot.wait4(names, timeout=T) == {
            "many": JobState.SUCCEED,
            "next": JobState.SUCCEED,
        }
        st = pilot.service_status()
    assert st["IterationStats"]["FinishedIterations"] == 5001
    assert not (tmp_path / "x").exists()


async def test_events_stream_every_change(tmp_path: Path) -> None:
    seen = []
    async with Pilot(nodes="1", wd=tmp_path, executor=NullExecutor()) as pilot:
        async with pilot.events() as events:  # subscribed from here on: nothing is missed
            await pilot.submit(Jobs().add(name="j", exec="x"))
            with anyio.fail_after(T):
                async for ev in events:
                    seen.append((ev.job, ev.iteration, ev.state.value))
                    if ev.iteration is None and ev.state.is_final:
                        break
    assert seen == [
        ("j", None, "QUEUED"),
        ("j", None, "SCHEDULED"),
        ("j", None, "EXECUTING"),
        ("j", None, "SUCCEED"),
    ]


async def test_event_stream_ends_when_the_pilot_closes(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path, executor=NullExecutor()) as pilot:
        events = pilot.events()
        await pilot.submit(Jobs().add(name="j", exec="x"))
    with anyio.fail_after(T):
        got = [ev.state.value async for ev in events]
    assert got == ["QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED"]


async def test_closed_pilot_refuses_work(tmp_path: Path) -> None:
    from qcgpj_async import PilotClosedError

    pilot = Pilot(nodes="1", wd=tmp_path)
    with pytest.raises(PilotClosedError):
        await pilot.submit(Jobs().add(name="j", exec="x"))
    async with pilot:
        pass
    with pytest.raises(PilotClosedError):
        await pilot.submit(Jobs().add(name="j", exec="x"))


async def test_set_env_before_and_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QCGPJ_INHERITED", "from-the-process")
    monkeypatch.delenv("QCGPJ_NEW", raising=False)
    pilot = Pilot(nodes="2", wd=tmp_path)
    pilot.set_env("QCGPJ_NEW", "before")
    pilot.set_env("QCGPJ_INHERITED", "overridden")

    def job(name: str) -> Jobs:
        return Jobs().add(
            name=name, script="echo ${QCGPJ_NEW-unset} $QCGPJ_INHERITED", stdout=f"{name}.out"
        )

    async with pilot:
        await pilot.submit(job("a"))
        assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
        pilot.set_env("QCGPJ_NEW", "during")
        await pilot.submit(job("b"))
        assert await pilot.wait4("b", timeout=T) == {"b": JobState.SUCCEED}
        pilot.set_env("QCGPJ_NEW", None)
        pilot.set_env("QCGPJ_INHERITED", None)  # back to what this process has
        await pilot.submit(job("c"))
        assert await pilot.wait4("c", timeout=T) == {"c": JobState.SUCCEED}
    assert (tmp_path / "a.out").read_text() == "before overridden\n"
    assert (tmp_path / "b.out").read_text() == "during overridden\n"
    assert (tmp_path / "c.out").read_text() == "unset from-the-process\n"
    assert "QCGPJ_NEW" not in pilot.env


async def test_report_lines_are_written_while_the_pilot_runs(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="a", exec="/bin/true"))
        assert await pilot.wait4("a", timeout=T) == {"a": JobState.SUCCEED}
        assert report(tmp_path)["a"]["state"] == "SUCCEED"  # written when wait4 returns
        await pilot.submit(Jobs().add(name="b", exec="/bin/true"))
        await until(pilot, "b", JobState.SUCCEED)  # no wait4: the flusher writes it
        with anyio.fail_after(T):
            while "b" not in report(tmp_path):
                await anyio.sleep(0.01)  # a file the pilot writes within REPORT_DELAY
        log = (service_dir(tmp_path) / "service.log").read_text()
        assert " b SUCCEED " in log


async def test_nodes_as_a_number_of_cores(tmp_path: Path) -> None:
    async with Pilot(nodes=3, wd=tmp_path) as pilot:
        res = await pilot.resources()
        assert (res.total_nodes, res.total_cores) == (1, 3)
    with pytest.raises(JobDescriptionError, match="invalid entry '0'"):
        Pilot(nodes=0, wd=tmp_path)


async def test_the_journal_holds_every_end_when_a_wait_returns(tmp_path: Path) -> None:
    # Its lines are written once per batch of events (and per submit), not per event:
    # still before a waiter wakes, as a resume relies on them.
    async with Pilot(nodes=4, wd=tmp_path) as pilot:
        await pilot.submit(Jobs().add(name="it", exec="/bin/true", iteration=40))
        assert await pilot.wait4("it", timeout=30) == {"it": JobState.SUCCEED}
        lines = (Path(pilot.service_path) / "journal.jsonl").read_text().splitlines()
        ends = [json.loads(x) for x in lines if '"t":"end"' in x]
        assert sorted(e["it"] for e in ends if e["it"] is not None) == list(range(40))
        assert [e["state"] for e in ends if e["it"] is None] == ["SUCCEED"]


async def test_a_submit_pauses_the_garbage_collector_and_leaves_it_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A submit makes many runs at once, none of them garbage: no collection meanwhile.
    import gc

    async with Pilot(nodes=2, wd=tmp_path) as pilot:
        seen: list[bool] = []
        submit = pilot._engine.submit
        monkeypatch.setattr(
            pilot._engine, "submit", lambda *a: (seen.append(gc.isenabled()), submit(*a))[1]
        )
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            try:
                await pilot.submit(Jobs().add(name=f"j{enabled}", exec="/bin/true", iteration=4))
                assert gc.isenabled() is enabled
            finally:
                gc.enable()
        await pilot.wait4all(timeout=30)
    assert seen == [False, False]
