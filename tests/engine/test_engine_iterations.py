"""Iterations: expanded lazily, started in index order, counted."""

from __future__ import annotations

import gc
import tracemalloc

from engine_helpers import CANCEL, FAIL, OK, OMIT, Driver, E, Q, S, engine, spec

from qcgpj_async.engine import Launch


def test_started_in_index_order_as_cores_free() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a", iteration={"start": 3, "stop": 8}))
    assert d.launched() == [("a", 3), ("a", 4)]
    d.finish("a", 4)
    assert d.launched()[-1] == ("a", 5)
    d.drain()
    assert d.launched() == [("a", i) for i in (3, 4, 5, 6, 7)]


def test_million_iterations_cost_o1_until_they_start() -> None:
    s = spec("big", iteration=1_000_000)
    eng = engine("4")
    gc.collect()
    tracemalloc.start()
    try:
        out = eng.submit([s], 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(isinstance(i, Launch) for i in out) == 4
    job = eng.jobs["big"]
    assert len(job.runs) == 4
    # one byte per iteration for the states, nothing per iteration beyond that
    assert peak < 2_000_000, peak
    counts = eng.iteration_counts()
    assert counts[S] == 4 and counts[Q] == 999_996


def test_waiting_iteration_job_has_no_per_iteration_state() -> None:
    eng = engine("1")
    eng.submit([spec("x"), spec("big", iteration=10**9, after="x")], 0.0)
    job = eng.jobs["big"]
    assert job.it_states is None and job.runs == {}
    assert eng.iteration_state(job, 123_456_789) is Q
    assert eng.iteration_counts()[Q] == 10**9


def test_cancel_of_huge_waiting_iteration_job() -> None:
    d = Driver(engine("1"))
    d.submit(spec("x"), spec("big", iteration=1_000_000, after="x"))
    d.cancel("big")
    job = d.eng.jobs["big"]
    assert job.state is CANCEL and job.done == job.failed == 1_000_000
    assert d.eng.iteration_counts()[CANCEL] == 1_000_000
    assert d.eng.iteration_state(job, 999_999) is CANCEL
    # too many to publish one by one: only the job's change
    assert [c for c in d.changes if c.job == "big" and c.iteration is not None] == []


def test_omit_of_iteration_job_publishes_iterations() -> None:
    d = Driver(engine("1"))
    d.submit(spec("x"), spec("a", iteration=3, after="x"))
    d.cancel("a:1")
    d.finish("x", code=1)
    assert [(c.iteration, c.state) for c in d.changes if c.job == "a"] == [
        (None, Q),
        (1, CANCEL),
        (0, OMIT),
        (2, OMIT),
        (None, OMIT),
    ]
    job = d.eng.jobs["a"]
    assert job.done == 3 and job.failed == 3


def test_iteration_counts_and_job_counters() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a", iteration=5), spec("p"))
    counts = d.eng.iteration_counts()
    assert counts[S] == 2 and counts[Q] == 4
    d.start(d.run_of("a", 0))
    d.finish("a", 1, code=1)
    counts = d.eng.iteration_counts()
    assert counts[E] == 1 and counts[FAIL] == 1 and counts[S] == 1
    d.drain()
    counts = d.eng.iteration_counts()
    assert counts[OK] == 5 and counts[FAIL] == 1
    job = d.eng.jobs["a"]
    assert (job.done, job.failed, job.total) == (5, 1, 5)


def test_values_iteration() -> None:
    d = Driver(engine("4"))
    d.submit(spec("v", iteration=["x", "y"]))
    assert d.launched() == [("v", 0), ("v", 1)]
    assert d.launches[0].spec.iteration is not None
    assert d.launches[0].spec.iteration.value(1) == "y"
