"""The lifecycle's own operations: iterations (one, bulk) and restore registrations.

Every state change goes through ``_lifecycle``; these drive its functions
directly, on records the engine made, and check that a change the table
does not allow raises InvalidTransition and leaves the state as it was.
"""

from __future__ import annotations

import pytest
from engine_helpers import CANCEL, FAIL, OK, OMIT, Driver, E, Q, S, engine, spec

from qcgpj_async import InvalidTransition, JobState
from qcgpj_async.engine import Job, Outcome, StateChanged
from qcgpj_async.engine._lifecycle import (
    ALLOWED,
    end_iteration,
    end_queued_iterations,
    job_state,
    register_ended,
    register_iteration,
    register_queued_iterations,
    run_state,
)


def iteration_job(n: int = 4, cores: str = "1") -> tuple[Driver, Job]:
    """An iteration job of ``n`` iterations, its first ones launched on ``cores``."""
    d = Driver(engine(cores))
    d.submit(spec("a", iteration=n))
    return d, d.eng.jobs["a"]


def queued(*names: str, iteration: int | None = None) -> Driver:
    """Jobs ``names`` QUEUED behind a job that holds the only core (nothing launched)."""
    d = Driver(engine("1"))
    d.submit(spec("x"))
    d.submit(*(spec(n, iteration=iteration) for n in names))
    assert all(d.eng.jobs[n].state is Q and not d.eng.jobs[n].runs for n in names)
    return d


def test_end_iteration_ends_a_queued_iteration_and_publishes_it() -> None:
    d, job = iteration_job()
    end_iteration(d.eng, job, 3, CANCEL, d.now)
    assert d.eng.iteration_state(job, 3) is CANCEL
    assert (job.done, job.failed) == (1, 1)
    assert d.eng._drain() == [StateChanged("a", 3, CANCEL, 0.0)]


@pytest.mark.parametrize("state", [Q, S, E, OK])
def test_end_iteration_to_a_state_a_queued_iteration_can_not_end_in_raises(state: JobState) -> None:
    d, job = iteration_job()
    with pytest.raises(InvalidTransition, match=f"job 'a' iteration 3: QUEUED -> {state.value}"):
        end_iteration(d.eng, job, 3, state, d.now)
    assert d.eng.iteration_state(job, 3) is Q and job.done == 0


def test_end_iteration_of_an_iteration_that_is_not_queued_raises() -> None:
    d, job = iteration_job()
    d.finish("a", 0)  # iteration 0 SUCCEED; iteration 1 is now SCHEDULED
    with pytest.raises(InvalidTransition, match="iteration 0: SUCCEED -> CANCELED"):
        end_iteration(d.eng, job, 0, CANCEL, d.now)
    with pytest.raises(InvalidTransition, match="iteration 1: SCHEDULED -> OMITTED"):
        end_iteration(d.eng, job, 1, OMIT, d.now)
    assert d.eng.iteration_state(job, 0) is OK and d.eng.iteration_state(job, 1) is S
    assert (job.done, job.failed) == (1, 0)


@pytest.mark.parametrize("state", [Q, S, E, OK])
def test_bulk_end_to_a_state_queued_iterations_can_not_take_raises(state: JobState) -> None:
    d, job = iteration_job()
    before = bytes(job.it_states or b"")
    with pytest.raises(InvalidTransition, match=f"queued iterations: QUEUED -> {state.value}"):
        end_queued_iterations(d.eng, job, state, d.now)
    assert bytes(job.it_states or b"") == before and job.done == 0


def test_bulk_end_changes_only_the_queued_iterations() -> None:
    d, job = iteration_job(n=5)
    d.finish("a", 0)  # 0 SUCCEED, 1 SCHEDULED, 2..4 QUEUED
    d.eng._drain()
    end_queued_iterations(d.eng, job, OMIT, d.now)
    states = [d.eng.iteration_state(job, i) for i in range(5)]
    assert states == [OK, S, OMIT, OMIT, OMIT]
    assert (job.done, job.failed) == (4, 3)
    assert d.eng._drain() == [StateChanged("a", i, OMIT, 0.0) for i in (2, 3, 4)]


def test_job_and_run_changes_follow_the_table() -> None:
    d, job = iteration_job()
    run = job.runs[0]
    for bad in sorted(set(ALLOWED) - ALLOWED[S] - {S}):
        with pytest.raises(InvalidTransition, match=f"SCHEDULED -> {bad.value}"):
            run_state(d.eng, run, bad, d.now)
        with pytest.raises(InvalidTransition, match=f"job 'a': SCHEDULED -> {bad.value}"):
            job_state(d.eng, job, bad, d.now)
    assert run.state is S and job.state is S and d.eng.iteration_state(job, 0) is S


def test_register_iteration_puts_a_final_state_on_a_queued_iteration_only() -> None:
    d = queued("a", iteration=4)
    job = d.eng.jobs["a"]
    register_iteration(job, 2, FAIL)
    assert d.eng.iteration_state(job, 2) is FAIL
    with pytest.raises(InvalidTransition, match="iteration 2: FAILED -> SUCCEED can not be"):
        register_iteration(job, 2, OK)
    with pytest.raises(InvalidTransition, match="iteration 3: QUEUED -> EXECUTING can not be"):
        register_iteration(job, 3, E)
    assert d.eng.iteration_state(job, 2) is FAIL and d.eng.iteration_state(job, 3) is Q


def test_register_queued_iterations() -> None:
    d = queued("a", iteration=4)
    job = d.eng.jobs["a"]
    register_iteration(job, 1, OK)
    with pytest.raises(InvalidTransition, match="queued iterations: QUEUED -> SCHEDULED"):
        register_queued_iterations(job, S)
    assert register_queued_iterations(job, CANCEL) == 3
    assert [d.eng.iteration_state(job, i) for i in range(4)] == [CANCEL, OK, CANCEL, CANCEL]
    assert register_queued_iterations(job, CANCEL) == 0


def test_register_ended_only_from_queued_and_to_a_final_state() -> None:
    d = queued("a", "b")
    a, b = d.eng.jobs["a"], d.eng.jobs["b"]
    with pytest.raises(InvalidTransition, match="job 'a': QUEUED -> EXECUTING can not be"):
        register_ended(d.eng, a, Outcome(E, 1.0))
    register_ended(d.eng, a, Outcome(FAIL, 1.0, 3, "exit code 3"))
    assert a.state is FAIL and a.history == [(FAIL, 1.0)] and a.messages == ["exit code 3"]
    assert d.eng.job_counts[Q] == 1 and d.eng.job_counts[FAIL] == 1  # b QUEUED, x SCHEDULED
    with pytest.raises(InvalidTransition, match="job 'a': FAILED -> SUCCEED can not be"):
        register_ended(d.eng, a, Outcome(OK, 2.0))
    assert a.state is FAIL and b.state is Q
