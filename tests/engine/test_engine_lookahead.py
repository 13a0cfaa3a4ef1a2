"""Launches ahead of free cores (``Engine.lookahead``): queued runs take the cores of
the run that ends before them, with no pass through the scheduler."""

from __future__ import annotations

from engine_helpers import CANCEL, OK, OMIT, E, Q, S, check_pool, engine, spec

from qcgpj_async.engine import Engine, Kill, Launch


def launches(out: list[object]) -> list[Launch]:
    return [i for i in out if isinstance(i, Launch)]


def held(eng: Engine) -> list[object]:
    """The allocations of the runs that hold cores."""
    return [r.allocation for r in eng.runs.values() if not r.queued]


def ahead_engine(nodes: str = "2", lookahead: int = 3) -> Engine:
    eng = engine(nodes)
    eng.lookahead = lookahead
    return eng


def test_runs_beyond_the_cores_are_launched_queued_in_order() -> None:
    eng = ahead_engine()
    out = eng.submit([spec(f"j{i}") for i in range(8)], 0.0)
    got = launches(out)
    assert [(la.job, la.queued) for la in got] == [
        ("j0", False),
        ("j1", False),
        ("j2", True),
        ("j3", True),
        ("j4", True),
    ]
    assert eng.queued == 3 and eng.pool.free_cores == 0
    for name in ("j2", "j3", "j4"):  # they hold no cores and are still QUEUED
        assert eng.jobs[name].state is Q
    check_pool(eng.pool, held(eng))


def test_a_queued_run_takes_the_cores_of_the_run_it_follows() -> None:
    eng = ahead_engine(lookahead=2)
    out = launches(eng.submit([spec(f"j{i}") for i in range(5)], 0.0))
    first, queued = out[0].run_id, out[2].run_id
    cores = eng.runs[first].allocation
    eng.started(first, 1.0)
    out2 = eng.exited(first, 0, 2.0, successors=[queued])
    assert eng.jobs["j0"].state is OK
    assert eng.runs[queued].allocation is cores and not eng.runs[queued].queued
    assert eng.jobs["j2"].history == [(Q, 0.0), (S, 2.0)]  # scheduled when it took them
    assert eng.pool.free_cores == 0  # never freed
    # the lookahead is topped up with the next job
    assert [(la.job, la.queued) for la in launches(out2)] == [("j4", True)]
    eng.started(queued, 2.5)
    assert eng.jobs["j2"].state is E
    check_pool(eng.pool, held(eng))


def test_an_end_nobody_follows_frees_its_cores_for_the_scheduler() -> None:
    eng = ahead_engine(lookahead=1)
    out = launches(eng.submit([spec("a"), spec("b"), spec("c")], 0.0))
    a, b, c = (la.run_id for la in out)
    eng.started(a, 1.0)
    eng.exited(a, 0, 2.0, successors=[c])
    eng.started(b, 1.0)
    out2 = launches(eng.exited(b, 0, 2.0))  # nothing queued: its core is free
    assert out2 == [] and eng.pool.free_cores == 1
    out3 = launches(eng.submit([spec("d")], 3.0))
    assert [(la.job, la.queued) for la in out3] == [("d", False)]
    check_pool(eng.pool, held(eng))


def test_a_job_needing_more_than_one_core_stops_the_lookahead() -> None:
    eng = ahead_engine(lookahead=4)
    out = launches(eng.submit([spec("a"), spec("b"), spec("big", numCores=2), spec("c")], 0.0))
    assert [(la.job, la.queued) for la in out] == [("a", False), ("b", False)]
    assert eng.queued == 0  # "c" is not launched past "big"


def test_jobs_the_executor_refuses_are_not_launched_ahead() -> None:
    eng = ahead_engine(lookahead=4)
    eng.queueable = lambda s: s.name != "mpi"
    out = launches(eng.submit([spec("a"), spec("b"), spec("mpi"), spec("c")], 0.0))
    assert [la.job for la in out] == ["a", "b"]


def test_on_several_nodes_each_node_queues_its_share_in_turn() -> None:
    eng = ahead_engine("n1:2,n2:1", lookahead=6)  # shares: 4 and 2
    out = launches(eng.submit([spec(f"j{i}") for i in range(12)], 0.0))
    queued = [(la.job, la.allocation.nodes[0]) for la in out if la.queued]
    assert queued == [
        ("j3", "n1"),
        ("j4", "n2"),
        ("j5", "n1"),
        ("j6", "n2"),
        ("j7", "n1"),
        ("j8", "n1"),
    ]
    assert eng.queued == 6 and eng.pool.free_cores == 0
    check_pool(eng.pool, held(eng))


