"""The journal and Pilot(resume=...): what ended is kept, the rest runs again, exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest
from reliability_helpers import T, alive, ended, journal, report

from qcgpj_async import JobDescriptionError, Jobs, JobState, NullExecutor, Pilot
from qcgpj_async.runtime._journal import (
    JournalError,
    find_journal,
    kill_orphans,
    load_journal,
    proc_start,
)

pytestmark = pytest.mark.anyio
OK, FAIL = JobState.SUCCEED, JobState.FAILED


class Counting(NullExecutor):
    """The null executor through the runtime's launch path, counting what it starts."""

    instant = False


async def test_journal_records_submits_ends_cancels_removes(tmp_path: Path) -> None:
    async with Pilot(nodes="2", wd=tmp_path, instance_id="j") as pilot:
        await pilot.submit(
            Jobs()
            .add(name="it", exec="/bin/true", iteration=3)
            .add(name="bad", script="exit 3")
            .add(name="q", exec="sleep", args=["30"], after="bad")
        )
        assert await pilot.wait4(["it", "bad", "q"], timeout=T) == {
            "it": OK,
            "bad": FAIL,
            "q": JobState.OMITTED,
        }
        await pilot.submit(
            {
                "name": "c",
                "execution": {"exec": "sleep", "args": ["30"]},
                "dependencies": {"after": ["it"]},
            }
        )
        await pilot.cancel("c")
        await pilot.wait4("c", timeout=T)
        await pilot.remove("bad")
    recs = journal(tmp_path / ".qcgpjm-service-j")
    assert [r["t"] for r in recs][:2] == ["open", "submit"]
    assert recs[0]["v"] == 1 and recs[0]["from"] is None
    assert [j["name"] for j in recs[1]["jobs"]] == ["it", "bad", "q"]
    assert recs[1]["jobs"][2]["dependencies"] == {"after": ["bad"]}
    assert set(recs[1]["vars"]) >= {"rcnt", "uniq", "date"}
    assert ended(recs) == {
        "it:0": "SUCCEED",
        "it:1": "SUCCEED",
        "it:2": "SUCCEED",
        "it": "SUCCEED",
        "bad": "FAILED",
        "q": "OMITTED",
        "c": "CANCELED",
    }
    bad = next(r for r in recs if r.get("job") == "bad")
    assert (bad["code"], bad["msg"]) == (3, "exit code 3")
    q = next(r for r in recs if r.get("job") == "q")
    assert q["code"] is None and "dependency bad ended FAILED" in q["msg"]
    assert {"t": "cancel", "names": ["c"]} in recs
    assert {"t": "remove", "names": ["bad"]} in recs
    assert recs[-1]["t"] == "close" and recs[-1]["interrupted"] == 0


async def test_resume_keeps_what_ended_and_runs_exactly_the_rest(tmp_path: Path) -> None:
    ex = NullExecutor()
    async with Pilot(nodes="4", wd=tmp_path, executor=ex, instance_id="a") as pilot:
        await pilot.submit(Jobs().add(name="done", exec="x").add(name="its", exec="x", iteration=5))
    # A journal as a crash leaves it: iterations 3 and 1 of "its" ended (not a prefix),
    # "done" ended, the job "its" did not.
    recs = journal(tmp_path / ".qcgpjm-service-a")
    keep = [
        r
        for r in recs
        if r["t"] != "end" or (r["job"], r["it"]) in {("done", None), ("its", 3), ("its", 1)}
    ]
    (tmp_path / ".qcgpjm-service-a" / "journal.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in keep if r["t"] != "close")
    )
    ex2 = Counting()
    async with Pilot(nodes="4", wd=tmp_path, executor=ex2, resume=tmp_path, instance_id="b") as p:
        assert await p.status(["done", "its:1", "its:3"]) == {"done": OK, "its:1": OK, "its:3": OK}
        assert await p.wait4("its", timeout=T) == {"its": OK}
        info = (await p.info("its", with_childs=True))["its"]
    assert ex2.started == 3  # iterations 0, 2, 4
    assert info.iterations is not None and info.iterations.finished == 5
    recs2 = journal(tmp_path / ".qcgpjm-service-b")
    assert recs2[0]["from"] == str(tmp_path / ".qcgpjm-service-a" / "journal.jsonl")
    assert set(ended(recs2)) == {"done", "its", *(f"its:{i}" for i in range(5))}
    rep = report(tmp_path / ".qcgpjm-service-b")
    assert rep["done"]["state"] == "SUCCEED" and rep["its:3"]["runtime"]["exit_code"] == "0"
    # resume again, from the resumed run: nothing left to do
    ex3 = Counting()
    async with Pilot(nodes="4", wd=tmp_path, executor=ex3, resume=tmp_path, instance_id="c") as p:
        assert await p.list() == {"done": OK, "its": OK}
    assert ex3.started == 0


