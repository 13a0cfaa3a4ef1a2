"""The report's numbers on constructed runs whose answers are worked out by hand."""

from __future__ import annotations

import math

import pytest

from qcgpj_async.report import (
    RunRecord,
    TaskRecord,
    breakdown,
    parse_allocation,
    percentiles,
    state_counts,
    summarize,
    timeline,
)
from qcgpj_async.report._text import filter_tasks, format_summary, sort_tasks


def task(name, state, q, s, x, e, alloc="", ready=None, code=None, msg=None) -> TaskRecord:
    job, _, it = name.partition(":")
    return TaskRecord(
        name,
        job,
        int(it) if it else None,
        state,
        queued=q,
        scheduled=s,
        started=x,
        ended=e,
        alloc=parse_allocation(alloc),
        exit_code=code,
        message=msg,
        ready=q if ready is None else ready,
        ncores=1,
    )


def known_run() -> RunRecord:
    """Two nodes of 2 cores; the pilot runs from -2 to 11, tasks from 0 to 10.

    t1 a[0] 0-10; t2 a[1] scheduled 0, starts 1, ends 5; t3 b[0:1] waits 0-2
    (ready: no free cores), runs 2-6, fails; t4 b[0] waits on t3, ready at 6,
    runs 6-10; t5 waits on a dependency and is omitted at 6.
    """
    return RunRecord(
        path="constructed",
        instance_id="test",
        opened=-2.0,
        closed=11.0,
        alive=False,
        nodes={"a": 2, "b": 2},
        tasks=[
            task("t1", "SUCCEED", 0, 0, 0, 10, "a[0]", code=0),
            task("t2", "SUCCEED", 0, 0, 1, 5, "a[1]", code=0),
            task("t3", "FAILED", 0, 2, 2, 6, "b[0:1]", code=2, msg="exit code 2"),
            task("t4", "SUCCEED", 0, 6, 6, 10, "b[0]", ready=6, code=0),
            task("t5", "OMITTED", 0, None, None, 6, ready=6, msg="dependency t3 ended FAILED"),
        ],
        now=20.0,
    )


def test_times_and_utilisation() -> None:
    s = summarize(known_run())
    assert s.cores == 4
    assert s.makespan == 10
    assert s.start_overhead == 2
    assert s.finish_overhead == 1
    assert s.wall == 13
    assert s.usage.allocated == 40
    assert s.usage.busy == 26
    assert s.utilisation == pytest.approx(0.65)
    assert s.utilisation_wall == pytest.approx(26 / 52)
    assert s.per_node["a"] == (2, 14, pytest.approx(0.7))
    assert s.per_node["b"] == (2, 12, pytest.approx(0.6))


def test_idle_time_by_cause_and_efficiency() -> None:
    u = summarize(known_run()).usage
    assert u.starting == pytest.approx(1)  # t2 held a[1] from 0 to 1 before it ran
    assert u.idle_ready == pytest.approx(4)  # t3 waited 0-2 for 2 cores while 2 were idle
    assert u.idle_deps == pytest.approx(1)  # 5-6: one idle core, t4 and t5 wait on t3
    assert u.idle_empty == pytest.approx(8)  # 6-10: two idle cores, nothing waits
    total = u.busy + u.starting + u.idle_ready + u.idle_deps + u.idle_empty
    assert total == pytest.approx(u.allocated)
    assert u.efficiency == pytest.approx(26 / 31)


def test_efficiency_is_full_when_idle_only_for_want_of_work() -> None:
    # One core; a runs 0-1, b runs 2-3. Ready at 1, b leaves the core idle 1-2 with
    # work waiting (efficiency 2/3); ready only at 2, the gap is its dependency's.
    run = RunRecord("c", nodes={"n": 1}, opened=0, closed=3, now=3)
    run.tasks = [
        task("a", "SUCCEED", 0, 0, 0, 1, "n[0]"),
        task("b", "SUCCEED", 0, 2, 2, 3, "n[0]", ready=1),
    ]
    assert summarize(run).usage.efficiency == pytest.approx(2 / 3)
    run.tasks[1].ready = 2  # its dependency ended at 2: the gap is not the pilot's fault
    run.tasks[1].queued = 0
    u = summarize(run).usage
    assert u.idle_deps == pytest.approx(1)
    assert u.efficiency == pytest.approx(1.0)


