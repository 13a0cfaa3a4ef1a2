"""A node lost (its launch agent died): its cores leave the pool for good."""

from __future__ import annotations

from engine_helpers import FAIL, OK, Driver, Q, engine, spec

from qcgpj_async.engine import Launch


def nodes_of(d: Driver) -> dict[str, str]:
    return {la.job: la.allocation.nodes[0] for la in [*d.pending.values(), *d.running.values()]}


def test_a_lost_node_takes_its_cores_out_and_queued_work_goes_elsewhere() -> None:
    d = Driver(engine("n1:2,n2:2"))
    d.submit([spec(f"a{i}") for i in range(4)], [spec(f"q{i}") for i in range(3)])
    placed = nodes_of(d)
    assert sorted(placed.values()) == ["n1", "n1", "n2", "n2"]
    for rid in list(d.pending):
        d.start(rid)
    pool = d.eng.pool
    out = d.feed(d.eng.node_lost("n2", d.tick(), "node n2 lost: agent exited"))
    assert not [i for i in out if isinstance(i, Launch)]  # nothing free anywhere yet
    assert (pool.total_cores, pool.free_cores) == (2, 0)
    on_n2 = [rid for rid, la in d.running.items() if la.allocation.nodes == ["n2"]]
    for rid in on_n2:  # its runs end FAILED with the reason; their cores do not come back
        d.exit(rid, -9, "node n2 lost: agent exited")
    assert pool.free_cores == 0 and not d.pending
    lost = [j for j, n in placed.items() if n == "n2"]
    assert all(d.eng.jobs[j].state is FAIL for j in lost)
    assert d.eng.jobs[lost[0]].messages == ["node n2 lost: agent exited"]
    d.finish("a0")  # a core of n1 frees: the first queued job takes it, on n1
    assert nodes_of(d) == {"a1": "n1", "q0": "n1"}
    assert pool.nodes[1].free == [] and pool.free_cores == 0
    for job in ("a1", "q0", "q1", "q2"):
        d.finish(job)
    assert all(d.eng.jobs[f"q{i}"].state is OK for i in range(3))
    assert pool.free_cores == 2


def test_queued_work_that_no_longer_fits_ends_failed_with_the_reason() -> None:
    d = Driver(engine("n1:2,n2:2"))
    d.submit(spec("hold", numCores=4), spec("two", numNodes=2), spec("one"))
    assert d.eng.jobs["two"].state is Q
    d.feed(d.eng.node_lost("n2", d.tick(), "node n2 lost: x"))
    two = d.eng.jobs["two"]
    assert two.state is FAIL
    assert two.messages is not None and two.messages[0].startswith("node n2 lost: x; Not enough")
    assert d.eng.jobs["one"].state is Q  # fits on n1 once "hold" ends
    d.finish("hold", code=-9)
    assert nodes_of(d) == {"one": "n1"}
    # A new job that needs the lost node is refused as any unfit job is.
    d.submit(spec("three", numCores=3))
    assert d.eng.jobs["three"].state is FAIL


def test_losing_an_unknown_or_lost_node_changes_nothing() -> None:
    d = Driver(engine("n1:2,n2:2"))
    assert d.eng.node_lost("nx", 0.0) == []
    d.eng.node_lost("n2", 0.0)
    assert d.eng.pool.take_out("n2") == 0
    assert d.eng.pool.total_cores == 2