async def test_resume_keeps_variables_dependencies_cancels_and_removes(tmp_path: Path) -> None:
    wd = tmp_path
    async with Pilot(nodes="2", wd=wd, instance_id="a", kill_grace=0.2) as pilot:
        await pilot.submit(Jobs().add(name="gone", exec="/bin/true"))
        await pilot.wait4("gone", timeout=T)
        await pilot.remove("gone")
        await pilot.submit(
            Jobs()
            .add(name="u", script="echo ${uniq} ${rcnt} > uniq.${rcnt}")
            .add(name="gate", exec="sleep", args=["30"])
            .add(name="after", script="echo ran > after", after=["gate", "u"])
            .add(name="user_cancel", exec="/bin/true", after="gate")
        )
        await pilot.wait4("u", timeout=T)
        await pilot.cancel("user_cancel")
        first = (wd / "uniq.2").read_text()
        await pilot.cancel("gate")  # a user cancel: it stays cancelled
    # The user cancelled "gate": "after" was omitted; a resume keeps both
    async with Pilot(nodes="2", wd=wd, instance_id="b", resume=wd) as p:
        assert await p.list() == {
            "u": OK,
            "gate": JobState.CANCELED,
            "after": JobState.OMITTED,
            "user_cancel": JobState.CANCELED,
        }
        # the removed job's name is free; request counters go on
        await p.submit(Jobs().add(name="gone", script="echo ${rcnt} > rcnt"))
        await p.wait4all(timeout=T)
    assert (wd / "rcnt").read_text() == "3\n"
    assert (wd / "uniq.2").read_text() == first