def test_percentiles_of_waits_and_run_times() -> None:
    s = summarize(known_run())
    assert s.queue_wait["n"] == 4
    assert s.queue_wait["mean"] == 2  # 0, 0, 2, 6
    assert s.queue_wait["p50"] == 1  # between 0 and 2
    assert s.queue_wait["max"] == 6
    assert s.run_time["p50"] == 4  # 4, 4, 4, 10
    assert s.run_time["mean"] == 5.5
    assert s.task_start["mean"] == 0.25  # t2: scheduled 0, started 1
    p = percentiles(range(101), (50, 90, 99))
    assert (p["p50"], p["p90"], p["p99"], p["min"], p["max"]) == (50, 90, 99, 0, 100)
    assert math.isnan(percentiles([])["p50"])


def test_counts_and_failures() -> None:
    s = summarize(known_run())
    assert s.iterations["SUCCEED"] == 3
    assert s.iterations["FAILED"] == 1
    assert s.iterations["OMITTED"] == 1
    assert [t.name for t in s.unsuccessful] == ["t3", "t5"]
    assert state_counts(["X", "SUCCEED"])["X"] == 1
    text = format_summary(known_run(), s, "DIR", failures=1)
    assert "t3  exit code 2" in text
    assert "t5" not in text  # only the first one
    assert "qcgpj-async report DIR --jobs --state FAILED,OMITTED" in text
    assert "utilisation 65.0% of the makespan" in text


def test_timeline_bins() -> None:
    run = known_run()
    tl = timeline(run.tasks, 0, 10, 10)
    assert tl.busy[0] == pytest.approx(1)  # t1 only (t2 starting)
    assert tl.busy[3] == pytest.approx(4)
    assert tl.busy[9] == pytest.approx(2)
    assert tl.queued[0] == pytest.approx(3)  # t3 ready, t4 and t5 on t3
    assert tl.queued[7] == 0


def test_breakdown_clips_to_the_window() -> None:
    b = breakdown(known_run().tasks, 4, 2, 5)
    assert b.allocated == 12
    assert b.busy == pytest.approx(12)


def test_a_running_task_counts_until_now() -> None:
    run = RunRecord("r", nodes={"n": 2}, opened=0, now=10, alive=True)
    run.tasks = [task("a", "EXECUTING", 0, 0, 0, None, "n[0]")]
    s = summarize(run)
    assert s.makespan == 10
    assert s.utilisation == pytest.approx(0.5)


def test_filters_and_sorting() -> None:
    tasks = known_run().tasks
    assert [t.name for t in filter_tasks(tasks, ["failed", "omitted"])] == ["t3", "t5"]
    assert [t.name for t in filter_tasks(tasks, nodes=["b"])] == ["t3", "t4"]
    assert [t.name for t in filter_tasks(tasks, pattern="t[12]")] == ["t1", "t2"]
    by_rt = sort_tasks(list(tasks), "-runtime")
    assert by_rt[0].name == "t1" and by_rt[-1].name == "t5"  # no runtime: last
    with pytest.raises(ValueError, match="--sort"):
        sort_tasks(list(tasks), "colour")


def test_allocation_syntax() -> None:
    assert parse_allocation("n1[0:1:2],n2[3]") == (("n1", (0, 1, 2)), ("n2", (3,)))
    assert parse_allocation("vm[0]") == (("vm", (0,)),)


def test_gpu_utilisation() -> None:
    # Node a holds 2 GPUs: t1 (0-10) holds one, t2 (1-5) the other, t3 none.
    run = known_run()
    run.gpus = {"a": 2}
    run.tasks[0].gpus = 1
    run.tasks[1].gpus = 1
    s = summarize(run)
    assert s.gpus == 2
    assert s.gpu_busy == pytest.approx(10 + 4)  # GPU-seconds held
    assert s.gpu_utilisation == pytest.approx(14 / (2 * 10))  # over 2 GPUs x makespan 10 s
    text = format_summary(run, s, "constructed", 10)
    assert "resources   2 nodes, 4 cores, 2 GPUs" in text
    assert "gpus        2: utilisation 70.0% of the makespan (14 GPU-s held by runs)" in text
    # A run without GPUs says nothing of them.
    assert "gpus " not in format_summary(known_run(), summarize(known_run()), "c", 10)
