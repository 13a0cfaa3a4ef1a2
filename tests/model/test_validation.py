"""Every validation rule of the standard job format, with its message."""

from __future__ import annotations

from typing import Any

import pytest

from qcgpj_async import JobDescriptionError, Jobs
from qcgpj_async.model import job_from_std, jobs_from_std


def problems(job: Any) -> list[str]:
    with pytest.raises(JobDescriptionError) as ei:
        job_from_std(job)
    return list(ei.value.problems)


def one(job: Any) -> str:
    found = problems(job)
    assert len(found) == 1, found
    return found[0]


def ex(**execution: Any) -> dict[str, Any]:
    return {"name": "a", "execution": execution}


def res(**resources: Any) -> dict[str, Any]:
    return {"name": "a", "execution": {"exec": "x"}, "resources": resources}


CASES = [
    ([1], "job #0: must be an object (dict), not list"),
    ({"execution": {"exec": "x"}}, "job #0: name: missing (required)"),
    ({"name": 3, "execution": {"exec": "x"}}, "job #0: name: must be a string, not int"),
    ({"name": "", "execution": {"exec": "x"}}, "job #0 (''): name: must not be empty"),
    (
        {"name": "a:b", "execution": {"exec": "x"}},
        "job #0 ('a:b'): name: Invalid job name a:b: 'a:b' contains",
    ),
    ({"name": "a b", "execution": {"exec": "x"}}, "contains a forbidden character"),
    ({"name": "a${x}", "execution": {"exec": "x"}}, "contains a forbidden character"),
    ({"name": "a"}, "job 'a': execution: Job execution (exec or script) not defined"),
    ({"name": "a", "execution": {"exec": "x"}, "extra": 1}, "job 'a': extra: unknown key"),
    ({"name": "a", "execution": []}, "job 'a': execution: must be an object (dict), not list"),
    (ex(), "job 'a': execution: Job execution (exec or script) not defined"),
    (ex(exec="x", script="y"), "job 'a': execution: Job script and exec or args or env defined"),
    (ex(script="y", args=["1"]), "job 'a': execution: Job script and exec or args or env defined"),
    (ex(script="y", env={"A": "1"}), "Job script and exec or args or env defined"),
    (ex(exec="x", args="1 2"), "job 'a': execution.args: Execution arguments must be an array"),
    (ex(exec="x", args=[{}]), "job 'a': execution.args[0]: must be a string or number, not dict"),
    (
        ex(exec="x", env=["A"]),
        "job 'a': execution.env: Execution environment must be an dictionary",
    ),
    (ex(exec="x", env={"A": None}), "job 'a': execution.env.A: must be a string or number"),
    (ex(exec=5), "job 'a': execution.exec: must be a string, not int"),
    (ex(exec=""), "job 'a': execution.exec: must not be empty"),
    (ex(exec="x", stdout=1), "job 'a': execution.stdout: must be a string, not int"),
    (
        ex(exec="x", modules=[1]),
        "job 'a': execution.modules: must be a string or a list of strings",
    ),
    (ex(exec="x", model="mpi"), "job 'a': execution.model: unknown model 'mpi'"),
    (ex(exec="x", model_opts=[]), "job 'a': execution.model_opts: must be an object (dict)"),
    (ex(exec="x", model_opts={"mpirun": 1}), "job 'a': execution.model_opts.mpirun: must be a str"),
    (ex(exec="x", model_opts={"x": 1}), "job 'a': execution.model_opts.x: unknown key"),
    (ex(exec="x", bogus=1), "job 'a': execution.bogus: unknown key"),
    (
        {"name": "a", "execution": {"exec": "x"}, "resources": 4},
        "job 'a': resources: must be an object (dict), not int",
    ),
    (res(numCores=0), "job 'a': resources.numCores: must be at least 1, not 0"),
    (res(numCores=-2), "job 'a': resources.numCores: must be at least 1, not -2"),
    (res(numCores="4"), "job 'a': resources.numCores: must be a number or an object"),
    (res(numCores=True), "job 'a': resources.numCores: must be a number or an object"),
    (res(numCores={}), "job 'a': resources.numCores: No resources defined"),
    (
        res(numCores={"exact": 2, "min": 1}),
        "job 'a': resources.numCores: Exact number of resources defined with min/max/scheduler",
    ),
    (
        res(numNodes={"min": 4, "max": 2}),
        "job 'a': resources.numNodes: Maximum number greater than minimal: min (4) greater than max (2)",
    ),
    (res(numCores={"min": 1.5}), "job 'a': resources.numCores.min: must be an integer, not float"),
    (res(numCores={"max": 0}), "job 'a': resources.numCores.max: must be at least 1, not 0"),
    (res(numCores={"least": 1}), "job 'a': resources.numCores.least: unknown key"),
    (res(wt="10 minutes"), "job 'a': resources.wt: invalid wall time '10 minutes'"),
    (res(wt="0s"), "job 'a': resources.wt: invalid wall time '0s'"),
    (res(wt=60), "job 'a': resources.wt: invalid wall time 60"),
    (res(nodeCrs={"gpu": 0}), "job 'a': resources.nodeCrs.gpu: must be an integer >= 1, not 0"),
    (res(nodeCrs={"tpu": 1}), "job 'a': resources.nodeCrs.tpu: unknown consumable resource"),
    (res(nodeCrs=[1]), "job 'a': resources.nodeCrs: must be an object (dict), not list"),
    (
        res(numCores={"min": 1, "scheduler": {"name": "maximum-iters"}}),
        "job 'a': resources.numCores.scheduler: an iteration scheduler needs an iteration",
    ),
    (res(cores=1), "job 'a': resources.cores: unknown key"),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": 5},
        "job 'a': iteration: must be an object with start/stop or values, not int",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": {"start": 2}},
        "job 'a': iteration.stop: missing (required without values)",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": {"start": 5, "stop": 5}},
        "job 'a': iteration: Wrong format of iteration directive: stop (5) must be greater than start (5)",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": {"start": -1, "stop": 5}},
        "job 'a': iteration.start: must be an integer >= 0, not -1",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": {"stop": "5"}},
        "job 'a': iteration.stop: must be an integer, not str",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": {"values": []}},
        "job 'a': iteration.values: must be a non-empty list",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "iteration": {"values": [1], "stop": 1}},
        "job 'a': iteration: values excludes start/stop",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "dependencies": ["b"]},
        "job 'a': dependencies: must be an object with 'after', not list",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "dependencies": {"after": [3]}},
        "job 'a': dependencies.after[0]: invalid dependency 3",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "dependencies": {"after": ["b:x"]}},
        "job 'a': dependencies.after[0]: invalid dependency 'b:x'",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "dependencies": {"after": ["a"]}},
        "job 'a': dependencies.after[0]: a job cannot depend on itself",
    ),
    (
        {"name": "a", "execution": {"exec": "x"}, "attributes": "x"},
        "job 'a': attributes: must be an object (dict), not str",
    ),
]


