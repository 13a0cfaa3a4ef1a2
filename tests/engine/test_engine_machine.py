"""Hypothesis state machines: the engine's invariants under random events.

The engine is driven by a fake executor: every Launch can be started, every
started or launched run can exit with a chosen code; jobs are submitted,
cancelled (whole or one iteration), removed, and time ticks past wall times.
After every step: no core is allocated twice, free + used = total, the
counters agree with the states, no job ran before its dependencies
succeeded, and dependants of a failed job are OMITTED. At the end,
once everything exits, every job is in a final state.
"""

from __future__ import annotations

from typing import Any

from engine_helpers import CANCEL, FAIL, FINAL, OK, OMIT, check_pool, pool, spec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from qcgpj_async import InvalidTransition, JobDescriptionError, JobState
from qcgpj_async.engine import (
    Engine,
    Job,
    Kill,
    Launch,
    Requirement,
    ResourcePool,
    StateChanged,
)

POOLS = [
    ("2", None, False),
    ("1,2", None, True),
    ("n1:2,n2:2", {"n1": {"gpu": 2}}, False),
    ("3,1", None, False),
    ("1", None, False),
]

counts = st.one_of(
    st.integers(1, 3),
    st.builds(lambda a: {"min": a}, st.integers(1, 3)),
    st.builds(lambda b: {"max": b}, st.integers(1, 4)),
    st.builds(lambda a, d: {"min": a, "max": a + d}, st.integers(1, 2), st.integers(0, 2)),
)


