"""Compact records of ended jobs: the same values read back, less memory kept per job."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import attrs
from engine_helpers import CANCEL, FAIL, OK, Driver, E, Q, S, engine, spec
from test_engine_restore import restore

from qcgpj_async import JobSpec
from qcgpj_async.engine import Job, Outcome, Run, RunTable
from qcgpj_async.engine._records import ENTRY, pack_history, unpack_history
from qcgpj_async.model import jobs_from_std


def seen(run: Run) -> dict[str, Any]:
    """Everything a reader can see of a run."""
    return {
        "id": run.id,
        "job": run.job.name,
        "index": run.index,
        "allocation": str(run.allocation),
        "state": run.state,
        "history": run.history,
        "pid": run.pid,
        "exit_code": run.exit_code,
        "message": run.message,
        "started": run.started,
        "finished": run.finished,
        "rtime": run.rtime,
        "kill_reason": run.kill_reason,
    }


def test_history_pack_round_trip() -> None:
    entries = [(Q, 0.0), (S, 1e-6), (E, 1234567890.123456), (FAIL, float("inf"))]
    packed = pack_history(entries)
    assert len(packed) == 4 * ENTRY.size == 36
    assert unpack_history(packed) == entries
    assert unpack_history(b"") == []


def test_ended_plain_job_keeps_packed_history_and_one_run() -> None:
    d = Driver(engine("1"))
    d.submit(spec("a"))
    job = d.eng.jobs["a"]
    assert type(job.packed_history) is bytearray and job.history == [(Q, 0.0), (S, 0.0)]
    rid = d.run_of("a")
    d.tick()
    d.eng.started(rid, d.now, pid=4242)
    d.running[rid] = d.pending.pop(rid)
    d.tick()
    d.exit(rid, 3)
    assert job.history == [(Q, 0.0), (S, 0.0), (E, 1.0), (FAIL, 2.0)]
    # Bytes, no list of tuples: nothing of it for the cyclic GC to walk.
    assert type(job.packed_history) is bytes and not gc.is_tracked(job.packed_history)
    run = job.runs[None]
    assert type(job.run_store) is Run and job.runs == {None: run}
    assert job.run_at(None) is run and job.run_at(0) is None
    assert run.history == job.history and run.packed_history is None
    assert (run.pid, run.exit_code, run.message, run.rtime) == (4242, 3, "exit code 3", 1.0)
    assert job.messages == ["exit code 3"]
    assert job.run_messages() == [(None, "exit code 3")]


def test_failure_messages_are_shared() -> None:
    d = Driver(engine("2"))
    d.submit(spec("a"), spec("b"))
    d.drain(code=7)
    a, b = d.eng.jobs["a"], d.eng.jobs["b"]
    assert a.messages == b.messages == ["exit code 7"]
    assert a.messages is not None and b.messages is not None
    assert a.messages[0] is b.messages[0]


def test_ended_jobs_share_equal_executions_and_resources() -> None:
    raw = {"execution": {"exec": "/bin/true", "args": ["x"]}, "resources": {"numCores": 1}}
    a, b, c = jobs_from_std(
        [
            {"name": "a", **raw},
            {"name": "b", **raw},
            {"name": "c", "execution": {"exec": "/bin/false"}},
        ]
    )
    originals = {s.name: s for s in (a, b, c)}
    assert a.execution is not b.execution and a.execution == b.execution
    d = Driver(engine("1"))
    d.submit(a, b, c)
    assert d.launches[0].spec is a  # what was launched is what was submitted
    d.drain()
    jobs = d.eng.jobs
    for name, s in originals.items():
        assert jobs[name].spec == s  # equal: nothing a reader can tell apart
    assert jobs["b"].spec.execution is jobs["a"].spec.execution
    assert jobs["b"].spec.resources is jobs["a"].spec.resources
    assert jobs["c"].spec is c  # nothing to share
    assert [la.spec for la in d.launches] == [a, b, c]


def test_spec_fields_are_the_ones_sharing_copies() -> None:
    assert [f.name for f in attrs.fields(JobSpec)] == [
        "name",
        "execution",
        "resources",
        "iteration",
        "dependencies",
        "attributes",
    ]


def iteration_job_with_every_kind_of_run(
    d: Driver, n: int = 24
) -> tuple[Job, dict[int | None, Run]]:
    """``it`` of ``n`` iterations on 4 cores: successes, failures, a launch error,
    a cancel while running, a wall time; returns the job and its live runs."""
    d.submit(spec("it", iteration=n, wt="10s"))
    job = d.eng.jobs["it"]
    live = job.run_store
    assert type(live) is dict
    pid = 1000
    while d.pending or d.running:
        d.tick()
        for rid in list(d.pending):
            la = d.pending[rid]
            if la.iteration == 5:  # could not start
                d.exit(rid, -1, "executable not found")
                continue
            d.running[rid] = d.pending.pop(rid)
            pid += 1
            d.feed(d.eng.started(rid, d.now, pid))
        for rid in list(d.running):
            la = d.running[rid]
            if la.iteration == 7 and not d.kills:
                d.cancel("it:7")
                d.exit(rid, -15)
            elif la.iteration == 9:
                d.feed(d.eng.tick(d.now + 11))
                d.exit(rid, -15)
            else:
                d.exit(rid, 2 if la.iteration % 4 == 1 else 0)
    return job, live


def test_ended_iteration_job_keeps_its_runs_in_columns() -> None:
    d = Driver(engine("4"))
    job, live = iteration_job_with_every_kind_of_run(d)
    assert job.state is FAIL
    table = job.run_store
    assert isinstance(table, RunTable) and job.runs is table
    assert len(table) == len(live) == 24
    assert list(table) == list(live)
    assert [seen(r) for r in table.values()] == [seen(r) for r in live.values()]
    assert [seen(table[i]) for i in range(24)] == [seen(live[i]) for i in range(24)]
    r5, r7, r9 = table[5], table[7], table[9]
    assert (r5.pid, r5.started, r5.rtime, r5.message) == (None, None, None, "executable not found")
    assert (r7.state, r7.kill_reason) == (CANCEL, "cancel")
    assert (r9.state, r9.kill_reason) == (FAIL, "walltime")
    assert r9.message is not None and "wall time exceeded" in r9.message
    assert 3 in table and 24 not in table and None not in table and "3" not in table
    assert table.get(24) is None and table.get(None) is None and job.run_at(3) is not None
    assert r7.job is job and table[0].history == live[0].history
    assert [(i, seen(r)) for i, r in table.items()] == [(i, seen(r)) for i, r in live.items()]
    said = [(r.index, r.message) for r in live.values() if r.message]
    assert len(said) > 3 and job.run_messages() == said  # no Run made to find them


def test_few_runs_stay_in_a_dict() -> None:
    d = Driver(engine("4"))
    d.submit(spec("it", iteration=RunTable.MIN_RUNS - 1))
    d.drain()
    job = d.eng.jobs["it"]
    assert job.state is OK and type(job.run_store) is dict
    assert all(type(r.packed_history) is bytes for r in job.runs.values())
    assert job.run_messages() == []


def test_values_the_columns_cannot_hold_keep_the_dict() -> None:
    d = Driver(engine("4"))
    d.submit(spec("it", iteration=RunTable.MIN_RUNS))
    rid = d.run_of("it", 0)
    d.start(rid)
    d.exit(rid, 2**70)  # no exit code is that big, but the engine takes any int
    d.drain()
    job = d.eng.jobs["it"]
    assert job.state is FAIL and type(job.run_store) is dict
    assert job.runs[0].exit_code == 2**70


def test_runs_started_out_of_order_keep_their_order() -> None:
    d = Driver(engine("1"))
    n = 2 * RunTable.MIN_RUNS
    restore(
        d,
        [spec("it", iteration=n)],
        {
            "it": {
                i: Outcome(
                    OK if i % 3 else FAIL, float(i), 0 if i % 3 else 1, None if i % 3 else "boom"
                )
                for i in range(n // 2, n)
            }
        },
    )
    d.drain()
    job = d.eng.jobs["it"]
    assert isinstance(job.run_store, RunTable)
    order = [*range(n // 2, n), *range(n // 2)]
    assert list(job.runs) == order
    assert [r.index for r in job.runs.values()] == order
    assert job.runs[18].history == [(FAIL, 18.0)] and job.runs[17].history == [(OK, 17.0)]
    assert job.runs[18].message == "boom" and job.runs[18].pid is None
    assert job.run_messages() == [(i, "boom") for i in order if i >= n // 2 and i % 3 == 0]
    assert [i for i, _ in job.runs.items()] == order
    assert job.runs[0].history == [(Q, 100.0), (S, 100.0), (E, 100.0), (OK, 100.0)]


def test_restored_ended_iteration_job_is_compact() -> None:
    d = Driver(engine("1"))
    n = RunTable.MIN_RUNS
    outs: dict[int | None, Outcome] = {i: Outcome(OK, float(i), 0) for i in range(n)}
    outs[None] = Outcome(OK, 99.0)
    restore(d, [spec("it", iteration=n)], {"it": outs})
    job = d.eng.jobs["it"]
    assert job.state is OK and isinstance(job.run_store, RunTable)
    assert [(r.index, r.exit_code, r.finished) for r in job.runs.values()] == [
        (i, 0, float(i)) for i in range(n)
    ]
    assert job.history == [(OK, 99.0)] and type(job.packed_history) is bytes


def test_remove_frees_a_compact_iteration_job_at_once() -> None:
    d = Driver(engine("4"))
    job, live = iteration_job_with_every_kind_of_run(d)
    assert isinstance(job.run_store, RunTable)
    ref = weakref.ref(job)
    del live
    d.eng.remove("it")
    assert job.runs == {}
    del job
    assert ref() is None  # no cycle left through the table


def test_run_store_by_kind_and_its_helpers() -> None:
    d = Driver(engine("2"))
    d.submit(spec("p"), spec("it", iteration=3))
    plain, its = d.eng.jobs["p"], d.eng.jobs["it"]
    assert type(plain.run_store) is Run and plain.run_at(None) is plain.run_store
    assert type(its.run_store) is dict and list(its.runs) == [0]
    # Dropping a run that never took cores: the job reads as never launched.
    its.drop_run(0)
    assert its.runs == {} and its.run_at(0) is None
    its.drop_run(7)  # none: nothing happens
    plain.drop_run(None)
    assert plain.run_store is None and plain.runs == {} and plain.run_at(None) is None
    its.clear_runs()
    assert its.run_store is None and its.run_messages() == []


def test_iteration_scheduler_peek_is_a_typed_field() -> None:
    d = Driver(engine("4"))
    sched = {"min": 2, "scheduler": {"name": "maximum-iters"}}
    d.submit(spec("x"), spec("a", iteration=3, numCores=sched))
    job = d.eng.jobs["a"]
    # 3 iterations of at least 2 on 4 cores: two rounds, 2 + 2 then 4. What the next
    # iteration gets is taken from the scheduler ahead, and kept while it does not fit.
    assert [la.allocation.cores for la in d.launches] == [1, 2]
    assert job.req is None and job.peek == 2 and not hasattr(job, "attrs_extra")
    d.finish("x")
    assert [la.allocation.cores for la in d.launches] == [1, 2, 2] and job.peek is None
    d.finish("a", 0)
    assert job.peek == 4  # 2 cores free: it waits
    d.finish("a", 1)
    assert [la.allocation.cores for la in d.launches] == [1, 2, 2, 4] and job.peek is None
