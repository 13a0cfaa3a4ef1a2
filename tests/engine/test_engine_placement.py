"""Placement on nodes (numNodes) from the pool's heaps gives what a walk over the nodes gives.

The pool keeps, per number of cores asked on each node, a heap of the nodes
that can hold it, so that placing a multi-node job does not grow with the
number of nodes. These tests hold it to the rule it replaced: the
lowest-index nodes that qualify, in order (the original's walk), nodes with
GPUs after those without (their cores are kept for GPU jobs).
"""

from __future__ import annotations

from engine_helpers import check_pool, pool
from hypothesis import given, settings
from hypothesis import strategies as st

from qcgpj_async.engine import Allocation, Requirement, ResourcePool


def walk(p: ResourcePool, req: Requirement) -> list[tuple[str, int]] | None:
    """The original's placement on nodes, walking every node in order."""
    assert req.nodes_lo is not None and not req.crs
    hi = req.nodes_hi if req.nodes_hi is not None else req.nodes_lo
    plan = []
    for node in sorted(p.nodes, key=lambda n: (bool(n.gpu_ids), n.index)):  # GPU nodes last
        n = len(node.free)
        if req.cores_lo == 0:
            whole = n == node.total and node.crs_free == node.crs_total
            if whole and not (p.system_core and node.index == 0):
                plan.append((node.name, n))
        elif n >= req.cores_lo:
            plan.append((node.name, min(n, req.cores_hi)))
        if len(plan) == hi:
            break
    return plan if len(plan) >= req.nodes_lo else None


#: numNodes requirements without consumables (0 cores: whole nodes). One object each,
#: as the engine interns them: placing the same one again may reuse the nodes found.
NODE_REQS = [
    Requirement(0, 0, 1, 1),
    Requirement(0, 0, 2, 3),
    Requirement(1, 1, 2, 2),
    Requirement(1, 3, 1, 2),
    Requirement(2, 2, 1, 3),
    Requirement(3, 4, 2, 2),
]


@st.composite
def op(draw: st.DrawFn) -> tuple[str, object]:
    kind = draw(st.sampled_from(["nodes", "nodes", "cores", "gpu", "release", "release"]))
    if kind == "nodes":
        return kind, draw(st.sampled_from(NODE_REQS))
    if kind == "cores":
        n = draw(st.integers(1, 5))
        return kind, Requirement(n, n + draw(st.integers(0, 3)))
    if kind == "gpu":
        return kind, Requirement(1, 1, None, None, (("gpu", 1),))
    return kind, draw(st.integers(0, 1000))


@settings(max_examples=300, deadline=None)
@given(
    nodes=st.lists(st.integers(1, 4), min_size=1, max_size=7),
    system_core=st.booleans(),
    ops=st.lists(op(), max_size=40),
)
def test_placement_on_nodes_is_the_walk(
    nodes: list[int], system_core: bool, ops: list[tuple[str, object]]
) -> None:
    p = pool(",".join(map(str, nodes)), system_core=system_core, crs={"n1": {"gpu": 2}})
    held: list[Allocation] = []
    for kind, arg in ops:
        if kind == "release":
            assert isinstance(arg, int)
            if held:
                p.release(held.pop(arg % len(held)))
        elif kind == "nodes":
            assert isinstance(arg, Requirement)
            want = walk(p, arg)
            # fits, then allocate: the engine's order (the second reuses the first's nodes)
            assert p.fits(arg) is (want is not None)
            got = p.allocate(arg)
            if want is None:
                assert got is None
            else:
                assert got is not None
                assert [(part.node, len(part.cores)) for part in got.parts] == want
                held.append(got)
        else:
            assert isinstance(arg, Requirement)
            got = p.allocate(arg)
            if got is not None:
                held.append(got)
        check_pool(p, held)
    for a in held:
        p.release(a)
    check_pool(p, [])
    # Everything back: every node that can be whole is found whole again.
    whole = walk(p, Requirement(0, 0, 1, len(nodes)))
    got = p.allocate(Requirement(0, 0, 1, len(nodes)))
    assert (None if got is None else [(q.node, len(q.cores)) for q in got.parts]) == whole


def test_placement_does_not_walk_busy_nodes() -> None:
    # 1,000 nodes, all busy but the last four: the nodes found are those.
    p = pool(",".join(["2"] * 1000))
    req = Requirement(0, 0, 4, 4)
    busy = [p.allocate(Requirement(0, 0, 1, 1)) for _ in range(996)]
    a = p.allocate(req)
    assert a is not None and a.nodes == ["n996", "n997", "n998", "n999"]
    # One released in the middle is found first (lowest index), the rest after it.
    p.release(a)
    released = busy[500]
    assert released is not None
    p.release(released)
    b = p.allocate(req)
    assert b is not None and b.nodes == ["n500", "n996", "n997", "n998"]


def test_nodes_found_are_checked_again_when_cores_went_between() -> None:
    # fits() finds n0, n1; cores taken before allocate() leave n0 unable: n1, n2.
    p = pool("2,2,2,2")
    req = Requirement(1, 1, 2, 2)
    assert p.fits(req)
    taken = p.allocate(Requirement(2, 2))
    assert taken is not None and taken.nodes == ["n0"]
    a = p.allocate(req)
    assert a is not None and a.nodes == ["n1", "n2"]
    # n0 comes back; n0, n1 are found, then n1 is lost: n0 and n2.
    p.release(taken)
    assert p.fits(req)
    p.take_out("n1")
    b = p.allocate(req)
    assert b is not None and b.nodes == ["n0", "n2"]