class EngineMachine(RuleBasedStateMachine):
    """Random submits, starts, exits, cancels, removes and ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pending: dict[int, Launch] = {}
        self.running: dict[int, Launch] = {}
        self.deps: list[tuple[Job, Job, int | None, bool]] = []  # (job, target, index, paired)
        self.names = 0
        self.removed: list[str] = []  # names free to be used again

    @initialize(which=st.integers(0, len(POOLS) - 1))
    def make(self, which: int) -> None:
        nodes, crs, system = POOLS[which]
        self.pool: ResourcePool = pool(nodes, system_core=system, crs=crs)
        self.eng = Engine(self.pool)
        self.has_gpu = crs is not None

    # -- feeding the fake executor -------------------------------------------------

    def feed(self, out: list[Any]) -> None:
        for i in out:
            if isinstance(i, Launch):
                assert i.run_id not in self.pending and i.run_id not in self.running
                self.pending[i.run_id] = i
                self.check_launch(i)
            elif isinstance(i, Kill):
                assert i.run_id in self.pending or i.run_id in self.running
            else:
                assert isinstance(i, StateChanged) and i.time == self.now

    def check_launch(self, la: Launch) -> None:
        job = self.eng.jobs[la.job]
        assert job.state not in FINAL and not job.canceled
        for j, target, index, paired in self.deps:
            if j is not job:
                continue
            if paired:
                assert self.it_state(target, la.iteration) is OK  # type: ignore[arg-type]
            elif index is None:
                assert target.state is OK
            else:
                assert self.it_state(target, index) is OK
        req = job.req
        if req is not None and req.nodes_lo is None:
            assert req.cores_lo <= la.allocation.cores <= req.cores_hi
        if req is not None and req.nodes_lo is not None:
            assert req.nodes_lo <= len(la.allocation.parts) <= (req.nodes_hi or req.nodes_lo)

    def it_state(self, job: Job, index: int) -> JobState:
        return self.eng.iteration_state(job, index) if job.iterative else job.state

    # -- rules --------------------------------------------------------------------------

    @rule(data=st.data(), n=st.integers(1, 3))
    def submit(self, data: st.DataObject, n: int) -> None:
        batch: list[dict[str, Any]] = []
        known = {
            name: (j.iteration and len(j.iteration))
            for name, j in ((name, job.spec) for name, job in self.eng.jobs.items())
        }
        for _ in range(n):
            self.names += 1
            name = f"j{self.names}"
            if self.removed and data.draw(st.booleans(), label="reuse a removed name"):
                name = self.removed.pop()
            kw: dict[str, Any] = {"name": name}
            its = data.draw(st.sampled_from([None, None, 1, 2, 4]), label="iterations")
            if its:
                kw["iteration"] = its
            shape = data.draw(
                st.sampled_from(["cores", "cores", "nodes", "both", "gpu", "sched", "one"])
            )
            if shape == "cores":
                kw["numCores"] = data.draw(counts)
            elif shape == "nodes":
                kw["numNodes"] = data.draw(st.sampled_from([1, 2, {"min": 1, "max": 2}]))
            elif shape == "both":
                kw["numNodes"] = data.draw(st.sampled_from([1, {"min": 1, "max": 2}]))
                kw["numCores"] = data.draw(st.sampled_from([1, {"min": 1, "max": 2}]))
            elif shape == "gpu" and self.has_gpu:
                kw["nodeCrs"] = {"gpu": data.draw(st.integers(1, 2))}
            elif shape == "sched" and its:
                kw["numCores"] = {
                    "scheduler": {
                        "name": data.draw(st.sampled_from(["maximum-iters", "split-into"]))
                    }
                }
            if data.draw(st.booleans(), label="wt"):
                kw["wt"] = data.draw(st.sampled_from(["2s", "5s"]))
            after = []
            for name in data.draw(
                st.lists(st.sampled_from(sorted(known)), max_size=2) if known else st.just([])
            ):
                target_its = known[name]
                kind = data.draw(st.sampled_from(["job", "it", "paired"]))
                if kind == "it" and target_its:
                    after.append(f"{name}:{data.draw(st.integers(0, target_its - 1))}")
                elif kind == "paired" and target_its and its and its <= target_its:
                    after.append(f"{name}:${{it}}")
                else:
                    after.append(name)
            if after:
                kw["after"] = after
            batch.append(kw)
            known[kw["name"]] = its
        specs = [spec(**kw) for kw in batch]
        before = (dict(self.eng.jobs), dict(self.eng.job_counts), self.pool.free_cores)
        try:
            out = self.eng.submit(specs, self.now)
        except JobDescriptionError as e:
            assert e.problems
            self.removed.extend(kw["name"] for kw in batch if kw["name"] not in self.eng.jobs)
            assert (dict(self.eng.jobs), dict(self.eng.job_counts), self.pool.free_cores) == before
            return
        for s in specs:
            job = self.eng.jobs[s.name]
            for dep in s.dependencies.after if s.dependencies else ():
                name, _, suffix = dep.partition(":")
                self.deps.append(
                    (
                        job,
                        self.eng.jobs[name],
                        int(suffix) if suffix.isdigit() else None,
                        suffix == "${it}",
                    )
                )
        self.feed(out)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.pending)))
        self.running[rid] = self.pending.pop(rid)
        self.feed(self.eng.started(rid, self.now))

    @precondition(lambda self: self.pending or self.running)
    @rule(data=st.data(), code=st.sampled_from([0, 0, 0, 1, -9]))
    def exit(self, data: st.DataObject, code: int) -> None:
        self.end(data.draw(st.sampled_from(sorted({**self.pending, **self.running}))), code)

    def end(self, rid: int, code: int) -> None:
        """The fake executor: run ``rid`` ended (or failed to start) with ``code``."""
        self.pending.pop(rid, None) or self.running.pop(rid)
        self.feed(self.eng.exited(rid, code, self.now))

    @precondition(lambda self: self.eng.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(self.eng.jobs.values(), key=lambda j: j.seq)))
        name = job.name
        if job.iterative and data.draw(st.booleans()):
            name = f"{name}:{data.draw(st.integers(job.start, job.stop - 1))}"
        try:
            self.feed(self.eng.cancel(name, self.now))
        except InvalidTransition:
            j, index = self.eng.lookup(name)
            state = j.state if index is None else self.eng.iteration_state(j, index)
            assert state in FINAL or (index is None and j.canceled)

    @precondition(lambda self: self.eng.jobs)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(self.eng.jobs.values(), key=lambda j: j.seq)))
        try:
            self.eng.remove(job.name)
        except InvalidTransition:
            assert job.state not in FINAL
        else:
            assert job.state in FINAL and job.name not in self.eng.jobs
            self.removed.append(job.name)

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 6.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.feed(self.eng.tick(self.now))
        deadline = self.eng.next_deadline()
        assert deadline is None or deadline > self.now

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def resources(self) -> None:
        if not hasattr(self, "eng"):
            return
        assert set(self.eng.runs) == set(self.pending) | set(self.running)
        check_pool(self.pool, [r.allocation for r in self.eng.runs.values()])

    @invariant()
    def counters(self) -> None:
        if not hasattr(self, "eng"):
            return
        eng = self.eng
        by_state = dict.fromkeys(JobState, 0)
        done = failed = 0
        active: dict[str, int] = {}
        for r in eng.runs.values():
            if r.state not in FINAL:  # (with a lookahead: cancelled while queued, settling)
                active[r.job.name] = active.get(r.job.name, 0) + 1
        for job in eng.jobs.values():
            by_state[job.state] += 1
            assert job.active == active.get(job.name, 0)
            done += job.done
            failed += job.failed
            if not job.iterative:
                assert job.done == (job.state in FINAL)
                assert job.failed == (job.state in FINAL - {OK})
            if job.state in FINAL:
                assert job.done == job.total and job.active == 0
            assert job.history[-1][0] is job.state
        assert by_state == eng.job_counts
        assert eng.unfinished == sum(by_state[s] for s in JobState if s not in FINAL)
        its = eng.iteration_counts()
        assert done == sum(its[s] for s in FINAL)
        assert failed == its[FAIL] + its[CANCEL] + its[OMIT]
        assert sum(its.values()) == sum(j.total for j in eng.jobs.values())

    @invariant()
    def dependants_of_failures_omitted(self) -> None:
        for job, target, index, paired in self.deps:
            if paired:
                for i in range(job.start, job.stop):
                    st_ = self.it_state(target, i)
                    if st_ in FINAL and st_ is not OK:
                        assert self.eng.iteration_state(job, i) in (OMIT, CANCEL), (job.name, i)
                continue
            st_ = target.state if index is None else self.it_state(target, index)
            if st_ in FINAL and st_ is not OK:
                # It never ran; it is OMITTED unless it ended before, cancelled
                # (or, for an iteration job, with every iteration cancelled or omitted).
                assert job.runs == {}
                allowed = {OMIT, CANCEL} | ({FAIL} if job.iterative else set())
                if job.messages and job.messages[0].startswith("Not enough resources"):
                    allowed.add(FAIL)  # it could never fit: it failed at its submit
                assert job.state in allowed, (job.name, job.state, target.name, index, st_)

    def teardown(self) -> None:
        if not hasattr(self, "eng"):
            return
        # everything exits: then every job is final
        for _ in range(10_000):
            if not self.pending and not self.running:
                break
            rid = min({**self.pending, **self.running})
            if rid in self.pending:
                self.running[rid] = self.pending.pop(rid)
                self.feed(self.eng.started(rid, self.now))
            self.running.pop(rid)
            self.feed(self.eng.exited(rid, 0, self.now))
        assert not self.pending and not self.running
        self.check_all_ended()

    def check_all_ended(self) -> None:
        """Once everything has exited: every job final, every core free, the invariants."""
        assert self.eng.unfinished == 0, {
            n: j.state for n, j in self.eng.jobs.items() if j.state not in FINAL
        }
        assert self.pool.free_cores == self.pool.total_cores
        assert self.pool.free_gpus == self.pool.total_gpus  # every GPU device back
        self.resources()
        self.counters()
        self.dependants_of_failures_omitted()


TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class PoolMachine(RuleBasedStateMachine):
    """Allocate and release at random: cores never given twice, counts add up."""

    @initialize(which=st.integers(0, len(POOLS) - 1))
    def make(self, which: int) -> None:
        nodes, crs, system = POOLS[which]
        self.pool = pool(nodes, system_core=system, crs=crs)
        self.held: list[Any] = []

    @rule(
        lo=st.integers(0, 4),
        extra=st.integers(0, 3),
        nodes=st.sampled_from([None, 1, 2]),
        more_nodes=st.integers(0, 1),
        gpu=st.integers(0, 2),
    )
    def allocate(self, lo: int, extra: int, nodes: int | None, more_nodes: int, gpu: int) -> None:
        if nodes is None and lo == 0:
            lo = 1
        hi = 0 if lo == 0 else lo + extra
        crs = (("gpu", gpu),) if gpu and self.pool.consumables else ()
        req = Requirement(lo, hi, nodes, None if nodes is None else nodes + more_nodes, crs)
        fits = self.pool.fits(req)
        free = self.pool.free_cores
        a = self.pool.allocate(req)
        assert fits == (a is not None)
        if a is None:
            assert self.pool.free_cores == free
            return
        if nodes is None:
            assert lo <= a.cores <= hi
        else:
            assert nodes <= len(a.parts) <= nodes + more_nodes
            for p in a.parts:
                if lo == 0:
                    assert len(p.cores) == self.pool.nodes[p.index].total
                else:
                    assert lo <= len(p.cores) <= hi
        for p in a.parts:
            assert list(p.cores) == sorted(p.cores)
        assert self.pool.free_cores == free - a.cores
        self.held.append(a)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        a = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.pool.release(a)

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "pool"):
            check_pool(self.pool, self.held)


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
