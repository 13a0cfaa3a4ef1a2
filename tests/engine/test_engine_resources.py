"""The resource pool: nodes specs, counts, and the original's allocation rules."""

from __future__ import annotations

import pytest
from engine_helpers import check_pool, pool

from qcgpj_async import JobDescriptionError
from qcgpj_async.engine import Allocation, NodePart, Requirement, ResourcePool, parse_nodes


def cores_of(a: Allocation | None) -> list[tuple[str, tuple[int, ...]]]:
    assert a is not None
    return [(p.node, p.cores) for p in a.parts]


# -- nodes spec ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("4", [("n0", 4)]),
        ("n1:2", [("n1", 2)]),
        ("4,2,2", [("n0", 4), ("n1", 2), ("n2", 2)]),
        ("n1:4,n2:4", [("n1", 4), ("n2", 4)]),
        (" a:1 , 3", [("a", 1), ("n1", 3)]),
    ],
)
def test_parse_nodes(text: str, nodes: list[tuple[str, int]]) -> None:
    assert parse_nodes(text) == nodes


@pytest.mark.parametrize(
    "text", ["", "0", "n1:0", "n1:", "a:b", "-1", "n1:2,n1:3", "2,,2", "a:b:2"]
)
def test_parse_nodes_rejects(text: str) -> None:
    with pytest.raises(JobDescriptionError, match="nodes"):
        parse_nodes(text)


def test_empty_pool_rejected() -> None:
    with pytest.raises(JobDescriptionError, match="no nodes"):
        ResourcePool([])


def test_named_cores_and_counts() -> None:
    p = pool("n1:2,n2:3", crs={"n1": {"gpu": 2, "mem": 8}})
    assert [(n.name, n.total, sorted(n.free)) for n in p.nodes] == [
        ("n1", 2, [0, 1]),
        ("n2", 3, [0, 1, 2]),
    ]
    assert p.nodes[0].crs_total == {"gpu": 2, "mem": 8}
    assert p.nodes[1].crs_total == {}
    assert p.consumables == {"gpu", "mem"}
    assert (p.total_cores, p.used_cores, p.free_cores, p.total_nodes) == (5, 0, 5, 2)
    a = p.allocate(Requirement(3, 3))
    assert (p.total_cores, p.used_cores, p.free_cores) == (5, 3, 2)
    assert a is not None
    p.release(a)
    assert (p.used_cores, p.free_cores) == (0, 5)
    check_pool(p, [])


def test_system_core_reserves_core_0_of_first_node() -> None:
    p = pool("2,2", system_core=True)
    assert (p.total_cores, p.free_cores) == (3, 3)
    assert sorted(p.nodes[0].free) == [1]
    a = p.allocate(Requirement(3, 3))
    assert cores_of(a) == [("n0", (1,)), ("n1", (0, 1))]
    check_pool(p, [a])  # type: ignore[list-item]
    assert p.allocate(Requirement(1, 1)) is None


# -- numCores only --------------------------------------------------------------


def test_cores_lowest_ids_node_by_node_spanning() -> None:
    p = pool("2,2,2")
    a1 = p.allocate(Requirement(1, 1))
    a2 = p.allocate(Requirement(3, 3))
    a3 = p.allocate(Requirement(1, 1))
    assert cores_of(a1) == [("n0", (0,))]
    assert cores_of(a2) == [("n0", (1,)), ("n1", (0, 1))]
    assert cores_of(a3) == [("n2", (0,))]
    assert str(a2) == "n0[1],n1[0:1]"
    assert a2 is not None and a2.cores == 3 and a2.nodes == ["n0", "n1"]
    p.release(a1)  # type: ignore[arg-type]
    a4 = p.allocate(Requirement(2, 2))
    assert cores_of(a4) == [("n0", (0,)), ("n2", (1,))]
    check_pool(p, [a2, a3, a4])  # type: ignore[list-item]


def test_cores_released_return_lowest_first() -> None:
    p = pool("4")
    allocs = [p.allocate(Requirement(1, 1)) for _ in range(4)]
    p.release(allocs[2])  # type: ignore[arg-type]
    p.release(allocs[1])  # type: ignore[arg-type]
    assert cores_of(p.allocate(Requirement(1, 1))) == [("n0", (1,))]
    assert cores_of(p.allocate(Requirement(1, 1))) == [("n0", (2,))]


def test_cores_range_takes_what_is_free_up_to_max() -> None:
    p = pool("2,2")
    a = p.allocate(Requirement(2, 3))
    assert a is not None and a.cores == 3
    b = p.allocate(Requirement(1, 4))
    assert b is not None and b.cores == 1  # only one left
    assert p.allocate(Requirement(1, 4)) is None
    assert p.fits(Requirement(1, 1)) is False
    check_pool(p, [a, b])


def test_cores_minimum_not_free_gives_nothing() -> None:
    p = pool("4")
    a = p.allocate(Requirement(3, 3))
    assert p.allocate(Requirement(2, 2)) is None
    assert p.free_cores == 1
    check_pool(p, [a])  # type: ignore[list-item]


# -- numNodes only ---------------------------------------------------------------


def test_nodes_only_whole_unused_nodes() -> None:
    p = pool("2,3,2")
    one = p.allocate(Requirement(1, 1))  # n0 is no longer unused
    assert cores_of(one) == [("n0", (0,))]
    a = p.allocate(Requirement(0, 0, 2, 2))
    assert cores_of(a) == [("n1", (0, 1, 2)), ("n2", (0, 1))]
    assert p.allocate(Requirement(0, 0, 1, 1)) is None  # n0 has a free core but is used
    p.release(one)  # type: ignore[arg-type]
    assert cores_of(p.allocate(Requirement(0, 0, 1, 1))) == [("n0", (0, 1))]


