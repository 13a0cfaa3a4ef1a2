"""Engine.restore: jobs a previous run had partly done come back with what had ended kept."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from engine_helpers import CANCEL, FAIL, OK, OMIT, Driver, Q, S, check_pool, engine, spec
from hypothesis import given, settings
from hypothesis import strategies as st

from qcgpj_async import JobDescriptionError, JobSpec, JobState
from qcgpj_async.engine import Launch, Outcome, StateChanged

NOW = 100.0


def restore(
    d: Driver, specs: list[JobSpec], outcomes: Mapping[str, Mapping[int | None, Outcome]]
) -> list[StateChanged]:
    """Restore into the driver's engine; launches become the driver's pending runs."""
    d.now = NOW
    out = d.eng.restore(specs, outcomes, d.now)
    changes = []
    for i in out:
        if isinstance(i, Launch):
            d.pending[i.run_id] = i
            d.launches.append(i)
        else:
            assert isinstance(i, StateChanged)
            changes.append(i)
    return changes


def test_ended_plain_jobs_keep_their_state_and_are_not_run() -> None:
    d = Driver(engine("2"))
    changes = restore(
        d,
        [spec("ok"), spec("bad"), spec("gone"), spec("todo")],
        {
            "ok": {None: Outcome(OK, 5.0, 0)},
            "bad": {None: Outcome(FAIL, 6.0, 2, "exit code 2")},
            "gone": {None: Outcome(CANCEL, 7.0)},  # cancelled while queued: never ran
        },
    )
    assert d.launched() == [("todo", None)]
    assert [(c.job, c.state, c.time) for c in changes if c.job != "todo"] == [
        ("ok", OK, 5.0),
        ("bad", FAIL, 6.0),
        ("gone", CANCEL, 7.0),
    ]
    bad = d.eng.jobs["bad"]
    assert bad.state is FAIL and bad.messages == ["exit code 2"]
    assert bad.history == [(FAIL, 6.0)]
    assert bad.runs[None].exit_code == 2 and bad.runs[None].message == "exit code 2"
    assert d.eng.jobs["gone"].runs == {}
    counts = d.eng.job_counts
    assert (counts[OK], counts[FAIL], counts[CANCEL], counts[S]) == (1, 1, 1, 1)
    assert d.eng.unfinished == 1
    d.drain()
    assert d.state("todo") is OK and d.eng.unfinished == 0


def test_iterations_ended_in_any_order_are_not_run_again() -> None:
    d = Driver(engine("1"))
    restore(
        d,
        [spec("it", iteration={"start": 10, "stop": 18})],
        {
            "it": {
                16: Outcome(OK, 1.0, 0),
                11: Outcome(OK, 2.0, 0),
                13: Outcome(FAIL, 3.0, 1, "exit code 1"),
            }
        },
    )
    assert d.state("it") is S and d.launched() == [("it", 10)]
    d.drain()
    assert d.launched() == [("it", i) for i in (10, 12, 14, 15, 17)]
    job = d.eng.jobs["it"]
    assert job.state is FAIL  # iteration 13 failed before the restore
    assert (job.done, job.failed) == (8, 1)
    assert job.runs[13].exit_code == 1 and job.runs[13].history == [(FAIL, 3.0)]
    assert d.state("it:16") is OK and d.state("it:13") is FAIL
    counts = d.eng.iteration_counts()
    assert (counts[OK], counts[FAIL]) == (7, 1)


def test_dependencies_are_judged_on_restored_states() -> None:
    d = Driver(engine("4"))
    restore(
        d,
        [
            spec("a"),
            spec("f"),
            spec("u"),
            spec("after_a", after="a"),
            spec("after_f", after="f"),
            spec("after_u", after="u"),
            spec("after_after_f", after="after_f"),
        ],
        {"a": {None: Outcome(OK, 1.0, 0)}, "f": {None: Outcome(FAIL, 1.0, 1)}},
    )
    assert d.state("after_f") is OMIT and d.state("after_after_f") is OMIT
    assert d.eng.jobs["after_f"].messages == ["dependency f ended FAILED"]
    assert sorted(d.launched()) == [("after_a", None), ("u", None)]
    assert d.state("after_u") is Q
    d.finish("u")
    assert d.launched()[-1] == ("after_u", None)


def test_iteration_and_paired_dependencies_after_restore() -> None:
    d = Driver(engine("8"))
    restore(
        d,
        [
            spec("a", iteration=4),
            spec("one", after="a:2"),
            spec("pair", iteration=4, after="a:${it}"),
        ],
        {"a": {2: Outcome(OK, 1.0, 0), 0: Outcome(FAIL, 1.0, 1)}, "pair": {2: Outcome(OK, 2.0, 0)}},
    )
    # a:1 and a:3 run again; "one" needed only a:2; pair:0 is omitted (a:0 failed),
    # pair:2 had ended, pair:1 and pair:3 wait for a:1 and a:3.
    assert sorted(d.launched()) == [("a", 1), ("a", 3), ("one", None)]
    assert d.state("pair:0") is OMIT and d.state("pair:2") is OK
    d.finish("a", 3)
    assert d.launched()[-1] == ("pair", 3)
    d.finish("a", 1, code=5)
    assert d.state("pair:1") is OMIT
    d.drain()
    assert ("pair", 2) not in d.launched()
    assert d.state("pair") is FAIL and d.state("a") is FAIL


def test_iteration_job_whose_every_iteration_ended() -> None:
    d = Driver(engine("2"))
    changes = restore(
        d,
        [spec("all", iteration=3), spec("next", after="all")],
        {"all": {i: Outcome(OK, float(i), 0) for i in range(3)}},
    )  # the job's own end was lost
    assert d.state("all") is OK
    assert changes[3:5] == [StateChanged("all", None, OK, 2.0), StateChanged("next", None, Q, NOW)]
    assert d.launched() == [("next", None)]


def test_job_level_cancel_covers_iterations_without_outcomes() -> None:
    d = Driver(engine("2"))
    restore(
        d,
        [spec("c", iteration=5), spec("o", iteration=3)],
        {
            "c": {None: Outcome(CANCEL, 3.0), 1: Outcome(OK, 1.0, 0)},
            "o": {None: Outcome(OMIT, 3.0, None, "dependency x ended FAILED")},
        },
    )
    assert d.launched() == []
    assert [d.state(f"c:{i}") for i in range(5)] == [CANCEL, OK, CANCEL, CANCEL, CANCEL]
    assert d.state("o:2") is OMIT and d.eng.jobs["o"].messages == ["dependency x ended FAILED"]
    counts = d.eng.iteration_counts()
    assert (counts[OK], counts[CANCEL], counts[OMIT], counts[Q]) == (1, 4, 3, 0)


def test_job_end_without_its_iterations_is_not_trusted() -> None:
    d = Driver(engine("4"))
    restore(d, [spec("s", iteration=3)], {"s": {None: Outcome(OK, 3.0), 0: Outcome(OK, 1.0, 0)}})
    assert sorted(d.launched()) == [("s", 1), ("s", 2)]
    d.drain()
    assert d.state("s") is OK


def test_iteration_scheduler_shares_among_iterations_left() -> None:
    d = Driver(engine("4"))
    restore(
        d,
        [spec("m", iteration=8, numCores={"scheduler": {"name": "maximum-iters"}})],
        {"m": {i: Outcome(OK, 1.0, 0) for i in (0, 2, 4, 6, 7)}},
    )
    # three iterations left on four cores: 1, 1, 2 (not 8 rounds of the full plan)
    assert [(la.iteration, la.allocation.cores) for la in d.launches] == [(1, 1), (3, 1), (5, 2)]
    d.drain()
    assert d.state("m") is OK


def test_restored_jobs_mix_with_new_work() -> None:
    d = Driver(engine("1"))
    restore(d, [spec("old")], {"old": {None: Outcome(OK, 1.0, 0)}})
    d.submit(spec("new", after="old"))
    assert d.launched() == [("new", None)]
    d.drain()
    d.eng.remove("old")
    assert "old" not in d.eng.jobs


def test_bad_outcomes_and_bad_specs_are_rejected() -> None:
    eng = engine("2")
    with pytest.raises(ValueError, match="unknown job 'x'"):
        eng.restore([spec("a")], {"x": {None: Outcome(OK, 1.0)}}, NOW)
    with pytest.raises(ValueError, match="a:7: no such iteration"):
        eng.restore([spec("a", iteration=3)], {"a": {7: Outcome(OK, 1.0)}}, NOW)
    with pytest.raises(ValueError, match="a:0: no such iteration"):
        eng.restore([spec("a")], {"a": {0: Outcome(OK, 1.0)}}, NOW)
    with pytest.raises(ValueError, match="EXECUTING is not final"):
        eng.restore([spec("a")], {"a": {None: Outcome(JobState.EXECUTING, 1.0)}}, NOW)
    with pytest.raises(JobDescriptionError, match="Not enough resources for job big"):
        eng.restore([spec("a"), spec("big", numCores=3)], {"a": {None: Outcome(OK, 1.0)}}, NOW)
    assert eng.jobs == {} and eng.unfinished == 0


finals = st.sampled_from([OK, FAIL, CANCEL, OMIT])


@settings(max_examples=150, deadline=None)
@given(
    total=st.integers(1, 30),
    cores=st.integers(1, 4),
    ended=st.dictionaries(st.integers(0, 29), finals),
)
def test_exactly_the_unfinished_iterations_run(
    total: int, cores: int, ended: dict[int, JobState]
) -> None:
    ended = {i: s for i, s in ended.items() if i < total}
    d = Driver(engine(str(cores)))
    restore(
        d,
        [spec("j", iteration=total), spec("after", after="j")],
        {"j": {i: Outcome(s, 1.0, 0 if s in (OK, FAIL) else None) for i, s in ended.items()}},
    )
    check_pool(d.eng.pool, d.allocations())
    d.drain()
    check_pool(d.eng.pool, [])
    ran = [i for job, i in d.launched() if job == "j"]
    assert sorted(ran) == [i for i in range(total) if i not in ended]
    assert len(ran) == len(set(ran))
    assert d.state("j") is (OK if all(s is OK for s in ended.values()) else FAIL)
    assert d.state("after") is (OK if d.state("j") is OK else OMIT)
    assert d.eng.unfinished == 0
