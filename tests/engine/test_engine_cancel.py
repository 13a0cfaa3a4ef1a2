"""Cancel (jobs and single iterations), remove, and wall time."""

from __future__ import annotations

import gc
import weakref

import pytest
from engine_helpers import CANCEL, FAIL, OK, OMIT, Driver, E, S, check_pool, engine, spec

from qcgpj_async import InvalidTransition, JobNotFoundError
from qcgpj_async.engine import Kill

# -- cancel --------------------------------------------------------------------------------


def test_cancel_queued_at_once_and_dependants_omitted() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b"), spec("c", after="b"))
    out = d.cancel("b")
    assert d.state("b") is CANCEL and d.state("c") is OMIT
    assert not [i for i in out if isinstance(i, Kill)]
    b = d.eng.jobs["b"]
    assert b.history[-1] == (CANCEL, 0.0) and (b.done, b.failed) == (1, 1)
    d.drain()
    assert d.launched() == [("a", None)]


@pytest.mark.parametrize("started", [False, True])
def test_cancel_scheduled_or_running_kills_then_canceled(started: bool) -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b", after="a"), spec("x"))
    rid = d.run_of("a")
    if started:
        d.start(rid)
    out = d.cancel("a")
    assert [i for i in out if isinstance(i, Kill)] == [Kill(rid, "a", None, "cancel")]
    assert d.state("a") is (E if started else S)
    assert d.cancel("a") == []  # a second cancel sends no second Kill
    d.tick()
    d.exit(rid, -15)
    assert d.state("a") is CANCEL and d.state("b") is OMIT
    assert d.eng.jobs["a"].history[-1] == (CANCEL, 1.0)
    assert d.launched() == [("a", None), ("x", None)]  # the core went to x
    check_pool(d.eng.pool, d.allocations())


def test_cancel_running_job_that_exits_zero_is_still_canceled() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    rid = d.run_of("a")
    d.start(rid)
    d.cancel("a")
    d.exit(rid, 0)
    assert d.state("a") is CANCEL


def test_cancel_iteration_job() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a", iteration=5), spec("b", after="a"))
    r0, r1 = d.run_of("a", 0), d.run_of("a", 1)
    d.start(r0)
    out = d.cancel("a")
    assert sorted(k.iteration for k in out if isinstance(k, Kill)) == [0, 1]  # type: ignore[type-var]
    assert [d.state(f"a:{i}") for i in range(2, 5)] == [CANCEL] * 3
    assert d.state("a") is E  # still running
    d.exit(r0, -15)
    assert d.state("a") is E
    d.exit(r1, -15)
    assert d.state("a") is CANCEL and d.state("b") is OMIT
    assert d.launched() == [("a", 0), ("a", 1)]
    assert d.eng.jobs["a"].done == 5


def test_cancel_queued_iteration_job() -> None:
    d = Driver(engine("1"))
    d.submit(spec("x"), spec("a", iteration=3))
    d.cancel("a")
    assert d.state("a") is CANCEL
    assert [d.state(f"a:{i}") for i in range(3)] == [CANCEL] * 3


def test_cancel_single_iterations() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=4))
    d.cancel("a:2")  # queued: at once
    assert d.state("a:2") is CANCEL
    rid = d.run_of("a", 0)
    out = d.cancel("a:0")  # scheduled: a Kill
    assert out == [Kill(rid, "a", 0, "cancel")]
    d.exit(rid, -15)
    assert d.state("a:0") is CANCEL
    d.drain()
    assert d.launched() == [("a", 0), ("a", 1), ("a", 3)]
    assert d.state("a") is FAIL  # not the whole job canceled
    job = d.eng.jobs["a"]
    assert (job.done, job.failed) == (4, 2)


def test_cancel_unknown() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=2), spec("p"))
    for name in ("nope", "a:2", "p:0", "nope:1"):
        with pytest.raises(JobNotFoundError):
            d.cancel(name)


def test_cancel_after_iteration_started_keeps_it_running_only() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=3))
    rid = d.run_of("a", 0)
    d.start(rid)
    d.cancel("a:1")
    d.exit(rid, 0)
    assert d.launched() == [("a", 0), ("a", 2)]


# -- remove --------------------------------------------------------------------------------