def test_a_successor_takes_the_core_of_the_run_it_follows_on_its_node() -> None:
    eng = ahead_engine("n1:2,n2:2", lookahead=4)
    out = launches(eng.submit([spec(f"j{i}") for i in range(9)], 0.0))
    on_n2 = [la for la in out if la.allocation.nodes == ["n2"]]
    ended, succ = on_n2[1], on_n2[2]  # j3 runs in n2's core 1; j5 is queued on n2
    assert (ended.job, ended.queued, succ.job, succ.queued) == ("j3", False, "j5", True)
    eng.started(ended.run_id, 1.0)
    out2 = launches(eng.exited(ended.run_id, 0, 2.0, successors=[succ.run_id]))
    assert eng.runs[succ.run_id].allocation is ended.allocation  # n2[1], as the agent pinned it
    assert eng.pool.free_cores == 0
    # n2's queue is topped up, n1's is full
    assert [(la.job, la.queued, la.allocation.nodes) for la in out2] == [("j8", True, ["n2"])]
    check_pool(eng.pool, held(eng))


def test_a_core_freed_before_the_queued_starts_got_there_goes_to_the_next_job() -> None:
    # an end the agent saw before the runs queued on its node reached it: a job the
    # scheduler starts there costs one request, a queued run promoted two
    eng = ahead_engine("n1:1,n2:1", lookahead=4)
    out = launches(eng.submit([spec(f"j{i}") for i in range(8)], 0.0))
    n2_run = next(la for la in out if la.allocation.nodes == ["n2"] and not la.queued)
    eng.started(n2_run.run_id, 1.0)
    out2 = launches(eng.exited(n2_run.run_id, 0, 2.0))
    assert [(la.job, la.queued, la.promote, la.allocation.nodes) for la in out2] == [
        ("j6", False, False, ["n2"])
    ]
    assert eng.queued == 4  # the queues stay as they were
    check_pool(eng.pool, held(eng))


def test_free_cores_no_job_takes_go_to_the_runs_queued_on_that_node() -> None:
    eng = ahead_engine("n1:1,n2:1", lookahead=4)
    out = launches(eng.submit([spec(f"j{i}") for i in range(6)], 0.0))
    n2_run = next(la for la in out if la.allocation.nodes == ["n2"] and not la.queued)
    first_n2 = next(la for la in out if la.allocation.nodes == ["n2"] and la.queued)
    eng.started(n2_run.run_id, 1.0)
    out2 = launches(eng.exited(n2_run.run_id, 0, 2.0))
    assert [(la.job, la.promote, la.allocation.nodes) for la in out2] == [
        (first_n2.job, True, ["n2"])
    ]
    assert out2[0].allocation is eng.runs[first_n2.run_id].allocation
    assert eng.queued == 3
    check_pool(eng.pool, held(eng))


def test_a_lost_node_queues_nothing_more_and_the_others_keep_their_lookahead() -> None:
    eng = ahead_engine("n1:1,n2:1", lookahead=4)
    out = launches(eng.submit([spec(f"j{i}") for i in range(10)], 0.0))
    eng.node_lost("n2", 1.0, "node n2 lost: test")
    on_n2 = [la for la in out if la.queued and la.allocation.nodes == ["n2"]]
    again = []
    for la in on_n2:  # the agent is gone: its queued starts come back
        again += launches(eng.requeue(la.run_id, 1.5, stop=False))
    assert eng.lookahead == 4
    assert again == []  # n1's queue is full, n2 is gone
    n1_run = next(la for la in out if la.allocation.nodes == ["n1"] and not la.queued)
    eng.started(n1_run.run_id, 2.0)
    nxt = next(la for la in out if la.queued and la.allocation.nodes == ["n1"])
    out3 = launches(eng.exited(n1_run.run_id, 0, 3.0, successors=[nxt.run_id]))
    assert [la.allocation.nodes for la in out3] == [["n1"]]  # n1's queue topped up
    assert out3[0].job == on_n2[0].job  # with the earliest job: one n2 gave back
    assert eng.pool.total_cores == 1 and eng.pool.free_cores == 0


def test_iterations_are_launched_ahead() -> None:
    eng = ahead_engine(lookahead=2)
    out = launches(eng.submit([spec("it", iteration=6)], 0.0))
    assert [(la.iteration, la.queued) for la in out] == [
        (0, False),
        (1, False),
        (2, True),
        (3, True),
    ]
    assert eng.iteration_state(eng.jobs["it"], 2) is Q


def test_cancel_of_a_queued_run_ends_it_at_once_and_settles_its_cores_later() -> None:
    eng = ahead_engine("1", lookahead=2)
    out = launches(eng.submit([spec("a"), spec("b"), spec("c", after="b"), spec("d")], 0.0))
    a, b = out[0].run_id, out[1].run_id
    assert out[1].queued
    kills = [i for i in eng.cancel("b", 1.0) if isinstance(i, Kill)]
    assert kills == [Kill(b, "b", None, "cancel")]  # the executor takes it out of its queue
    assert eng.jobs["b"].state is CANCEL and eng.jobs["c"].state is OMIT
    # the executor had started it already (a race): it took a's core and is killed
    eng.started(a, 1.0)
    eng.exited(a, 0, 2.0, successors=[b])
    assert eng.pool.free_cores == 0
    eng.started(b, 2.0, pid=42)
    assert eng.jobs["b"].state is CANCEL  # no change
    eng.exited(b, -15, 3.0)
    assert eng.jobs["b"].history[-1] == (CANCEL, 1.0)
    assert b not in eng.runs
    check_pool(eng.pool, held(eng))


