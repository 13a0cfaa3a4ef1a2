"""jobs.report lines built as text are exactly what json.dumps writes of the original's dict."""

from __future__ import annotations

import datetime
import json
import random
import time
from pathlib import Path

import pytest

from qcgpj_async import Jobs, Pilot
from qcgpj_async.runtime._info import RunInfo
from qcgpj_async.runtime._places import RunPlaces
from qcgpj_async.runtime._service import run_json

pytestmark = pytest.mark.anyio
T = 30


def reference(label: str, run, messages: str | None, places: RunPlaces) -> str:  # type: ignore[no-untyped-def]
    entry = {
        "name": label,
        "state": run.state.value,
        "history": [
            {"state": s.value, "date": datetime.datetime.fromtimestamp(t).isoformat()}
            for s, t in run.history
        ],
        "runtime": RunInfo.of(run, places).to_dict(),
    }
    if messages:
        entry["messages"] = messages
    return json.dumps(entry)


async def test_run_lines_match_json_dumps(tmp_path: Path) -> None:
    jobs = (
        Jobs()
        .add(name="plain", exec="/bin/true")
        .add(name="fails", script="exit 3")
        .add(name="missing", exec="no-such-program-here")
        .add(name="it", exec="/bin/true", iteration=3, wd="wd-zażółć x\ty")
        .add(name="ünïcode-żółw", exec="/bin/true")
    )
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(jobs)
        await pilot.wait4all(timeout=T)
        checked = 0
        places = pilot._recorder.places
        for name, job in pilot._engine.jobs.items():
            for index, run in job.runs.items():
                label = name if index is None else f"{name}:{index}"
                for messages in (run.message, None, 'two\nlines "quoted" \\ ü'):
                    wd, pname = places.wd(run.id), places.pname(run.id)
                    assert wd is not None and pname is not None  # every run here was launched
                    line = run_json(label, run, str(run.allocation), messages, wd, pname)
                    assert line == reference(label, run, messages, places)
                    checked += 1
        assert checked >= 3 * 7
        kinds = {
            (r.exit_code, r.pid is None)
            for j in pilot._engine.jobs.values()
            for r in j.runs.values()
        }
        assert (3, False) in kinds and (-1, True) in kinds  # a failure, and a run never started


def test_iso_dates_match_datetime() -> None:
    from qcgpj_async.runtime._service import _iso

    rng = random.Random(5)
    now = time.time()
    stamps = [now + rng.uniform(-1e6, 1e6) for _ in range(20_000)]
    stamps += [
        float(int(now)),
        int(now) + 0.5e-6,
        int(now) + 1.5e-6,
        int(now) + 0.9999995,
        int(now) + 0.9999994,
        int(now) + 2.5e-6,
        0.0,
        1e9 + 0.25,
        -1.5,
    ]
    stamps += [int(now) + k / 1e6 for k in range(2000)]  # every microsecond near a second
    for t in stamps:
        assert _iso(t) == datetime.datetime.fromtimestamp(t).isoformat(), t


async def test_job_entries_carry_resources_and_dependencies(tmp_path: Path) -> None:
    # as the original's: the default resources spelled out, dependencies where given
    jobs = (
        Jobs()
        .add(name="a", exec="/bin/true")
        .add(name="b", exec="/bin/true", numCores=2, after=["a"])
        .add(name="it", exec="/bin/true", iteration=2, after=["a"])
    )
    async with Pilot(nodes="2", wd=tmp_path) as pilot:
        await pilot.submit(jobs)
        await pilot.wait4all(timeout=T)
        report = pilot.report_path
    assert report is not None
    entries = {e["name"]: e for e in map(json.loads, Path(report).read_text().splitlines())}
    assert entries["a"]["resources"] == {"numCores": {"exact": 1}}
    assert "dependencies" not in entries["a"]
    assert entries["b"]["resources"] == {"numCores": {"exact": 2}}
    assert entries["b"]["dependencies"] == {"after": ["a"]}
    assert entries["it"]["dependencies"] == {"after": ["a"]}  # the iteration job's own line
    assert entries["it"]["execution"]["exec"] == "/bin/true"
    assert "dependencies" not in entries["it:0"] and "execution" not in entries["it:0"]
