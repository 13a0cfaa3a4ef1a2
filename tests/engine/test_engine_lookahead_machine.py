"""The engine's state machine (``test_engine_machine``) with launches ahead of free cores,
against fake fork servers, one per node (as launch agents), that queue them, hand
the cores of each end to the runs queued on its node, drop the cancelled ones and
start the promoted ones, as the real ones.

After every step, on top of the base invariants: the queued runs hold no cores,
no core is given twice, and the engine's count of queued runs is the server's.
At the end, once everything has exited, nothing is left queued.
"""

from __future__ import annotations

from typing import Any

from engine_helpers import check_pool, pool
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule
from test_engine_machine import EngineMachine

from qcgpj_async.engine import Engine, Kill, Launch, StateChanged

POOLS = [
    ("2", False),
    ("3", False),
    ("3", True),
    ("1", False),
    ("n1:2,n2:1", False),
    ("n1:1,n2:2,n3:1", True),
]


class LookaheadMachine(EngineMachine):
    """Random events, with the lookahead on and a faithful fake fork server."""

    @initialize(which=st.integers(0, len(POOLS) - 1), lookahead=st.integers(1, 6))
    def make(self, which: int, lookahead: int) -> None:  # type: ignore[override]
        nodes, system = POOLS[which]
        self.pool = pool(nodes, system_core=system)
        self.eng = Engine(self.pool)
        self.eng.lookahead = lookahead
        self.has_gpu = False
        self.queues: dict[str, list[int]] = {}  # each node's queue of queued starts
        self.slots: dict[int, int] = {}  # pending or running run -> cores its end hands on
        self.dropped: list[int] = []  # taken out of the queue, answer not delivered yet
        self.pipe: list[tuple[str, Any]] = []  # requests sent, not received yet

    @property
    def queued(self) -> set[int]:
        return {rid for queue in self.queues.values() for rid in queue}

    def feed(self, out: list[Any]) -> None:
        """The pilot's side: launches and kills become requests in the pipe to the server
        (delivered by the ``deliver`` rule, in order)."""
        for i in out:
            if isinstance(i, Launch) and i.promote:
                assert not i.queued
                self.pipe.append(("now", i))
            elif isinstance(i, Launch):
                assert i.run_id not in self.pending and i.run_id not in self.running
                assert i.run_id not in self.queued
                if i.queued:
                    assert i.allocation.cores == 1
                self.pipe.append(("queue" if i.queued else "start", i))
                self.check_launch(i)
            elif isinstance(i, Kill):
                self.pipe.append(("drop", i))
            else:
                assert isinstance(i, StateChanged) and i.time == self.now

    def receive(self, kind: str, i: Any) -> None:
        """The server's side of one request."""
        rid = i.run_id
        if kind == "start":
            self.pending[rid] = i
            # a run on several nodes is not the agents' (an srun step): nobody follows it
            self.slots[rid] = i.allocation.cores if len(i.allocation.parts) == 1 else 0
        elif kind == "queue":
            self.queues.setdefault(i.allocation.nodes[0], []).append(rid)
        elif rid in self.queued:  # "now" starts it, "drop" takes it out
            for queue in self.queues.values():
                if rid in queue:
                    queue.remove(rid)
            if kind == "now":
                self.pending[rid] = i
                self.slots[rid] = 1
            else:
                self.dropped.append(rid)

    @precondition(lambda self: self.pipe)
    @rule(n=st.integers(1, 4))
    def deliver(self, n: int) -> None:
        for kind, i in self.pipe[:n]:
            self.receive(kind, i)
        del self.pipe[:n]

    def end(self, rid: int, code: int) -> None:
        """The server's end of ``rid``: the first queued runs take its cores."""
        self.pending.pop(rid, None) or self.running.pop(rid)
        cores = self.slots.pop(rid)
        queue = self.queues.setdefault(self.eng.runs[rid].allocation.nodes[0], [])
        taken = queue[:cores]
        del queue[:cores]
        for t in taken:
            run = self.eng.runs[t]
            la = Launch(t, run.job.name, run.index, run.job.spec, run.allocation, True)
            self.pending[t] = la
            self.slots[t] = 1
        self.feed(self.eng.exited(rid, code, self.now, None, taken))

    @precondition(lambda self: self.dropped)
    @rule()
    def answer_drop(self) -> None:
        rid = self.dropped.pop(0)
        self.feed(self.eng.exited(rid, -1, self.now, "stopped before it started"))

    @invariant()
    def resources(self) -> None:
        if not hasattr(self, "eng"):
            return
        eng = self.eng
        sent = {i.run_id for kind, i in self.pipe if kind in ("start", "queue")}
        assert set(eng.runs) == (
            set(self.pending) | set(self.running) | self.queued | set(self.dropped) | sent
        )
        for rid in (*self.pending, *self.running):  # what runs holds cores
            assert not eng.runs[rid].queued
        assert eng.queued == sum(r.queued for r in eng.runs.values())
        check_pool(self.pool, [r.allocation for r in eng.runs.values() if not r.queued])

    def teardown(self) -> None:
        if not hasattr(self, "eng"):
            return
        for _ in range(10_000):
            if self.pipe:
                self.deliver(len(self.pipe))
            elif self.dropped:
                self.answer_drop()
            elif self.pending or self.running:
                rid = min({**self.pending, **self.running})
                if rid in self.pending:
                    self.running[rid] = self.pending.pop(rid)
                    self.feed(self.eng.started(rid, self.now))
                self.end(rid, 0)
            else:
                break
        assert not self.queued and not self.pending and not self.running
        assert self.eng.queued == 0
        self.check_all_ended()


TestLookaheadMachine = LookaheadMachine.TestCase
TestLookaheadMachine.settings = settings(
    max_examples=800,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