def test_a_dropped_queued_run_gives_back_no_cores() -> None:
    eng = ahead_engine("1", lookahead=2)
    out = launches(eng.submit([spec("a"), spec("b"), spec("c")], 0.0))
    b = out[1].run_id
    eng.cancel("b", 1.0)
    assert eng.queued == 2
    eng.exited(b, -1, 1.5, "stopped before it started")  # the executor's answer
    assert eng.queued == 1 and eng.pool.free_cores == 0
    check_pool(eng.pool, held(eng))


def test_cancel_of_an_iteration_job_with_queued_runs() -> None:
    eng = ahead_engine("1", lookahead=2)
    out = launches(eng.submit([spec("it", iteration=5)], 0.0))
    first, q1, q2 = (la.run_id for la in out)
    eng.cancel("it:2", 1.0)  # one queued iteration, then the whole job
    eng.cancel("it", 1.0)
    job = eng.jobs["it"]
    assert [eng.iteration_state(job, i) for i in range(5)] == [S, CANCEL, CANCEL, CANCEL, CANCEL]
    assert (job.done, job.active) == (4, 1)
    eng.exited(q1, -1, 1.5, "stopped before it started")
    eng.exited(q2, -1, 1.5, "stopped before it started")
    eng.exited(first, -15, 2.0)
    assert job.state is CANCEL and job.done == 5 and eng.queued == 0
    assert eng.pool.free_cores == 1 and not eng.runs


def test_an_end_of_several_cores_goes_to_several_queued_runs() -> None:
    eng = ahead_engine("3", lookahead=4)
    out = launches(
        eng.submit([spec("big", numCores=2), spec("a"), spec("b"), spec("c"), spec("d")], 0.0)
    )
    assert [(la.job, la.queued) for la in out] == [
        ("big", False),
        ("a", False),
        ("b", True),
        ("c", True),
        ("d", True),
    ]
    big, b, c = out[0].run_id, out[2].run_id, out[3].run_id
    eng.started(big, 1.0)
    eng.exited(big, 0, 2.0, successors=[b, c])
    assert eng.jobs["b"].state is S and eng.jobs["c"].state is S
    assert eng.pool.free_cores == 0 and eng.queued == 1
    check_pool(eng.pool, held(eng))


def test_a_requeued_run_goes_back_in_its_place_and_lookahead_stops() -> None:
    eng = ahead_engine("2", lookahead=3)
    out = launches(eng.submit([spec("a"), spec("b"), spec("it", iteration=3), spec("z")], 0.0))
    assert [(la.job, la.iteration, la.queued) for la in out] == [
        ("a", None, False),
        ("b", None, False),
        ("it", 0, True),
        ("it", 1, True),
        ("it", 2, True),
    ]
    for la in out[2:]:
        assert eng.requeue(la.run_id, 1.0) == []  # nothing free yet
    assert eng.lookahead == 0 and eng.queued == 0
    a = out[0].run_id
    eng.started(a, 1.0)
    again = launches(eng.exited(a, 0, 2.0))
    assert [(la.job, la.iteration, la.queued) for la in again] == [("it", 0, False)]
    job = eng.jobs["it"]
    assert job.history == [(Q, 0.0), (S, 2.0)] and job.active == 1
    check_pool(eng.pool, held(eng))


def test_free_cores_no_job_takes_go_to_queued_runs() -> None:
    # an end the executor saw before the queued start reached it: nobody took its core
    eng = ahead_engine("2", lookahead=2)
    out = launches(eng.submit([spec("a"), spec("b"), spec("c"), spec("d")], 0.0))
    a, c = out[0].run_id, out[2].run_id
    eng.started(a, 1.0)
    out2 = launches(eng.exited(a, 0, 2.0))
    assert [(la.job, la.queued, la.promote) for la in out2] == [
        ("c", False, True),  # start it now, in the free core
    ]
    assert eng.jobs["c"].state is S and not eng.runs[c].queued
    assert out2[0].allocation is eng.runs[c].allocation
    # the executor had started it in a's core after all: its core is not taken twice
    b = out[1].run_id
    eng.started(b, 2.5)
    eng.exited(b, 0, 3.0, successors=[c])
    assert eng.pool.free_cores == 0  # b's core went to "d" (promoted), c keeps its own
    check_pool(eng.pool, held(eng))
