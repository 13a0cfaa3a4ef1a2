"""Dependencies: on jobs, on iterations (``a:3``), paired (``a:${it}``); OMITTED propagation."""

from __future__ import annotations

import pytest
from engine_helpers import CANCEL, FAIL, OK, OMIT, Driver, Q, engine, spec, specs

from qcgpj_async import JobDescriptionError


def test_waits_until_dependency_succeeds() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a"), spec("b", after="a"))
    assert d.launched() == [("a", None)]
    assert d.state("b") is Q
    d.finish("a")
    assert d.launched() == [("a", None), ("b", None)]


def test_waits_for_every_dependency() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a"), spec("b"), spec("c", after=["a", "b"]))
    d.finish("b")
    assert ("c", None) not in d.launched()
    d.finish("a")
    assert ("c", None) in d.launched()


def test_dependency_on_already_finished_job() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    d.finish("a")
    d.submit(spec("b", after="a"))
    assert d.launched()[-1] == ("b", None)


@pytest.mark.parametrize(("how", "state"), [("fail", FAIL), ("cancel", CANCEL)])
def test_failed_or_canceled_dependency_omits(how: str, state: object) -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"), spec("b", after="a"), spec("c", after="b"), spec("x"))
    if how == "fail":
        d.finish("a", code=1)
    else:
        d.cancel("a")
        d.exit(d.run_of("a"), -15)
    assert d.state("a") is state
    assert d.state("b") is OMIT and d.state("c") is OMIT
    assert d.launched() == [("a", None), ("x", None)]
    b = d.eng.jobs["b"]
    assert b.messages == [f"dependency a ended {state}"]
    assert b.history[-1] == (OMIT, d.now)


def test_dependency_already_failed_at_submit_omits() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    d.finish("a", code=2)
    d.submit(spec("b", after="a"), spec("c", after="b"))
    assert d.state("b") is OMIT and d.state("c") is OMIT
    assert len(d.launches) == 1


def test_unknown_dependency_rejected() -> None:
    eng = engine("1")
    with pytest.raises(JobDescriptionError, match="dependencies.after: unknown job 'ghost'"):
        eng.submit([spec("b", after="ghost")], 0.0)
    assert eng.jobs == {}


@pytest.mark.parametrize(
    "deps",
    [
        [{"name": "a", "after": "b"}, {"name": "b", "after": "a"}],
        [{"name": "a", "after": "c"}, {"name": "b", "after": "a"}, {"name": "c", "after": "b"}],
        [
            {"name": "a", "after": "b:1", "iteration": 2},
            {"name": "b", "after": "a:${it}", "iteration": 2},
        ],
    ],
)
def test_cycle_rejected(deps: list[dict[str, object]]) -> None:
    eng = engine("1")
    with pytest.raises(JobDescriptionError, match="cycle"):
        eng.submit(specs(*deps), 0.0)
    assert eng.jobs == {}


def test_dependency_on_later_job_in_the_same_submit() -> None:
    d = Driver(engine("2"))
    d.submit(specs({"name": "b", "after": "a"}, {"name": "a"}))
    assert d.launched() == [("a", None)]
    d.finish("a")
    assert d.launched() == [("a", None), ("b", None)]


def test_iteration_dependency_on_later_job_in_the_same_submit() -> None:
    d = Driver(engine("2"))
    d.submit(
        specs(
            {"name": "b", "after": "a:1"},
            {"name": "c", "after": "a:${it}", "iteration": 2},
            {"name": "a", "iteration": 2},
        )
    )
    assert d.launched() == [("a", 0), ("a", 1)]
    d.finish("a", 1)
    assert ("b", None) in d.launched()


