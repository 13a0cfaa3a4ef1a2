"""Submit checks, the queue (arrival order, first fit with backfill) and allocation through the engine."""

from __future__ import annotations

import pytest
from engine_helpers import (
    CANCEL,
    FAIL,
    OK,
    Driver,
    E,
    Q,
    S,
    check_pool,
    engine,
    pool,
    spec,
    specs,
)

from qcgpj_async import JobDescriptionError, JobNotFoundError, JobState
from qcgpj_async.engine import Engine, Launch, Requirement, StateChanged, requirement


def launches(out: list[object]) -> list[Launch]:
    return [i for i in out if isinstance(i, Launch)]


# -- requirement() -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "want"),
    [
        ({}, Requirement(1, 1)),
        ({"numCores": 3}, Requirement(3, 3)),
        ({"numCores": {"min": 2}}, Requirement(2, 2)),  # min without max: exactly min
        ({"numCores": {"max": 4}}, Requirement(1, 4)),
        ({"numCores": {"min": 2, "max": 4}}, Requirement(2, 4)),
        ({"numNodes": 2}, Requirement(0, 0, 2, 2)),
        ({"numNodes": {"min": 1, "max": 3}}, Requirement(0, 0, 1, 3)),
        ({"numNodes": 2, "numCores": {"min": 1, "max": 2}}, Requirement(1, 2, 2, 2)),
        ({"nodeCrs": {"gpu": 1}}, Requirement(1, 1, None, None, (("gpu", 1),))),
    ],
)
def test_requirement(kw: dict[str, object], want: Requirement) -> None:
    assert requirement(spec("a", **kw)) == want


def test_a_threads_job_gets_its_cores_on_one_node() -> None:
    assert requirement(spec("t", numCores=4, model="threads"), 4) == Requirement(4, 4, 1, 1)
    assert requirement(spec("t", numCores={"min": 2, "max": 8}, model="threads"), 4) == (
        Requirement(2, 4, 1, 1)
    )  # no more than one node has
    assert requirement(spec("t", numCores=5, model="threads"), 4) == Requirement(5, 5)
    assert requirement(spec("t", numCores=4, numNodes=2, model="threads"), 4) == Requirement(
        4, 4, 2, 2
    )  # asked for explicitly
    e = engine("n1:4,n2:4")
    (first,) = launches(e.submit([spec("one", numCores=3)], 0.0))
    assert first.allocation.cores == 3
    # 5 free cores, but only 1 on n1 and 4 on n2: the threads job goes to n2 whole
    (t,) = launches(e.submit([spec("t", numCores=4, model="threads")], 0.0))
    assert [p.node for p in t.allocation.parts] == ["n2"]
    assert t.allocation.cores == 4
    # a plain job of the same size may be split over both nodes
    e2 = engine("n1:4,n2:4")
    e2.submit([spec("one", numCores=3)], 0.0)
    (p,) = launches(e2.submit([spec("p", numCores=5)], 0.0))
    assert {x.node for x in p.allocation.parts} == {"n1", "n2"}
    # larger than any node: split, as in the original (on one host, virtual nodes)
    (big,) = launches(engine("n1:4,n2:4").submit([spec("big", numCores=6, model="threads")], 0.0))
    assert big.allocation.cores == 6


# -- submit-time checks ------------------------------------------------------------


def test_a_job_that_can_never_fit_ends_failed_and_the_rest_runs() -> None:
    """As the seeds say: the job "is removed from the queue with the FAILED status"."""
    eng = engine("2,2")
    out = eng.submit([spec("big", numCores=5), spec("ok"), spec("after", after="big")], 0.0)
    big = eng.jobs["big"]
    assert big.state is JobState.FAILED
    assert big.messages == [
        "Not enough resources for job big: needs 5 cores; the pilot has 2 nodes x 2 cores"
    ]
    assert eng.jobs["after"].state is JobState.OMITTED
    assert [la.job for la in launches(out)] == ["ok"]
    assert eng.unfinished == 1 and eng.pool.free_cores == 3


@pytest.mark.parametrize(
    ("kw", "needs"),
    [
        ({"numNodes": 3}, "needs 3 whole nodes"),
        ({"numNodes": {"min": 3, "max": 4}}, "needs 3 whole nodes"),
        ({"numNodes": 1, "numCores": 3}, "needs 3 cores on 1 node"),
        ({"numNodes": 2, "numCores": 3}, "needs 3 cores on each of 2 nodes"),
        ({"numCores": {"min": 5, "max": 8}}, "needs 5 cores"),
        ({"numCores": 9, "iteration": 3}, "needs 9 cores"),
    ],
)
def test_not_enough_resources_variants(kw: dict[str, object], needs: str) -> None:
    eng = engine("2,2")
    eng.submit([spec("big", **kw)], 0.0)
    job = eng.jobs["big"]
    assert job.state is JobState.FAILED
    assert job.messages == [
        f"Not enough resources for job big: {needs}; the pilot has 2 nodes x 2 cores"
    ]
    if job.iterative:  # none of its iterations can run
        assert [eng.iteration_state(job, i) for i in range(3)] == [JobState.OMITTED] * 3


