"""States: the one transition table, InvalidTransition, history with the given times."""

from __future__ import annotations

import pytest
from engine_helpers import CANCEL, FAIL, FINAL, OK, OMIT, Driver, E, Q, S, engine, spec

from qcgpj_async import InvalidTransition, JobState
from qcgpj_async.engine import ALLOWED, StateChanged
from qcgpj_async.engine._lifecycle import check


def test_table() -> None:
    assert set(ALLOWED) == set(JobState)
    assert ALLOWED[Q] == {S, OMIT, FAIL, CANCEL}
    assert ALLOWED[S] == {E, FAIL, CANCEL}
    assert ALLOWED[E] == {OK, FAIL, CANCEL}
    for f in FINAL:
        assert ALLOWED[f] == frozenset()


@pytest.mark.parametrize("old", list(JobState))
@pytest.mark.parametrize("new", list(JobState))
def test_check_follows_the_table(old: JobState, new: JobState) -> None:
    if new in ALLOWED[old]:
        check("job 'a'", old, new)
    else:
        with pytest.raises(InvalidTransition, match=f"job 'a': {old.value} -> {new.value}"):
            check("job 'a'", old, new)


def test_history_stamped_with_given_times() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    rid = d.run_of("a")
    d.tick(1.5)
    d.start(rid)
    d.tick(2.0)
    d.exit(rid, 0)
    job = d.eng.jobs["a"]
    assert job.history == [(Q, 0.0), (S, 0.0), (E, 1.5), (OK, 3.5)]
    run = job.runs[None]
    assert run.history == job.history
    assert (run.started, run.finished, run.rtime, run.exit_code) == (1.5, 3.5, 2.0, 0)
    assert [(c.state, c.time) for c in d.changes] == [(Q, 0.0), (S, 0.0), (E, 1.5), (OK, 3.5)]


def test_iteration_history_and_events() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=2))
    d.tick()
    d.finish("a", 0)
    d.tick()
    d.finish("a", 1, code=4)
    job = d.eng.jobs["a"]
    assert job.history == [(Q, 0.0), (S, 0.0), (E, 1.0), (FAIL, 2.0)]
    assert job.runs[0].history == [(Q, 0.0), (S, 0.0), (E, 1.0), (OK, 1.0)]
    assert job.runs[1].history == [(Q, 0.0), (S, 1.0), (E, 2.0), (FAIL, 2.0)]
    assert [(c.job, c.iteration, c.state) for c in d.changes] == [
        ("a", None, Q),
        ("a", 0, S),
        ("a", None, S),
        ("a", 0, E),
        ("a", None, E),
        ("a", 0, OK),
        ("a", 1, S),
        ("a", 1, E),
        ("a", 1, FAIL),
        ("a", None, FAIL),
    ]


def test_started_twice_is_an_invalid_transition() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    rid = d.run_of("a")
    d.start(rid)
    with pytest.raises(InvalidTransition, match="EXECUTING -> EXECUTING"):
        d.eng.started(rid, 0.0)


def test_exit_without_start_is_failed_with_message() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    d.exit(d.run_of("a"), -1, "executable not found")
    job = d.eng.jobs["a"]
    assert job.state is FAIL and job.history[-1] == (FAIL, 0.0)
    assert job.runs[None].message == "executable not found" and job.messages == [
        "executable not found"
    ]
    assert job.runs[None].rtime is None


def test_exit_zero_after_start_succeeds_nonzero_fails() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a"), spec("b"))
    d.finish("a", code=0)
    d.finish("b", code=3)
    assert d.state("a") is OK and d.state("b") is FAIL
    assert d.eng.jobs["b"].messages == ["exit code 3"]
    assert d.eng.jobs["a"].messages is None


def test_exit_of_an_ended_run_is_unknown() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    rid = d.run_of("a")
    d.finish("a")
    with pytest.raises(KeyError):
        d.eng.exited(rid, 0, 0.0)


def test_cancel_of_final_job_raises() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b", iteration=2))
    d.finish("a")
    with pytest.raises(InvalidTransition, match="already finished"):
        d.cancel("a")
    d.drain()
    with pytest.raises(InvalidTransition, match="already finished"):
        d.cancel("b:1")
    with pytest.raises(InvalidTransition, match="already finished"):
        d.cancel("b")


@pytest.mark.parametrize(
    ("codes", "want"),
    [
        ([0, 0, 0], OK),
        ([0, 1, 0], FAIL),
        ([2, 2, 2], FAIL),
    ],
)
def test_iteration_job_state(codes: list[int], want: JobState) -> None:
    d = Driver(engine("4"))
    d.submit(spec("a", iteration=3))
    for i, c in enumerate(codes):
        d.finish("a", i, code=c)
    assert d.state("a") is want
    job = d.eng.jobs["a"]
    assert job.done == 3 and job.failed == sum(1 for c in codes if c)


def test_iteration_job_with_a_canceled_iteration_fails() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a", iteration=3))
    d.cancel("a:2")
    d.drain()
    assert d.state("a:2") is CANCEL and d.state("a") is FAIL
    assert d.eng.jobs["a"].failed == 1


def test_state_changed_is_an_event() -> None:
    ev = StateChanged("a", None, Q, 1.0)
    assert ev == StateChanged("a", None, Q, 1.0)
    with pytest.raises(AttributeError):
        ev.job = "b"  # type: ignore[misc]