def test_long_chain_in_one_submit_then_omitted() -> None:
    """A 10,000-job chain: no recursion limit when submitted, nor when all get OMITTED."""
    n = 10_000
    d = Driver(engine("1"))
    d.submit(specs({"name": "j0"}, *({"name": f"j{i}", "after": f"j{i - 1}"} for i in range(1, n))))
    d.finish("j0", code=1)
    assert d.eng.job_counts[OMIT] == n - 1 and d.eng.unfinished == 0
    assert d.state(f"j{n - 1}") is OMIT


def test_long_chain_runs_in_order() -> None:
    n = 2_000
    d = Driver(engine("4"))
    d.submit(specs({"name": "j0"}, *({"name": f"j{i}", "after": f"j{i - 1}"} for i in range(1, n))))
    d.drain()
    assert d.launched() == [(f"j{i}", None) for i in range(n)]


def test_long_paired_iteration_chain_omitted() -> None:
    n = 3_000
    d = Driver(engine("1"))
    d.submit(
        specs(
            {"name": "j0", "iteration": 2},
            *({"name": f"j{i}", "iteration": 2, "after": f"j{i - 1}:${{it}}"} for i in range(1, n)),
        )
    )
    d.finish("j0", 0, code=1)
    for i in range(1, n):
        assert d.state(f"j{i}:0") is OMIT
    d.drain()
    assert d.eng.unfinished == 0
    assert all(d.state(f"j{i}") is FAIL for i in range(n))
    assert d.launched()[:2] == [("j0", 0), ("j0", 1)]
    assert all(it == 1 for _, it in d.launched()[1:])


# -- iterations ------------------------------------------------------------------------


def test_after_one_iteration_waits_for_that_iteration_only() -> None:
    """Regression (original bug): ``after: ["a:0"]`` checked the whole job a."""
    d = Driver(engine("4"))
    d.submit(spec("a", iteration=3), spec("b", after="a:0"))
    assert d.launched() == [("a", 0), ("a", 1), ("a", 2)]
    d.finish("a", 0)
    assert d.launched()[-1] == ("b", None)
    assert d.state("a") is not OK


def test_after_one_iteration_failed_omits() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a", iteration=3), spec("b", after="a:2"), spec("c", after="a:1"))
    d.finish("a", 2, code=1)
    assert d.state("b") is OMIT and d.state("c") is Q
    d.finish("a", 1)
    assert d.launched()[-1] == ("c", None)


def test_after_iteration_of_job_with_offset_range() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a", iteration={"start": 5, "stop": 8}), spec("b", after="a:7"))
    d.finish("a", 7)
    assert d.launched()[-1] == ("b", None)


@pytest.mark.parametrize(
    ("after", "msg"),
    [
        ("p:0", "has no iterations"),
        ("a:9", "has no iteration 9"),
        ("a:${it}", "needs iterations"),
    ],
)
def test_bad_iteration_dependencies_rejected(after: str, msg: str) -> None:
    eng = engine("4")
    eng.submit([spec("p"), spec("a", iteration=3)], 0.0)
    with pytest.raises(JobDescriptionError, match=msg):
        eng.submit([spec("b", after=after)], 0.0)


def test_paired_iteration_range_must_fit() -> None:
    eng = engine("4")
    eng.submit([spec("a", iteration=3)], 0.0)
    with pytest.raises(JobDescriptionError, match="needs iterations"):
        eng.submit([spec("b", iteration=4, after="a:${it}")], 0.0)
    eng.submit([spec("c", iteration={"start": 1, "stop": 3}, after="a:${it}")], 0.0)


def test_paired_iterations() -> None:
    d = Driver(engine("8"))
    d.submit(spec("a", iteration=3), spec("b", iteration=3, after="a:${it}"))
    assert d.launched() == [("a", 0), ("a", 1), ("a", 2)]
    d.finish("a", 2)
    assert d.launched()[-1] == ("b", 2)
    d.finish("a", 0)
    assert d.launched()[-1] == ("b", 0)
    d.finish("a", 1, code=1)
    assert d.state("b:1") is OMIT
    d.drain()
    assert d.state("a") is FAIL and d.state("b") is FAIL
    assert d.eng.jobs["b"].done == 3 and d.eng.jobs["b"].failed == 1