def test_system_core_job_asking_for_all_cores_fails() -> None:
    """Regression (original bug): with --system-core, a job asking for all cores waited forever."""
    eng = engine("4", system_core=True)
    eng.submit([spec("all", numCores=4)], 0.0)
    assert eng.jobs["all"].state is JobState.FAILED
    assert eng.jobs["all"].messages == [
        "Not enough resources for job all: needs 4 cores; "
        "the pilot has 1 node x 4 cores, 1 kept by --system-core"
    ]
    out = eng.submit([spec("three", numCores=3)], 0.0)
    assert [str(la.allocation) for la in launches(out)] == ["n0[1:2:3]"]


def test_node_crs_on_resources_without_them_failed() -> None:
    """Regression (original bug): a nodeCrs job on resources without them killed the
    scheduler loop. Here it ends FAILED, saying why, and the rest goes on."""
    eng = engine("2")
    eng.submit([spec("g", nodeCrs={"gpu": 1})], 0.0)
    assert eng.jobs["g"].state is JobState.FAILED
    assert (
        "needs 1 core with 1 GPU per node; the pilot has 1 node x 2 cores, no GPU"
        in ((eng.jobs["g"].messages or [""])[0])
    )
    # and the engine goes on scheduling
    d = Driver(eng)
    d.submit(spec("a"))
    assert d.launched() == [("a", None)]


def test_node_crs_with_iteration_scheduler_on_resources_without_them_failed() -> None:
    eng = engine("2")
    s = spec(
        "g",
        nodeCrs={"gpu": 1},
        iteration=2,
        numCores={"scheduler": {"name": "split-into"}, "min": 1},
    )
    eng.submit([s], 0.0)
    assert eng.jobs["g"].state is JobState.FAILED
    assert eng.iteration_state(eng.jobs["g"], 0) is JobState.OMITTED


def test_node_crs_more_than_any_node_has() -> None:
    eng = engine("n1:2,n2:2", crs={"n1": {"gpu": 2}})
    eng.submit([spec("g", nodeCrs={"gpu": 3})], 0.0)
    assert eng.jobs["g"].state is JobState.FAILED
    assert eng.jobs["g"].messages == [
        "Not enough resources for job g: needs 1 core with 3 GPUs per node; "
        "the pilot has 2 nodes x 2 cores, at most 2 GPUs per node on 1 node of 2"
    ]


def test_every_problem_listed_and_nothing_accepted() -> None:
    eng = engine("2")
    with pytest.raises(JobDescriptionError) as ei:
        eng.submit(
            specs({"name": "ok"}, {"name": "big", "numCores": 3}, {"name": "dep", "after": "nope"}),
            0.0,
        )
    # A job too big is no problem of the batch (it would end FAILED); the unknown one is.
    assert ei.value.problems == ("job 'dep': dependencies.after: unknown job 'nope'",)
    assert eng.jobs == {} and eng.unfinished == 0 and eng.pool.free_cores == 2


def test_name_taken() -> None:
    eng = engine("2")
    eng.submit([spec("a")], 0.0)
    with pytest.raises(JobDescriptionError, match="Job a already exist"):
        eng.submit([spec("a")], 0.0)
    with pytest.raises(JobDescriptionError, match="Job b already exist"):
        eng.submit([spec("b"), spec("b")], 0.0)


def test_max_with_scheduler_is_a_model_error() -> None:
    """Regression (original bug): max with a scheduler crashed; the model rejects it."""
    with pytest.raises(
        JobDescriptionError, match="max: not allowed together with an iteration scheduler"
    ):
        spec("a", iteration=4, numCores={"max": 2, "scheduler": {"name": "maximum-iters"}})


def test_scheduler_that_gives_zero_rejected() -> None:
    with pytest.raises(JobDescriptionError, match="split-into"):
        engine("2").submit(
            [
                spec(
                    "a",
                    iteration=4,
                    numCores={"scheduler": {"name": "split-into", "params": {"parts": 4}}},
                )
            ],
            0.0,
        )
    with pytest.raises(JobDescriptionError, match="maximum-iters"):
        engine("2").submit(
            [spec("a", iteration=4, numCores={"min": 3, "scheduler": {"name": "maximum-iters"}})],
            0.0,
        )


# -- the queue --------------------------------------------------------------------------


