"""Standard dict <-> model round trips, the simple format, the Jobs builder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcgpj_async import JobDescriptionError, Jobs, JobState
from qcgpj_async.model import job_from_std, job_to_std, jobs_from_std

names = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
pos = st.integers(1, 1000)


@st.composite
def counts(draw: st.DrawFn, with_sched: bool) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["exact", "min", "max", "range", "sched"]
            if with_sched
            else ["exact", "min", "max", "range"]
        )
    )
    if kind == "exact":
        return {"exact": draw(pos)}
    if kind == "min":
        return {"min": draw(pos)}
    if kind == "max":
        return {"max": draw(pos)}
    if kind == "range":
        lo = draw(pos)
        return {"min": lo, "max": draw(st.integers(lo, 2000))}
    sched: dict[str, Any] = {"name": draw(st.sampled_from(["maximum-iters", "split-into"]))}
    if draw(st.booleans()):
        sched["params"] = {"parts": draw(pos)}
    out: dict[str, Any] = {"scheduler": sched}
    if draw(st.booleans()):
        out["min"] = draw(pos)
    return out


@st.composite
def std_jobs(draw: st.DrawFn) -> dict[str, Any]:
    job: dict[str, Any] = {"name": draw(names)}
    if draw(st.booleans()):
        execution: dict[str, Any] = {"exec": draw(text.filter(bool))}
        if draw(st.booleans()):
            execution["args"] = draw(st.lists(text, min_size=1, max_size=4))
        if draw(st.booleans()):
            execution["env"] = draw(st.dictionaries(names, text, min_size=1, max_size=3))
    else:
        execution = {"script": draw(text.filter(bool))}
    for key in ("wd", "stdin", "stdout", "stderr", "venv"):
        if draw(st.booleans()):
            execution[key] = draw(text)
    if draw(st.booleans()):
        execution["modules"] = draw(st.lists(names, min_size=1, max_size=3))
    if draw(st.booleans()):
        execution["model"] = draw(st.sampled_from(["default", "threads", "openmpi", "srunmpi"]))
    if draw(st.booleans()):
        execution["model_opts"] = {"mpirun": draw(text), "mpirun_args": ["-x"]}
    job["execution"] = execution
    has_it = draw(st.booleans())
    if has_it:
        if draw(st.booleans()):
            start = draw(st.integers(0, 100))
            job["iteration"] = {"start": start, "stop": start + draw(pos)}
        else:
            job["iteration"] = {
                "values": draw(st.lists(text | st.integers(), min_size=1, max_size=5))
            }
    resources: dict[str, Any] = {}
    if draw(st.booleans()):
        resources["numCores"] = draw(counts(has_it))
    if draw(st.booleans()):
        resources["numNodes"] = draw(counts(has_it))
    if draw(st.booleans()):
        resources["wt"] = draw(st.sampled_from(["10m", "1h30m", "90s", "2h", "1h1m1s"]))
    if draw(st.booleans()):
        resources["nodeCrs"] = {"gpu": draw(st.integers(1, 8))}
    if resources:
        job["resources"] = resources
    if draw(st.booleans()):
        job["dependencies"] = {
            "after": draw(
                st.lists(
                    names.filter(lambda n: n != job["name"]).map(
                        lambda n: n + draw(st.sampled_from(["", ":3", ":${it}"]))
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
        }
    if draw(st.booleans()):
        job["attributes"] = {"owner": draw(text), "n": draw(st.integers())}
    return job


@given(std_jobs())
def test_std_round_trip_is_exact(job: dict[str, Any]) -> None:
    spec = job_from_std(job)
    assert job_to_std(spec) == job
    assert job_from_std(job_to_std(spec)) == spec


@given(std_jobs())
def test_std_survives_json(job: dict[str, Any]) -> None:
    assert job_to_std(job_from_std(json.loads(json.dumps(job)))) == job


@given(std_jobs())
def test_batch_std_dicts_are_the_models_std(job: dict[str, Any]) -> None:
    # The journal records these dicts in place of job_to_std of each model.
    raws = [job, {**job, "name": job["name"] + "_2"}]
    stds: list[dict[str, Any]] = []
    specs = jobs_from_std(raws, stds)
    assert stds == [job_to_std(s) for s in specs]


def test_batch_std_dicts_are_normalized() -> None:
    raw = {
        "name": "a",
        "execution": {"exec": "x", "args": [1, 2.5], "model": "THREADS", "env": {"N": 3}},
        "resources": {"numCores": 2, "wt": "10m"},
        "attributes": None,
    }
    stds: list[dict[str, Any]] = []
    [spec] = jobs_from_std([raw], stds)
    assert stds == [job_to_std(spec)]
    assert stds[0]["execution"] == {
        "exec": "x",
        "args": ["1", "2.5"],
        "model": "threads",
        "env": {"N": "3"},
    }
    assert stds[0]["resources"]["numCores"] == {"exact": 2}
    assert "attributes" not in stds[0]


def test_simple_format_maps_to_standard() -> None:
    jobs = Jobs().add(name="a", exec="/bin/date", iteration=4)
    assert jobs.to_std() == [
        {"name": "a", "execution": {"exec": "/bin/date"}, "iteration": {"start": 0, "stop": 4}}
    ]
    jobs.add(
        name="b",
        script="echo ${it}",
        stdout="b.${it}",
        iteration=["x", "y"],
        after="a",
        numCores={"min": 2, "max": 4},
        numNodes=1,
        wt="10m",
        modules="gcc",
        venv="/v",
        model="threads",
        attributes={"k": 1},
    )
    assert jobs.to_std()[1] == {
        "name": "b",
        "execution": {
            "script": "echo ${it}",
            "stdout": "b.${it}",
            "modules": ["gcc"],
            "venv": "/v",
            "model": "threads",
        },
        "resources": {"numCores": {"min": 2, "max": 4}, "numNodes": {"exact": 1}, "wt": "10m"},
        "iteration": {"values": ["x", "y"]},
        "dependencies": {"after": ["a"]},
        "attributes": {"k": 1},
    }
    assert jobs.job_names() == ["a", "b"]
    assert [j.name for j in jobs.jobs()] == ["a", "b"]


def test_simple_format_generates_uuid_name() -> None:
    (name,) = Jobs().add(exec="/bin/date").job_names()
    assert re.fullmatch(r"[0-9a-f-]{36}", name)


def test_builder_remove_duplicates_and_files(tmp_path: Path) -> None:
    jobs = Jobs().add(name="a", exec="x").add_std({"name": "b", "execution": {"script": "y"}})
    with pytest.raises(JobDescriptionError, match="Job a already exist"):
        jobs.add(name="a", exec="z")
    path = tmp_path / "jobs.json"
    jobs.save_to_file(path)
    again = Jobs().load_from_file(path)
    assert again.to_std() == jobs.to_std()
    again.remove("a")
    assert again.job_names() == ["b"]
    with pytest.raises(JobDescriptionError, match="not in this job list"):
        again.remove("a")
    with pytest.raises(JobDescriptionError, match="Job b already exist"):
        again.load_from_file(path)
    assert again.job_names() == ["b"]


def test_load_from_file_reports_json_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n {"name": "a",,}\n]')
    with pytest.raises(JobDescriptionError, match=r"invalid JSON at line 2 column"):
        Jobs().load_from_file(path)
    path.write_text('{"name": "a"}')
    with pytest.raises(JobDescriptionError, match="must hold a JSON list"):
        Jobs().load_from_file(path)


def test_job_state_is_a_str() -> None:
    assert JobState.SUCCEED == "SUCCEED"
    assert json.dumps({"s": JobState.FAILED}) == '{"s": "FAILED"}'
    assert JobState.OMITTED.is_final and not JobState.EXECUTING.is_final


def test_simple_gpus_is_node_crs() -> None:
    (s,) = Jobs().add(name="g", exec="/bin/true", gpus=2, numCores=4).jobs()
    assert s.resources.node_crs == {"gpu": 2}
    assert job_to_std(s)["resources"]["nodeCrs"] == {"gpu": 2}
    (both,) = Jobs().add(name="b", exec="x", gpus=1, nodeCrs={"mem": 4}).jobs()
    assert both.resources.node_crs == {"mem": 4, "gpu": 1}
    (none,) = Jobs().add(name="n", exec="x", gpus=0).jobs()
    assert none.resources.node_crs is None
    with pytest.raises(JobDescriptionError, match="gpus: 2 disagrees with nodeCrs.gpu 1"):
        Jobs().add(name="d", exec="x", gpus=2, nodeCrs={"gpu": 1})
    with pytest.raises(JobDescriptionError, match=r"job 'z': resources.nodeCrs.gpu: must be"):
        Jobs().add(name="z", exec="x", gpus=-1)
