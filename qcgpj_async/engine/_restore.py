"""Restoring jobs a previous run had partly done: :meth:`Engine.restore`. Pure.

A restored job that had ended is *registered* in its final state, not moved
there: it never was QUEUED in this engine, so the transition table (which
governs changes of state) does not apply, and its history holds only the
recorded end. Everything else is a plain submit: the jobs still to run are
QUEUED, wired to their dependencies (which see the restored states), and
scheduled. An iteration job keeps the outcomes of its ended iterations,
whatever their order, and goes on with the others only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..model import FINAL_STATES, JobSpec, JobState
from ._deps import propagate, wire
from ._lifecycle import register_ended, register_iteration, register_queued_iterations
from ._records import CODE, ENTRY, Job, Outcome, Run
from ._resources import Allocation
from ._submit import check_batch, register, resolve

if TYPE_CHECKING:
    from ._engine import Engine, Instruction

__all__ = ("restore",)

Q = JobState.QUEUED
OK, CANCEL, OMIT = JobState.SUCCEED, JobState.CANCELED, JobState.OMITTED
#: A restored run has no cores: it ended before this engine started.
_NOWHERE = Allocation(())


def check_outcomes(
    specs: Sequence[JobSpec], outcomes: Mapping[str, Mapping[int | None, Outcome]]
) -> None:
    """Raise ValueError for an outcome of an unknown job or iteration, or a non-final one."""
    by_name = {s.name: s for s in specs}
    problems = []
    for name, outs in outcomes.items():
        spec = by_name.get(name)
        if spec is None:
            problems.append(f"outcome of unknown job {name!r}")
            continue
        for index, out in outs.items():
            if out.state not in FINAL_STATES:
                problems.append(f"outcome of {name}:{index}: {out.state.value} is not final")
            if index is None:
                continue
            it = spec.iteration
            if it is None or not it.start <= index < it.stop:
                problems.append(f"outcome of {name}:{index}: no such iteration")
    if problems:
        raise ValueError("; ".join(problems))


def restore(
    eng: Engine,
    specs: Sequence[JobSpec],
    outcomes: Mapping[str, Mapping[int | None, Outcome]],
    now: float,
) -> list[Instruction]:
    """See :meth:`Engine.restore`."""
    check_outcomes(specs, outcomes)
    prepared = check_batch(eng, specs)
    jobs = [register(eng, spec, req, sched, now, emit=False) for spec, req, sched, _ in prepared]
    to_wire = []
    for job, (_, _, _, deps) in zip(jobs, prepared, strict=True):
        if _apply(eng, job, outcomes.get(job.name) or {}, now):
            continue
        to_wire.append((job, deps))
    # Every restored state is in place before anyone's dependencies are judged.
    for job, deps in to_wire:
        wire(eng, job, deps, now)
    propagate(eng, now)
    eng._schedule(now)
    return eng._drain()


def _apply(eng: Engine, job: Job, outs: Mapping[int | None, Outcome], now: float) -> bool:
    """Put the outcomes of ``job`` in place; True when the job itself has ended."""
    top = outs.get(None)
    if not job.iterative:
        if top is None:
            eng._emit(job.name, None, Q, now)
            return False
        if top.exit_code is not None:
            _run(eng, job, None, top)
        register_ended(eng, job, top)
        return True
    some = False
    for index in sorted(i for i in outs if i is not None):
        out = outs[index]
        register_iteration(job, index, out.state)
        some = True
        job.done += 1
        if out.state is not OK:
            job.failed += 1
        if out.exit_code is not None:
            _run(eng, job, index, out)
        eng._emit(job.name, index, out.state, out.time)
    if top is not None and (top.state in (CANCEL, OMIT) or job.done == job.total):
        # Iterations cancelled or omitted in bulk may have no outcome of their own.
        if some:
            n = register_queued_iterations(job, top.state)
            job.done += n
            job.failed += n
        elif top.state in (CANCEL, OMIT):
            job.done = job.failed = job.total
        register_ended(eng, job, top)
        return True
    if job.done == job.total:  # every iteration ended; the job's own end was not recorded
        last = max(o.time for o in outs.values())
        register_ended(eng, job, Outcome(OK if job.failed == 0 else JobState.FAILED, last))
        return True
    if job.sched is not None:
        # Share the resources among the iterations left, not all of them.
        _, sched = resolve(eng, job.spec, job.total - job.done)
        assert sched is not None
        job.sched, job.sched_nodes = sched
    eng._emit(job.name, None, Q, now)
    return False


def _run(eng: Engine, job: Job, index: int | None, out: Outcome) -> None:
    """The record of a run that ended before this engine started (for info and reports)."""
    eng._run_id += 1
    history = None if index is None else ENTRY.pack(CODE[out.state], out.time)
    run = Run(
        eng._run_id,
        job,
        index,
        _NOWHERE,
        out.state,
        history,
        exit_code=out.exit_code,
        message=out.message,
        finished=out.time,
    )
    job.add_run(run)