def test_arrival_order() -> None:
    d = Driver(engine("1"))
    d.submit(specs(*({"name": f"j{i}"} for i in range(5))))
    d.drain()
    assert d.launched() == [(f"j{i}", None) for i in range(5)]


def test_first_fit_with_backfill() -> None:
    d = Driver(engine("4"))
    d.submit(
        specs(
            {"name": "a", "numCores": 3},
            {"name": "b", "numCores": 2},
            {"name": "c", "numCores": 1},
            {"name": "d", "numCores": 2},
        )
    )
    # a fits; b does not (1 free) and is skipped; c backfills; d waits behind b
    assert d.launched() == [("a", None), ("c", None)]
    assert d.state("b") is Q and d.state("d") is Q
    d.finish("c")
    assert d.launched() == [("a", None), ("c", None)]  # 1 free core: still nothing fits
    d.finish("a")
    assert d.launched()[2:] == [("b", None), ("d", None)]  # b first (arrival order), then d
    check_pool(d.eng.pool, d.allocations())


def test_earlier_job_wins_over_later_smaller_one() -> None:
    d = Driver(engine("4"))
    d.submit(
        specs(
            {"name": "hog", "numCores": 4},
            {"name": "big", "numCores": 3},
            {"name": "small", "numCores": 1},
        )
    )
    d.finish("hog")
    # with 4 free, the pass takes big (earlier) then small: both fit
    assert d.launched() == [("hog", None), ("big", None), ("small", None)]


def test_min_max_takes_what_is_free() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a", numCores=3), spec("r", numCores={"min": 1, "max": 4}))
    (la,) = [la for la in d.launches if la.job == "r"]
    assert la.allocation.cores == 1
    d.finish("a")
    d.submit(spec("r2", numCores={"min": 2, "max": 8}))
    (la,) = [la for la in d.launches if la.job == "r2"]
    assert la.allocation.cores == 3


def test_min_only_means_exactly_min() -> None:
    d = Driver(engine("8"))
    d.submit(spec("m", numCores={"min": 3}))
    assert d.launches[0].allocation.cores == 3


def test_allocation_rules_through_the_engine() -> None:
    d = Driver(engine("n1:2,n2:2", crs={"n1": {"gpu": 2}}))
    d.submit(
        specs(
            {"name": "c", "numCores": 1},
            {"name": "node", "numNodes": 1},
            {"name": "g", "nodeCrs": {"gpu": 1}},
            {"name": "each", "numNodes": 2, "numCores": 1},
        )
    )
    got = {la.job: str(la.allocation) for la in d.launches}
    # Jobs without GPUs take the node without GPUs first (n2); the whole node
    # then left is n1, and the GPU job waits for its cores.
    assert got == {"c": "n2[0]", "node": "n1[0:1]"}
    check_pool(d.eng.pool, d.allocations())
    d.finish("node")
    g, each = d.launches[-2:]
    assert (g.job, str(g.allocation)) == ("g", "n1[0]")
    assert g.allocation.parts[0].crs == {"gpu": 1} and g.allocation.parts[0].gpus == ("0",)
    assert (each.job, str(each.allocation)) == ("each", "n2[1],n1[1]")  # n2 first
    check_pool(d.eng.pool, d.allocations())


def test_launch_carries_spec_and_ids() -> None:
    d = Driver(engine("2"))
    s = spec("a", args=["x"])
    (q, sched, la) = d.submit(s)
    assert q == StateChanged("a", None, Q, 0.0)
    assert sched == StateChanged("a", None, S, 0.0)
    assert isinstance(la, Launch) and la.spec is s and la.job == "a" and la.iteration is None
    assert d.eng.runs[la.run_id].job is d.eng.jobs["a"]


def test_nothing_scheduled_without_free_cores() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b"))
    assert d.launched() == [("a", None)]
    assert d.eng.pool.free_cores == 0
    d.finish("a")
    assert d.launched() == [("a", None), ("b", None)]


def test_iteration_scheduler_split_into_and_maximum_iters() -> None:
    d = Driver(engine("4"))
    d.submit(spec("m", iteration=5, numCores={"scheduler": {"name": "maximum-iters"}}))
    assert [la.allocation.cores for la in d.launches] == [1, 1, 2]  # round 1 of [1,1,2 | 2,2]
    d.drain()
    assert [la.allocation.cores for la in d.launches] == [1, 1, 2, 2, 2]
    assert d.eng.jobs["m"].state is OK
    d.submit(
        spec(
            "s", iteration=4, numCores={"scheduler": {"name": "split-into", "params": {"parts": 2}}}
        )
    )
    assert [la.allocation.cores for la in d.launches[5:]] == [2, 2]
    d.drain()
    assert [la.allocation.cores for la in d.launches[5:]] == [2, 2, 2, 2]


