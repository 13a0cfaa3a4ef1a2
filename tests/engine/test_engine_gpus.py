"""GPUs in the engine: each job gets its own device ids, which come back when it ends."""

from __future__ import annotations

import pytest
from engine_helpers import CANCEL, FAIL, OK, check_pool, spec, specs
from hypothesis import given, settings
from hypothesis import strategies as st

from qcgpj_async import JobDescriptionError
from qcgpj_async.engine import (
    Allocation,
    Engine,
    GpuSetup,
    Kill,
    Launch,
    Requirement,
    ResourcePool,
    parse_nodes,
    parse_nodes_gpus,
)


def gpu_engine(nodes: str = "n1:8", **gpus: str) -> Engine:
    ids = {name: tuple(v.split(",")) for name, v in gpus.items()}
    return Engine(ResourcePool(parse_nodes(nodes), gpus=ids))


def launches(out: list[object]) -> list[Launch]:
    return [i for i in out if isinstance(i, Launch)]


def held_gpus(eng: Engine) -> list[tuple[str, str]]:
    """(node, id) of every device held by a running run, with repeats."""
    return [(p.node, g) for r in eng.runs.values() for p in r.allocation.parts for g in p.gpus]


def test_eight_one_gpu_jobs_on_four_devices() -> None:
    eng = gpu_engine(n1="0,1,2,3")
    out = eng.submit(specs(*({"name": f"j{i}", "gpus": 1} for i in range(8))), 0.0)
    first = launches(out)
    assert [la.allocation.parts[0].gpus for la in first] == [("0",), ("1",), ("2",), ("3",)]
    check_pool(eng.pool, [la.allocation for la in first])
    seen: list[str] = []
    running = {la.run_id: la for la in first}
    t = 1.0
    while running:
        held = held_gpus(eng)
        assert len(held) == len(set(held)), f"a device held twice: {held}"
        run_id = min(running)
        seen.extend(running.pop(run_id).allocation.parts[0].gpus)
        eng.started(run_id, t)
        for la in launches(eng.exited(run_id, 0, t)):
            running[la.run_id] = la
        t += 1
    assert sorted(seen) == sorted(["0", "1", "2", "3"] * 2)
    assert all(j.state is OK for j in eng.jobs.values())
    assert eng.pool.free_gpus == 4
    assert sorted(eng.pool.nodes[0].gpu_free) == [0, 1, 2, 3]


def test_two_gpu_jobs_and_a_freed_pair() -> None:
    eng = gpu_engine(n1="a,b,c,d")
    out = launches(eng.submit(specs(*({"name": f"p{i}", "gpus": 2} for i in range(3))), 0.0))
    assert [la.allocation.parts[0].gpus for la in out] == [("a", "b"), ("c", "d")]
    nxt = launches(eng.exited(out[1].run_id, 0, 1.0))
    assert [la.allocation.parts[0].gpus for la in nxt] == [("c", "d")]


def test_more_gpus_than_a_node_has_fails_with_the_numbers() -> None:
    eng = gpu_engine("n1:4,n2:4", n1="0,1")
    eng.submit([spec("big", gpus=3), spec("ok", gpus=2)], 0.0)
    assert eng.jobs["big"].state is FAIL
    assert eng.jobs["big"].messages == [
        "Not enough resources for job big: needs 1 core with 3 GPUs per node; "
        "the pilot has 2 nodes x 4 cores, at most 2 GPUs per node on 1 node of 2"
    ]
    assert eng.jobs["ok"].state is not FAIL


def test_a_gpu_job_on_a_pilot_without_gpus_fails_with_why() -> None:
    eng = Engine(ResourcePool(parse_nodes("2")))
    eng.submit([spec("g", gpus=1), spec("cpu")], 0.0)
    assert eng.jobs["g"].state is FAIL
    (msg,) = eng.jobs["g"].messages or []
    assert msg.startswith("Not enough resources for job g: needs 1 core with 1 GPU per node;")
    assert "no GPU (none declared by --gpus" in msg
    assert eng.jobs["cpu"].state is not FAIL