@pytest.mark.parametrize(("job", "message"), CASES)
def test_rule_has_precise_message(job: Any, message: str) -> None:
    assert any(message in p for p in problems(job)), problems(job)


def test_scheduler_rules() -> None:
    job = {
        "name": "s",
        "execution": {"exec": "x"},
        "iteration": {"stop": 4},
        "resources": {
            "numCores": {"max": 4, "scheduler": {"name": "split-into", "params": {"parts": 0}}},
            "numNodes": {"min": 1, "scheduler": {"name": "best"}},
        },
    }
    assert problems(job) == [
        "job 's': resources.numCores.max: not allowed together with an iteration scheduler",
        "job 's': resources.numCores.scheduler.params.parts: must be an integer >= 1, not 0",
        "job 's': resources.numNodes.scheduler.name: unknown scheduler 'best' "
        "(one of: maximum-iters, split-into)",
    ]


def test_every_problem_of_one_job_is_listed() -> None:
    job = {
        "name": "a",
        "execution": {"exec": 1, "args": "x"},
        "resources": {"numCores": {"min": 4, "max": 2}, "wt": "soon"},
        "iteration": {"stop": 0},
    }
    found = problems(job)
    assert found == [
        "job 'a': execution.exec: must be a string, not int",
        "job 'a': execution.args: Execution arguments must be an array",
        "job 'a': resources.numCores: Maximum number greater than minimal: min (4) greater than max (2)",
        "job 'a': resources.wt: invalid wall time 'soon' (e.g. '1h30m', '10m', '90s'; > 0)",
        "job 'a': iteration: Wrong format of iteration directive: stop (0) must be greater than start (0)",
    ]


def test_batch_of_twenty_invalid_jobs_gets_twenty_messages() -> None:
    bad = [c[0] for c in CASES if isinstance(c[0], dict) and c[0].get("name") == "a"][:20]
    batch = [{**job, "name": f"j{i}"} for i, job in enumerate(bad)]
    with pytest.raises(JobDescriptionError) as ei:
        jobs_from_std(batch)
    assert len(ei.value.problems) >= 20
    named = {p.split(":")[0] for p in ei.value.problems}
    assert named == {f"job 'j{i}'" for i in range(20)}
    assert str(ei.value).startswith(f"{len(ei.value.problems)} problems")


def test_duplicate_names_in_batch() -> None:
    job = {"name": "a", "execution": {"exec": "x"}}
    with pytest.raises(JobDescriptionError, match="Job a already exist"):
        jobs_from_std([job, job])


def test_error_is_value_error_and_root() -> None:
    from qcgpj_async import QcgpjError

    with pytest.raises(ValueError):
        job_from_std({})
    with pytest.raises(QcgpjError):
        job_from_std({})


def test_normalization() -> None:
    spec = job_from_std(
        {
            "name": "a",
            "execution": {
                "exec": "x",
                "args": [1, 2.5, "c"],
                "env": {"N": 3},
                "modules": "gcc",
                "model": "THREADS",
            },
            "resources": {"numCores": 4, "nodeCrs": {"GPU": 1}},
        }
    )
    assert spec.execution.args == ("1", "2.5", "c")
    assert spec.execution.env == {"N": "3"}
    assert spec.execution.modules == ("gcc",)
    assert spec.execution.model == "threads"
    assert spec.resources.num_cores is not None and spec.resources.num_cores.exact == 4
    assert spec.resources.node_crs == {"gpu": 1}


def test_valid_ranges_and_wall_time() -> None:
    spec = job_from_std(res(numCores={"min": 2, "max": 8}, numNodes={"min": 1}, wt="1h30m"))
    assert spec.resources.num_cores is not None
    assert (spec.resources.num_cores.lower, spec.resources.num_cores.upper) == (2, 8)
    assert spec.resources.num_nodes is not None and spec.resources.num_nodes.upper is None
    assert spec.resources.wall_time == 5400


def test_simple_format_unknown_keyword() -> None:
    with pytest.raises(JobDescriptionError, match="job 'a': cores: unknown argument of Jobs.add"):
        Jobs().add(name="a", exec="x", cores=2)