def test_iteration_scheduler_on_nodes() -> None:
    d = Driver(engine("2,2,2,2"))
    d.submit(spec("n", iteration=2, numNodes={"scheduler": {"name": "split-into"}}))
    assert [la.allocation.nodes for la in d.launches] == [["n0", "n1"], ["n2", "n3"]]


def test_unknown_run_and_job() -> None:
    eng = engine("1")
    with pytest.raises(KeyError):
        eng.started(99, 0.0)
    with pytest.raises(KeyError):
        eng.exited(99, 0, 0.0)
    with pytest.raises(JobNotFoundError):
        eng.cancel("nope", 0.0)
    with pytest.raises(JobNotFoundError):
        eng.lookup("nope")


def test_lookup() -> None:
    eng = engine("1")
    eng.submit([spec("a", iteration={"start": 2, "stop": 5}), spec("p")], 0.0)
    assert eng.lookup("a") == (eng.jobs["a"], None)
    assert eng.lookup("a:4") == (eng.jobs["a"], 4)
    for bad in ("a:5", "a:1", "a:x", "a:", "p:0"):
        with pytest.raises(JobNotFoundError):
            eng.lookup(bad)


def test_counts() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b"), spec("c"))
    assert d.eng.unfinished == 3
    assert d.eng.job_counts[S] == 1 and d.eng.job_counts[Q] == 2
    d.finish("a")
    d.cancel("c")
    assert d.eng.job_counts[OK] == 1 and d.eng.job_counts[CANCEL] == 1
    d.start(d.run_of("b"))
    assert d.eng.job_counts[E] == 1
    d.exit(d.run_of("b"), 3)
    assert d.eng.job_counts[FAIL] == 1 and d.eng.unfinished == 0
    assert sum(d.eng.job_counts.values()) == 3


def test_empty_submit() -> None:
    eng = Engine(pool("1"))
    assert eng.submit([], 0.0) == []


def test_job_state_is_a_str() -> None:
    assert JobState.QUEUED == "QUEUED"


def test_ready_paired_iteration_cancelled_before_it_starts() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=2), spec("b", iteration=2, after="a:${it}"))
    d.finish("a", 0)  # b:0 is ready, but a:1 came first
    assert d.launched() == [("a", 0), ("a", 1)]
    d.cancel("b:0")
    d.finish("a", 1)
    assert d.launched()[-1] == ("b", 1)
    d.drain()
    assert d.state("b") is FAIL and d.state("b:0") is CANCEL


def test_cores_only_after_a_consumable_job_emptied_a_node() -> None:
    d = Driver(engine("n1:1,n2:2", crs={"n1": {"gpu": 1}}))
    d.submit(spec("g", nodeCrs={"gpu": 1}), spec("c", numCores=2), spec("one"))
    got = {la.job: str(la.allocation) for la in d.launches}
    assert got == {"g": "n1[0]", "c": "n2[0:1]"}
    d.finish("c")
    assert str(d.launches[-1].allocation) == "n2[0]"
    check_pool(d.eng.pool, d.allocations())


def test_iteration_scheduler_on_nodes_with_cores_on_each() -> None:
    d = Driver(engine("2,2,2,2"))
    d.submit(spec("n", iteration=2, numCores=1, numNodes={"scheduler": {"name": "split-into"}}))
    assert [str(la.allocation) for la in d.launches] == [
        "n0[0],n1[0]",
        "n0[1],n1[1]",
    ]  # first nodes with a free core


def test_iteration_scheduler_whole_nodes_skip_system_core_node() -> None:
    eng = engine("2,2,2", system_core=True)
    with pytest.raises(JobDescriptionError, match="split-into"):
        # two usable whole nodes: 3 parts of them is less than one node each
        eng.submit([spec("n", iteration=3, numNodes={"scheduler": {"name": "split-into"}})], 0.0)
    d = Driver(engine("2,2,2", system_core=True))
    d.submit(spec("n", iteration=2, numNodes={"scheduler": {"name": "split-into"}}))
    assert [la.allocation.nodes for la in d.launches] == [["n1"], ["n2"]]


def test_many_distinct_requirements_and_schedulers() -> None:
    d = Driver(engine("2,2"))
    d.submit(
        *(spec(f"c{i}", numCores={"min": 1, "max": 1 + i % 4}) for i in range(20)),
        *(
            spec(f"s{i}", iteration=3, numCores={"scheduler": {"name": "maximum-iters"}})
            for i in range(5)
        ),
    )
    d.drain()
    assert d.eng.unfinished == 0 and d.eng.pool.free_cores == 4
    assert [j for j, _ in d.launched()][:1] == ["c0"]