def test_cancel_frees_the_devices() -> None:
    eng = gpu_engine(n1="0,1")
    (la,) = launches(eng.submit([spec("all", gpus=2)], 0.0))
    eng.started(la.run_id, 0.5)
    assert launches(eng.submit([spec("next", gpus=1)], 1.0)) == []
    out = eng.cancel("all", 2.0)
    assert [type(i) for i in out if isinstance(i, Kill)] == [Kill]
    (nxt,) = launches(eng.exited(la.run_id, -15, 3.0))
    assert nxt.job == "next" and nxt.allocation.parts[0].gpus == ("0",)
    assert eng.jobs["all"].state is CANCEL
    # a queued GPU job cancelled holds nothing
    eng.submit([spec("q", gpus=2)], 4.0)
    eng.cancel("q", 5.0)
    check_pool(eng.pool, [nxt.allocation])
    assert eng.pool.free_gpus == 1


def test_multi_node_gpu_job_has_ids_per_node() -> None:
    eng = gpu_engine("n1:2,n2:2,n3:2", n1="0,1", n2="0,1", n3="5,7")
    (first,) = launches(eng.submit([spec("one", gpus=1, numNodes=1)], 0.0))
    (la,) = launches(eng.submit([spec("mn", gpus=2, numNodes=2, numCores=1)], 0.0))
    assert [(p.node, p.gpus) for p in la.allocation.parts] == [
        ("n2", ("0", "1")),
        ("n3", ("5", "7")),
    ]
    assert first.allocation.parts[0].gpus == ("0",)
    check_pool(eng.pool, [first.allocation, la.allocation])


def test_cpu_jobs_leave_the_cores_of_gpu_nodes_while_others_have_room() -> None:
    # n1 has the GPUs; CPU jobs go to n2 first, so the GPU jobs find n1's cores free
    eng = gpu_engine("n1:2,n2:4", n1="0,1")
    out = launches(eng.submit(specs(*({"name": f"c{i}"} for i in range(4))), 0.0))
    assert {la.allocation.nodes[0] for la in out} == {"n2"}
    gpu = launches(eng.submit(specs({"name": "g0", "gpus": 1}, {"name": "g1", "gpus": 1}), 0.0))
    assert [la.allocation.nodes for la in gpu] == [["n1"], ["n1"]]
    # n2 full: a CPU job may then take a GPU node's core
    eng2 = gpu_engine("n1:2,n2:1", n1="0")
    out2 = launches(eng2.submit(specs({"name": "a"}, {"name": "b"}), 0.0))
    assert [la.allocation.nodes for la in out2] == [["n2"], ["n1"]]
    # whole nodes too: the node without GPUs first
    eng3 = gpu_engine("n1:2,n2:2", n1="0")
    (w,) = launches(eng3.submit([spec("w", numNodes=1)], 0.0))
    assert w.allocation.nodes == ["n2"]


def test_iteration_scheduler_and_ranges_with_gpus() -> None:
    """split-into over the cores, one GPU per iteration: two at a time on two GPUs."""
    eng = gpu_engine("n1:8", n1="0,1")
    s = spec(
        "it",
        gpus=1,
        iteration=4,
        numCores={"min": 1, "scheduler": {"name": "split-into"}},
    )
    out = launches(eng.submit([s], 0.0))
    assert len(out) == 2
    assert sorted(g for la in out for g in la.allocation.parts[0].gpus) == ["0", "1"]
    assert [la.allocation.cores for la in out] == [2, 2]  # 8 cores split into 4
    nxt = launches(eng.exited(out[0].run_id, 0, 1.0))
    assert [la.allocation.parts[0].gpus for la in nxt] == [out[0].allocation.parts[0].gpus]
    # min/max cores with a GPU: as many cores as free up to max, and its GPU
    eng2 = gpu_engine("n1:3", n1="0")
    (la,) = launches(eng2.submit([spec("r", gpus=1, numCores={"min": 2, "max": 8})], 0.0))
    assert la.allocation.cores == 3 and la.allocation.parts[0].gpus == ("0",)