async def test_interrupted_jobs_run_again_on_resume(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        async with Pilot(nodes="2", wd=tmp_path, instance_id="a", kill_grace=0.5) as pilot:
            await pilot.submit(
                Jobs()
                .add(name="slow", script="echo x >> runs; exec sleep 30")
                .add(name="next", script="echo n >> runs", after="slow")
                .add(name="its", script="echo ${it} >> its", iteration=2, after="slow")
            )
            with anyio.fail_after(T):
                while not (tmp_path / "runs").exists():
                    await anyio.sleep(0.01)  # a file the job writes
            raise RuntimeError("boom")
    recs = journal(tmp_path / ".qcgpjm-service-a")
    assert ended(recs) == {}  # stopped by the exception: not journaled as ended
    assert recs[-1] == {"t": "close", "time": recs[-1]["time"], "interrupted": 3}
    assert report(tmp_path / ".qcgpjm-service-a")["slow"]["state"] == "CANCELED"
    async with Pilot(nodes="2", wd=tmp_path, instance_id="b", resume=tmp_path) as p:
        with anyio.fail_after(T):
            while (tmp_path / "runs").read_text() != "x\nx\n":
                await anyio.sleep(0.01)  # the rerun writes it
        await p.cancel("slow")
        assert await p.wait4(["slow", "next", "its"], timeout=T) == {
            "slow": JobState.CANCELED,
            "next": JobState.OMITTED,
            "its": JobState.OMITTED,
        }
    assert (tmp_path / "runs").read_text() == "x\nx\n"


async def test_long_running_processes_are_journaled_with_their_start(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path, instance_id="a", journal_sync=0.05) as pilot:
        await pilot.submit(Jobs().add(name="s", script="echo $$ > pid; exec sleep 30"))
        d = tmp_path / ".qcgpjm-service-a"
        with anyio.fail_after(T):
            while not [r for r in journal(d) if r["t"] == "run"]:
                await anyio.sleep(0.02)  # the journal is written by the sync task
        (rec,) = [r for r in journal(d) if r["t"] == "run"]
        pid = int((tmp_path / "pid").read_text())
        assert (rec["job"], rec["it"], rec["pid"]) == ("s", None, pid)
        assert rec["start"] == proc_start(pid)
        await pilot.cancel("s")


def test_kill_orphans_only_signals_the_recorded_process(tmp_path: Path) -> None:
    leader = subprocess.Popen(["sleep", "60"], start_new_session=True)
    not_leader = subprocess.Popen(["sleep", "60"])  # in our own group and session
    try:
        start = proc_start(leader.pid)
        assert start is not None
        other = proc_start(not_leader.pid)
        assert other is not None
        # wrong start time (a reused pid), not a group leader, no such process: untouched
        assert (
            kill_orphans(
                [("x", leader.pid, start + 1), ("y", not_leader.pid, other), ("z", 2**22 + 1, 0)]
            )
            == []
        )
        assert alive(leader.pid) and alive(not_leader.pid)
        assert kill_orphans([("x", leader.pid, start)]) == [("x", leader.pid)]
        assert leader.wait(timeout=T) == -signal.SIGKILL
        assert kill_orphans([("x", leader.pid, start)]) == []  # gone: nothing to do
    finally:
        for p in (leader, not_leader):
            p.kill()
            p.wait()


def test_journal_reading_errors(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is not a directory"):
        load_journal(tmp_path / "nope")
    with pytest.raises(JournalError, match="neither a service directory"):
        load_journal(tmp_path)
    d = tmp_path / ".qcgpjm-service-x"
    d.mkdir()
    (d / "journal.jsonl").write_text('{"t": "something else"}\n')
    with pytest.raises(JournalError, match="not a qcgpj_async journal"):
        load_journal(d)
    head = json.dumps({"t": "open", "v": 1, "id": "x", "time": 1.0, "from": None})
    sub = json.dumps(
        {
            "t": "submit",
            "time": 1.0,
            "vars": {"rcnt": "1"},
            "jobs": [{"name": "a", "execution": {"exec": "x"}}],
        }
    )
    (d / "journal.jsonl").write_text(f"{head}\n{{broken\n{sub}\n")
    with pytest.raises(JournalError, match=r"line 2 is not a journal record"):
        load_journal(d)
    (d / "journal.jsonl").write_text(f'{head}\n{{"t": "end", "job": "a"}}\n')
    # an end for an unknown job is ignored; a bad record of a known one is an error
    assert load_journal(d).specs == []
    (d / "journal.jsonl").write_text(f'{head}\n{sub}\n{{"t": "end", "job": "a", "it": null}}\n')
    with pytest.raises(JournalError, match="line 3: bad 'end' record"):
        load_journal(d)
    bad_job = json.dumps(
        {"t": "submit", "time": 1.0, "vars": {}, "jobs": [{"name": "a", "execution": {}}]}
    )
    (d / "journal.jsonl").write_text(f"{head}\n{bad_job}\n")
    with pytest.raises(JournalError, match="a journaled job is not valid"):
        load_journal(d)
    # a torn last line (the service died while writing it) is no error
    (d / "journal.jsonl").write_text(f'{head}\n{sub}\n{{"t": "end", "job": "a", "it": nu')
    rec = load_journal(d)
    assert [s.name for s in rec.specs] == ["a"] and rec.outcomes == {}


def test_newest_service_directory_is_taken(tmp_path: Path) -> None:
    for name, when in (("old", 1_000), ("new", 2_000), ("mid", 1_500)):
        d = tmp_path / f".qcgpjm-service-{name}"
        d.mkdir()
        (d / "journal.jsonl").write_text("")
        os.utime(d / "journal.jsonl", (when, when))
    (tmp_path / ".qcgpjm-service-nojournal").mkdir()
    assert find_journal(tmp_path) == str(tmp_path / ".qcgpjm-service-new" / "journal.jsonl")
    assert find_journal(tmp_path / ".qcgpjm-service-old").endswith("-old/journal.jsonl")
    with pytest.raises(JournalError, match="empty journal"):
        load_journal(tmp_path)


async def test_resume_on_smaller_resources_is_a_clear_error(tmp_path: Path) -> None:
    async with Pilot(nodes="4", wd=tmp_path, executor=NullExecutor()) as pilot:
        await pilot.submit(Jobs().add(name="wide", exec="x", numCores=4))
    with pytest.raises(JobDescriptionError, match="Not enough resources for job wide"):
        Pilot(nodes="2", wd=tmp_path, resume=tmp_path)
    assert len(list(tmp_path.glob(".qcgpjm-service-*"))) == 1  # nothing was created