def test_nodes_range() -> None:
    p = pool("1,1,1")
    a = p.allocate(Requirement(0, 0, 1, 5))
    assert a is not None and a.nodes == ["n0", "n1", "n2"]
    p.release(a)
    a = p.allocate(Requirement(0, 0, 2, 2))
    assert a is not None and a.nodes == ["n0", "n1"]
    assert p.allocate(Requirement(0, 0, 2, 2)) is None
    b = p.allocate(Requirement(0, 0, 1, 3))
    assert b is not None and b.nodes == ["n2"]


def test_nodes_only_skips_node_with_system_core() -> None:
    p = pool("2,2", system_core=True)
    a = p.allocate(Requirement(0, 0, 1, 1))
    assert cores_of(a) == [("n1", (0, 1))]
    assert p.allocate(Requirement(0, 0, 1, 1)) is None
    assert not p.can_ever_fit(Requirement(0, 0, 2, 2))
    assert p.can_ever_fit(Requirement(0, 0, 1, 1))


def test_nodes_only_needs_all_consumables_free() -> None:
    p = pool("n1:2,n2:2", crs={"n1": {"gpu": 2}})
    g = p.allocate(Requirement(1, 1, None, None, (("gpu", 1),)))
    assert cores_of(g) == [("n1", (0,))]
    p.release(g)  # type: ignore[arg-type]
    # cores back, gpu back: n1 is whole again
    g = p.allocate(Requirement(0, 0, 2, 2))
    assert g is not None and g.nodes == ["n2", "n1"]  # the node without GPUs first


# -- numCores and numNodes -----------------------------------------------------------


def test_cores_on_each_node() -> None:
    p = pool("4,1,3,4")
    a = p.allocate(Requirement(2, 2, 2, 2))
    assert cores_of(a) == [("n0", (0, 1)), ("n2", (0, 1))]  # n1 has fewer than 2 cores
    b = p.allocate(Requirement(2, 4, 1, 3))
    # each node with >= 2 free: n0 (2 left), n3 (4), up to 4 per node, n2 has 1 left
    assert cores_of(b) == [("n0", (2, 3)), ("n3", (0, 1, 2, 3))]
    assert p.allocate(Requirement(1, 1, 3, 3)) is None  # only n1 and n2 have cores left
    c = p.allocate(Requirement(1, 1, 2, 2))
    assert cores_of(c) == [("n1", (0,)), ("n2", (2,))]
    check_pool(p, [a, b, c])  # type: ignore[list-item]


def test_cores_on_each_node_until_max_nodes() -> None:
    p = pool("2,2,2,2")
    a = p.allocate(Requirement(1, 2, 1, 2))
    assert cores_of(a) == [("n0", (0, 1)), ("n1", (0, 1))]


# -- consumables ----------------------------------------------------------------------


def test_consumables_per_node() -> None:
    p = pool("n1:2,n2:2", crs={"n1": {"gpu": 2}})
    gpu = (("gpu", 1),)
    a = p.allocate(Requirement(1, 1, None, None, gpu))
    b = p.allocate(Requirement(1, 1, None, None, gpu))
    assert cores_of(a) == [("n1", (0,))] and cores_of(b) == [("n1", (1,))]
    assert a is not None and a.parts[0].crs == {"gpu": 1}
    assert p.nodes[0].crs_free == {"gpu": 0}
    assert not p.fits(Requirement(1, 1, None, None, gpu))
    assert p.fits(Requirement(1, 1))
    check_pool(p, [a, b])  # type: ignore[list-item]
    p.release(a)  # type: ignore[arg-type]
    assert p.nodes[0].crs_free == {"gpu": 1}
    check_pool(p, [b])  # type: ignore[list-item]


def test_consumables_gpu_free_but_no_core() -> None:
    p = pool("n1:1,n2:2", crs={"n1": {"gpu": 2}})
    a = p.allocate(Requirement(1, 1, None, None, (("gpu", 1),)))
    assert a is not None
    assert p.allocate(Requirement(1, 1, None, None, (("gpu", 1),))) is None  # n1 has no core left
    assert p.nodes[0].crs_free == {"gpu": 1}


def test_can_ever_fit() -> None:
    p = pool("n1:2,n2:2", crs={"n1": {"gpu": 2}})
    assert p.can_ever_fit(Requirement(4, 4))
    assert not p.can_ever_fit(Requirement(5, 5))
    assert p.can_ever_fit(Requirement(2, 2, None, None, (("gpu", 2),)))
    assert not p.can_ever_fit(Requirement(3, 3, None, None, (("gpu", 1),)))  # only n1 has gpus
    assert not p.can_ever_fit(Requirement(1, 1, None, None, (("gpu", 3),)))
    assert p.can_ever_fit(Requirement(0, 0, 2, 2))
    assert not p.can_ever_fit(Requirement(0, 0, 3, 3))
    assert p.can_ever_fit(Requirement(2, 2, 2, 2))
    assert not p.can_ever_fit(Requirement(3, 3, 1, 1))


def test_system_core_counts_in_can_ever_fit() -> None:
    p = pool("4", system_core=True)
    assert not p.can_ever_fit(Requirement(4, 4))
    assert p.can_ever_fit(Requirement(3, 3))
    assert not p.can_ever_fit(Requirement(4, 4, 1, 1))


def test_allocation_value() -> None:
    a = Allocation((NodePart("n0", (0, 1), None, 0), NodePart("n1", (3,), {"gpu": 1}, 1)))
    assert a.cores == 3 and a.nodes == ["n0", "n1"]
    assert str(a) == "n0[0:1],n1[3]"