def test_gpu_ids_declared_and_checked() -> None:
    assert parse_nodes_gpus("n1:4:gpu=0+1,n2:4,n3:2:gpus=3") == (
        [("n1", 4), ("n2", 4), ("n3", 2)],
        {"n1": ("0", "1"), "n3": ("0", "1", "2")},
    )
    assert parse_nodes_gpus("4:gpu=GPU-1f2e+GPU-9a") == (
        [("n0", 4)],
        {"n0": ("GPU-1f2e", "GPU-9a")},
    )
    assert parse_nodes("n1:4:gpu=3") == [("n1", 4)]
    for bad in ("n1:4:gpu=", "n1:4:gpus=x", "n1:4:gpu=0+0", "n1:gpu=0"):
        with pytest.raises(JobDescriptionError, match="nodes"):
            parse_nodes_gpus(bad)
    with pytest.raises(JobDescriptionError, match="no such node: n9"):
        ResourcePool([("n1", 2)], gpus={"n9": ["0"]})
    with pytest.raises(JobDescriptionError, match="2 ids .* gpu count of 3"):
        ResourcePool([("n1", 2)], crs={"n1": {"gpu": 3}}, gpus={"n1": ["0", "1"]})
    # a count alone names ids 0..N-1
    p = ResourcePool([("n1", 2)], crs={"n1": {"gpu": 2}})
    assert p.nodes[0].gpu_ids == ("0", "1") and p.gpu == GpuSetup() and p.total_gpus == 2
    assert ResourcePool([("n1", 2)]).gpu is None


def test_gpu_allocations_are_immutable_views() -> None:
    p = ResourcePool([("n1", 4)], gpus={"n1": ["0", "1"]})
    a = p.allocate(Requirement(1, 1, None, None, (("gpu", 1),)))
    assert isinstance(a, Allocation) and a.has_gpus and a.parts[0].gpus == ("0",)
    b = p.allocate(Requirement(1, 1, None, None, (("gpu", 1),)))
    assert b is not None and b.parts[0].gpus == ("1",)
    assert p.allocate(Requirement(1, 1, None, None, (("gpu", 1),))) is None
    p.release(a)
    c = p.allocate(Requirement(1, 1, None, None, (("gpu", 1),)))
    assert c is not None and c.parts[0].gpus == ("0",)
    cpu = p.allocate(Requirement())
    assert cpu is not None and not cpu.has_gpus


@settings(max_examples=200, deadline=None)
@given(
    cpu_nodes=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    gpu_nodes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    ops=st.lists(st.tuples(st.sampled_from(["cpu", "gpu", "release"]), st.integers(0, 99))),
)
def test_cpu_jobs_never_take_a_gpu_node_while_another_has_room(
    cpu_nodes: list[int], gpu_nodes: list[int], ops: list[tuple[str, int]]
) -> None:
    """The placement rule, for one-core jobs on random pools: a CPU-only job lands on a
    GPU node only when no node without GPUs has a free core."""
    sizes = [("g", c) for c in gpu_nodes] + [("c", c) for c in cpu_nodes]
    names = [(f"{kind}{i}", c) for i, (kind, c) in enumerate(sizes)]  # GPU nodes first by index
    p = ResourcePool(names, gpus={n: ["0"] for n, _ in names if n.startswith("g")})
    held: list[Allocation] = []
    gpu_req = Requirement(1, 1, None, None, (("gpu", 1),))
    for kind, k in ops:
        if kind == "release":
            if held:
                p.release(held.pop(k % len(held)))
            continue
        room_elsewhere = any(n.free for n in p.nodes if not n.gpu_ids)
        a = p.allocate(Requirement() if kind == "cpu" else gpu_req)
        if a is None:
            continue
        held.append(a)
        node = p.nodes[a.parts[0].index]
        if kind == "cpu" and node.gpu_ids:
            assert not room_elsewhere, f"CPU job on {node.name} while a CPU node had room"
        if kind == "gpu":
            assert node.gpu_ids and len(a.parts[0].gpus) == 1
        check_pool(p, held)
