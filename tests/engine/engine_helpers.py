"""Helpers of the engine tests: job specs, engines, and a fake executor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qcgpj_async import Jobs, JobSpec, JobState
from qcgpj_async.engine import (
    Allocation,
    Engine,
    Instruction,
    Kill,
    Launch,
    ResourcePool,
    StateChanged,
    parse_nodes,
)

Q, S, E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING
OK, FAIL, CANCEL, OMIT = JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED
FINAL = {OK, FAIL, CANCEL, OMIT}


def spec(name: str, **kw: Any) -> JobSpec:
    """One job in the simple format (``exec`` defaults to /bin/true)."""
    kw.setdefault("exec", "/bin/true")
    return Jobs().add(name=name, **kw).jobs()[0]


def specs(*jobs: Mapping[str, Any]) -> list[JobSpec]:
    """Several jobs in the simple format, each a dict with a ``name``."""
    b = Jobs()
    for j in jobs:
        b.add(**{"exec": "/bin/true", **j})
    return b.jobs()


def pool(
    nodes: str = "4",
    *,
    system_core: bool = False,
    crs: Mapping[str, Mapping[str, int]] | None = None,
) -> ResourcePool:
    return ResourcePool(parse_nodes(nodes), system_core=system_core, crs=crs)


def engine(nodes: str = "4", **kw: Any) -> Engine:
    return Engine(pool(nodes, **kw))


def check_pool(p: ResourcePool, allocations: Iterable[Allocation]) -> None:
    """No core given twice, every core either free or allocated, counts add up."""
    held: set[tuple[int, int]] = set()
    crs_used: dict[tuple[int, str], int] = {}
    for a in allocations:
        for part in a.parts:
            assert p.nodes[part.index].name == part.node
            for c in part.cores:
                assert (part.index, c) not in held, f"core {part.node}[{c}] allocated twice"
                held.add((part.index, c))
            for k, n in (part.crs or {}).items():
                crs_used[part.index, k] = crs_used.get((part.index, k), 0) + n
    free: set[tuple[int, int]] = set()
    for node in p.nodes:
        assert len(set(node.free)) == len(node.free), f"duplicate free core on {node.name}"
        free.update((node.index, c) for c in node.free)
        for k, total in node.crs_total.items():
            assert node.crs_free[k] + crs_used.get((node.index, k), 0) == total
            assert node.crs_free[k] >= 0
        if node.free:
            assert node.in_heap, f"{node.name} has free cores but is not in the heap"
    assert not held & free, f"cores both free and allocated: {sorted(held & free)}"
    # GPU devices: none held twice, every one either free or held
    gpus_held: list[tuple[int, str]] = [
        (part.index, g) for a in allocations for part in a.parts for g in part.gpus
    ]
    assert len(gpus_held) == len(set(gpus_held)), f"a GPU held twice: {sorted(gpus_held)}"
    for node in p.nodes:
        mine = {g for i, g in gpus_held if i == node.index}
        free_ids = {node.gpu_ids[g] for g in node.gpu_free}
        assert len(free_ids) == len(node.gpu_free), f"a free GPU twice on {node.name}"
        assert not mine & free_ids, f"GPUs both free and held on {node.name}"
        assert mine | free_ids == set(node.gpu_ids)
        if node.gpu_ids:
            assert node.crs_free["gpu"] == len(node.gpu_free)
    reserved = {(0, 0)} if p.system_core else set()
    every = {(n.index, c) for n in p.nodes for c in range(n.total)} - reserved
    assert held | free == every
    assert p.free_cores == len(free)
    assert p.used_cores == len(held)
    assert p.free_cores + p.used_cores == p.total_cores


class Driver:
    """A fake executor: remembers launches, starts and ends them on request."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.now = 0.0
        self.pending: dict[int, Launch] = {}  # launched, not started
        self.running: dict[int, Launch] = {}  # started, not exited
        self.kills: list[Kill] = []
        self.changes: list[StateChanged] = []
        self.launches: list[Launch] = []

    def feed(self, out: list[Instruction]) -> list[Instruction]:
        for i in out:
            if isinstance(i, Launch):
                assert i.run_id not in self.pending and i.run_id not in self.running
                self.pending[i.run_id] = i
                self.launches.append(i)
            elif isinstance(i, Kill):
                assert i.run_id in self.pending or i.run_id in self.running
                self.kills.append(i)
            else:
                assert isinstance(i, StateChanged)
                assert i.time == self.now
                self.changes.append(i)
        return out

    def tick(self, dt: float = 1.0) -> float:
        self.now += dt
        return self.now

    def submit(self, *jobs: JobSpec | Iterable[JobSpec]) -> list[Instruction]:
        flat: list[JobSpec] = []
        for j in jobs:
            flat.extend([j] if isinstance(j, JobSpec) else j)
        return self.feed(self.eng.submit(flat, self.now))

    def start(self, run_id: int) -> list[Instruction]:
        self.running[run_id] = self.pending.pop(run_id)
        return self.feed(self.eng.started(run_id, self.now))

    def exit(self, run_id: int, code: int = 0, message: str | None = None) -> list[Instruction]:
        self.pending.pop(run_id, None) or self.running.pop(run_id)
        return self.feed(self.eng.exited(run_id, code, self.now, message))

    def cancel(self, name: str) -> list[Instruction]:
        return self.feed(self.eng.cancel(name, self.now))

    def run_of(self, job: str, iteration: int | None = None) -> int:
        for rid, la in [*self.pending.items(), *self.running.items()]:
            if la.job == job and la.iteration == iteration:
                return rid
        raise AssertionError(f"{job}:{iteration} is not launched")

    def finish(self, job: str, iteration: int | None = None, code: int = 0) -> list[Instruction]:
        """Start (if needed) and end one launched run."""
        rid = self.run_of(job, iteration)
        if rid in self.pending:
            self.start(rid)
        return self.exit(rid, code)

    def drain(self, code: int | Mapping[str, int] = 0, limit: int = 1_000_000) -> None:
        """Start and end everything launched, and what that launches, until nothing is left."""
        for _ in range(limit):
            if not self.pending and not self.running:
                return
            rid, la = next(iter({**self.running, **self.pending}.items()))
            if rid in self.pending:
                self.start(rid)
            c = code if isinstance(code, int) else code.get(la.job, 0)
            self.exit(rid, c)
        raise AssertionError("drain did not end")

    def allocations(self) -> list[Allocation]:
        return [la.allocation for la in (*self.pending.values(), *self.running.values())]

    def launched(self) -> list[tuple[str, int | None]]:
        return [(la.job, la.iteration) for la in self.launches]

    def state(self, name: str) -> JobState:
        job, index = self.eng.lookup(name)
        return job.state if index is None else self.eng.iteration_state(job, index)