def test_remove_finished_frees_memory_and_name() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=3))
    d.drain()
    job = d.eng.jobs["a"]
    ref = weakref.ref(job)
    d.eng.remove("a")
    assert job.runs == {}  # detached: no job <-> run cycle
    del job
    assert "a" not in d.eng.jobs and d.eng.job_counts[OK] == 0
    assert ref() is None  # at once: no reference cycle left for the GC
    d.submit(spec("a"))
    assert d.state("a") is S


def test_remove_canceled_queued_job_frees_memory() -> None:
    d = Driver(engine("1"))
    d.submit(spec("x"), *(spec(f"q{i}") for i in range(200)))
    refs = [weakref.ref(d.eng.jobs[f"q{i}"]) for i in range(200)]
    for i in range(200):
        d.cancel(f"q{i}")
        d.eng.remove(f"q{i}")
    gc.collect()
    # removed jobs still queued are dropped in batches: at most a bounded few linger
    assert sum(r() is not None for r in refs) <= 64
    d.submit(spec("q0"))
    d.drain()
    assert d.launched() == [("x", None), ("q0", None)]


def test_remove_unfinished_raises() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b"))
    with pytest.raises(InvalidTransition, match="not finished"):
        d.eng.remove("a")
    with pytest.raises(InvalidTransition, match="not finished"):
        d.eng.remove("b")
    with pytest.raises(JobNotFoundError):
        d.eng.remove("nope")


def test_dependency_on_removed_job_is_unknown() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    d.finish("a")
    d.eng.remove("a")
    with pytest.raises(Exception, match="unknown job 'a'"):
        d.submit(spec("b", after="a"))


# -- wall time ----------------------------------------------------------------------------


def test_wall_time_kill_and_failed() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a", wt="10s"), spec("b", wt="1m"), spec("c", after="a"))
    assert d.eng.next_deadline() is None  # nothing started yet
    ra, rb = d.run_of("a"), d.run_of("b")
    d.tick(1.0)
    d.start(ra)
    d.start(rb)
    assert d.eng.next_deadline() == 11.0
    assert d.eng.tick(10.9) == []
    out = d.eng.tick(11.0)
    assert out == [Kill(ra, "a", None, "walltime")]
    assert d.eng.tick(12.0) == []  # killed once
    assert d.eng.next_deadline() == 61.0
    d.now = 12.0
    d.exit(ra, -15)
    job = d.eng.jobs["a"]
    assert job.state is FAIL
    assert job.messages is not None and "wall time exceeded" in job.messages[-1]
    assert job.runs[None].message == job.messages[-1]
    assert d.state("c") is OMIT
    d.exit(rb, 0)
    assert d.state("b") is OK
    assert d.eng.next_deadline() is None


def test_wall_time_of_iterations() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a", iteration=3, wt="5s"))
    d.start(d.run_of("a", 0))
    d.tick(2.0)
    d.start(d.run_of("a", 1))
    kills = d.eng.tick(5.0)
    assert kills == [Kill(d.run_of("a", 0), "a", 0, "walltime")]
    d.now = 5.0
    d.exit(d.run_of("a", 0), -9)
    assert d.state("a:0") is FAIL
    assert d.eng.next_deadline() == 7.0


def test_wall_time_not_before_start_and_not_after_exit() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", wt="1s"))
    assert d.eng.tick(100.0) == []  # scheduled, not started: no deadline yet
    d.finish("a")
    assert d.eng.tick(1000.0) == [] and d.eng.next_deadline() is None


def test_canceled_run_has_no_deadline() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", wt="1s"))
    d.start(d.run_of("a"))
    d.cancel("a")
    assert d.eng.next_deadline() is None
    assert d.eng.tick(5.0) == []
    d.exit(d.run_of("a"), -15)
    assert d.state("a") is CANCEL


def test_stale_deadlines_do_not_pile_up() -> None:
    d = Driver(engine("1"))
    for i in range(5_000):
        d.submit(spec(f"j{i}", wt="1h"))
        d.finish(f"j{i}")
    assert len(d.eng._deadlines) < 1_000


def test_remove_canceled_waiting_job_frees_memory() -> None:
    d = Driver(engine("1"))
    d.submit(
        spec("x"), spec("a", iteration=2), spec("w", iteration=2, after=["x", "a:1", "a:${it}"])
    )
    ref = weakref.ref(d.eng.jobs["w"])
    d.cancel("w")
    d.eng.remove("w")
    gc.collect()
    assert ref() is None
    d.drain()
    assert d.eng.unfinished == 0