def test_paired_on_finished_job() -> None:
    d = Driver(engine("8"))
    d.submit(spec("a", iteration=3))
    d.finish("a", 0)
    d.finish("a", 1, code=1)
    d.finish("a", 2)
    d.submit(spec("b", iteration=3, after="a:${it}"))
    assert d.launched()[3:] == [("b", 0), ("b", 2)]
    assert d.state("b:1") is OMIT


def test_paired_and_job_level_dependencies() -> None:
    d = Driver(engine("8"))
    d.submit(spec("x"), spec("a", iteration=2), spec("b", iteration=2, after=["a:${it}", "x"]))
    d.finish("a", 0)
    d.finish("a", 1)
    assert not [j for j, _ in d.launched() if j == "b"]
    d.finish("x")
    assert [(j, i) for j, i in d.launched() if j == "b"] == [("b", 0), ("b", 1)]


def test_paired_on_two_jobs() -> None:
    d = Driver(engine("8"))
    d.submit(
        spec("a", iteration=2),
        spec("c", iteration=2),
        spec("b", iteration=2, after=["a:${it}", "c:${it}"]),
    )
    d.finish("a", 1)
    assert ("b", 1) not in d.launched()
    d.finish("c", 1)
    assert ("b", 1) in d.launched()


def test_omitted_iteration_job_releases_its_iteration_dependants() -> None:
    """A job waiting on ``a:1`` must end OMITTED when a itself is OMITTED."""
    d = Driver(engine("2"))
    d.submit(
        spec("x"),
        spec("a", iteration=2, after="x"),
        spec("b", after="a:1"),
        spec("c", iteration=2, after="a:${it}"),
        spec("y", after="a"),
    )
    d.finish("x", code=1)
    assert d.state("a") is OMIT
    assert d.state("y") is OMIT
    assert d.state("b") is OMIT
    assert d.state("c") is FAIL and d.state("c:0") is OMIT and d.state("c:1") is OMIT
    assert d.eng.unfinished == 0


def test_canceled_iteration_job_releases_its_dependants() -> None:
    d = Driver(engine("1"))
    d.submit(
        spec("a", iteration=3),
        spec("b", after="a:2"),
        spec("c", iteration=3, after="a:${it}"),
        spec("y", after="a"),
    )
    d.cancel("a")
    d.exit(d.run_of("a", 0), -15)
    assert d.state("a") is CANCEL
    assert {n: d.state(n) for n in ("b", "c", "y")} == {"b": OMIT, "c": FAIL, "y": OMIT}
    assert d.eng.unfinished == 0


def test_canceled_single_iteration_omits_paired_chain() -> None:
    d = Driver(engine("1"))
    d.submit(
        spec("a", iteration=2),
        spec("b", iteration=2, after="a:${it}"),
        spec("c", iteration=2, after="b:${it}"),
        spec("z", after="c:1"),
    )
    d.cancel("a:1")
    assert d.state("a:1") is CANCEL
    assert d.state("b:1") is OMIT and d.state("c:1") is OMIT and d.state("z") is OMIT
    d.drain()
    assert [d.state(n) for n in "abc"] == [FAIL, FAIL, FAIL]
    assert d.eng.unfinished == 0


def test_iteration_job_dependency_waits_for_whole_job() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a", iteration=2), spec("b", after="a"))
    d.finish("a", 0)
    assert ("b", None) not in d.launched()
    d.finish("a", 1)
    assert ("b", None) in d.launched()


def test_dependants_of_failed_iteration_job_omitted() -> None:
    d = Driver(engine("4"))
    d.submit(spec("a", iteration=2), spec("b", after="a"))
    d.finish("a", 0)
    d.finish("a", 1, code=1)
    assert d.state("a") is FAIL and d.state("b") is OMIT
