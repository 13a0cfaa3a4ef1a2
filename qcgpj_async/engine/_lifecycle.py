"""The job lifecycle: the one table of allowed state changes, and the one module
that changes states.

Theory: a job (or one iteration of it) is QUEUED until the scheduler gives it
resources (SCHEDULED), EXECUTING once its process started, and ends in one of
four final states: SUCCEED (exit 0), FAILED (non-zero exit, launch error,
wall time exceeded), CANCELED (by the user) or OMITTED (a dependency did not
succeed, so it never runs). A queued job can also end FAILED when its
iterations were all omitted. Nothing leaves a final state.

Every state change of a job, a run or an iteration is made by a function of
this module, checked against :data:`ALLOWED` (an impossible change raises
:class:`InvalidTransition` instead of corrupting the registry):

* one job or run: :func:`job_state`, :func:`run_state` (and :func:`scheduled`,
  which moves an iteration job with its first run);
* one iteration without a run: :func:`end_iteration`;
* every queued iteration of a job at once: :func:`end_queued_iterations`
  (one byte rewritten per iteration, not an object);
* on restore (``Engine.restore``), a job or iteration that ended in a previous
  run is *registered* in its final state, from QUEUED, without the steps
  between: :func:`register_iteration`, :func:`register_queued_iterations`,
  :func:`register_ended`.

Storage: ``Job.state`` and ``Run.state`` hold a :class:`JobState`, an iteration
job's ``it_states`` one byte per iteration (:data:`~._records.CODE`), histories
packed bytes. Also here: the counters of ended iterations and the job's own end
once its iterations all ended (:func:`iteration_final`, :func:`maybe_job_final`);
what became final is queued on ``Engine._finished`` for the dependants (``_deps``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import FINAL_STATES, InvalidTransition, JobState
from ._compact import compact_ended, compact_runs
from ._records import CODE, ENTRY, STATES, Job, Outcome, Run

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = (
    "ALLOWED",
    "check",
    "codes",
    "end_iteration",
    "end_queued_iterations",
    "iteration_final",
    "job_state",
    "maybe_job_final",
    "register_ended",
    "register_iteration",
    "register_queued_iterations",
    "run_state",
    "scheduled",
)

Q, S, E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING
OK, FAIL, CANCEL, OMIT = JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED

ALLOWED: dict[JobState, frozenset[JobState]] = {
    Q: frozenset({S, OMIT, FAIL, CANCEL}),
    S: frozenset({E, FAIL, CANCEL}),
    E: frozenset({OK, FAIL, CANCEL}),
    OK: frozenset(),
    FAIL: frozenset(),
    CANCEL: frozenset(),
    OMIT: frozenset(),
}

_pack = ENTRY.pack
QCODE = CODE[Q]
#: For each final state, the byte table that turns QUEUED iterations into it (bulk ends).
_FROM_QUEUED = {s: bytes(CODE[s] if i == QCODE else i for i in range(256)) for s in FINAL_STATES}
#: How a QUEUED iteration without a run can end (not SUCCEED: it never ran).
_QUEUED_ENDS = ALLOWED[Q] & FINAL_STATES
#: Up to this many iterations, a bulk cancel or omit publishes one event per iteration.
EMIT_LIMIT = 100_000


def check(what: str, old: JobState, new: JobState) -> None:
    """Raise unless ``old -> new`` is allowed.

    Raises:
        InvalidTransition: naming ``what`` (the job or iteration) and both states.
    """
    if new not in ALLOWED[old]:
        raise InvalidTransition(f"{what}: {old.value} -> {new.value} is not allowed")


# == one job, one run (the launch and exit path: kept lean) ====================


def job_state(eng: Engine, job: Job, state: JobState, now: float) -> None:
    """``job`` goes to ``state`` at ``now``: history, counters, compaction once ended,
    and the :class:`StateChanged`.

    Raises:
        InvalidTransition: not allowed from the job's state.
    """
    old = job.state
    if state not in ALLOWED[old]:
        check(f"job {job.name!r}", old, state)
    job.state = state
    h = job.packed_history
    h += _pack(CODE[state], now)  # a bytearray while the job lives: in place
    if state in FINAL_STATES:
        # What an ended job keeps is compact: bytes, and its runs in columns
        # (compact_ended, written out: this is the exit path of every job).
        job.packed_history = bytes(h)
        if job.iterative:
            compact_runs(job)
        eng._shared.share(job)
    counts = eng.job_counts
    counts[old] -= 1
    counts[state] += 1
    eng._emit(job.name, None, state, now)


def run_state(eng: Engine, run: Run, state: JobState, now: float) -> None:
    """``run`` goes to ``state``: an iteration's run, with its iteration's byte; a
    plain job's run, with its job (whose history it shares).

    Raises:
        InvalidTransition: not allowed from the run's state.
    """
    old = run.state
    if state not in ALLOWED[old]:
        check(f"job {run.job.name!r} iteration {run.index}", old, state)
    run.state = state
    job = run.job
    if job.iterative:
        h = run.packed_history
        assert h is not None
        h += _pack(CODE[state], now)  # a bytearray while the run lives: in place
        if state in FINAL_STATES:
            run.packed_history = bytes(h)
        its, index = job.it_states, run.index
        assert its is not None and index is not None
        its[index - job.start] = CODE[state]
        eng._emit(job.name, index, state, now)
    else:
        job_state(eng, job, state, now)  # the job's history is its run's


def scheduled(eng: Engine, run: Run, now: float) -> None:
    """``run`` got its cores: SCHEDULED, and so is its iteration job at its first."""
    run_state(eng, run, S, now)
    job = run.job
    if job.iterative and job.state is Q:
        job_state(eng, job, S, now)


# == iterations without a run ==================================================


def codes(job: Job) -> bytearray:
    """The state byte of each iteration of ``job``, made (all QUEUED) at first use."""
    if job.it_states is None:
        job.it_states = bytearray(job.total)
    return job.it_states


def end_iteration(eng: Engine, job: Job, index: int, state: JobState, now: float) -> None:
    """Iteration ``index`` of ``job``, QUEUED and without a run, ends ``state`` now
    (CANCELED, OMITTED or FAILED): published, counted, its dependants told.

    Raises:
        InvalidTransition: the iteration is not QUEUED, or ``state`` is not one of those.
    """
    its = codes(job)
    i = index - job.start
    old = STATES[its[i]]
    if old is not Q or state not in _QUEUED_ENDS:
        raise InvalidTransition(
            f"job {job.name!r} iteration {index}: {old.value} -> {state.value} is not allowed"
        )
    its[i] = CODE[state]
    eng._emit(job.name, index, state, now)
    job.done += 1
    if state is not OK:
        job.failed += 1
    if job.paired_left is not None:
        job.paired_left.pop(index, None)
    eng._finished.append((job, (index,)))
    maybe_job_final(eng, job, now)


def end_queued_iterations(eng: Engine, job: Job, state: JobState, now: float) -> None:
    """Every still-queued iteration of ``job`` ends ``state`` (CANCELED or OMITTED) at once.

    One byte per iteration is rewritten; per-iteration events and
    notifications are only made when someone can see them (up to
    :data:`EMIT_LIMIT` iterations, or dependants waiting on iterations).

    Raises:
        InvalidTransition: ``state`` is not a final state a queued iteration may take.
    """
    if state not in _QUEUED_ENDS:
        raise InvalidTransition(
            f"job {job.name!r}: queued iterations: {Q.value} -> {state.value} is not allowed"
        )
    its = codes(job)
    n = its.count(QCODE)
    if n == 0:
        return
    name = job.name
    tell = bool(eng._it_waiters.get(name) or eng._paired_waiters.get(name))
    emit = len(its) <= EMIT_LIMIT
    queued = [job.start + i for i, c in enumerate(its) if c == QCODE] if tell or emit else []
    its[:] = its.translate(_FROM_QUEUED[state])
    job.done += n
    job.failed += n
    if job.paired_left is not None:
        job.paired_left.clear()
    if emit:
        for i in queued:
            eng._emit(name, i, state, now)
    if tell:
        eng._finished.append((job, queued))


# == ends: counters, and the job's own end =====================================


def iteration_final(eng: Engine, job: Job, index: int | None, state: JobState, now: float) -> None:
    """Bookkeeping once the run of iteration ``index`` (None: the plain job) ended ``state``."""
    job.done += 1
    if state is not OK:
        job.failed += 1
    if not job.iterative:
        eng._finished.append((job, None))
        return
    assert index is not None
    eng._finished.append((job, (index,)))
    maybe_job_final(eng, job, now)


def maybe_job_final(eng: Engine, job: Job, now: float) -> None:
    """An iteration job whose iterations all ended and that runs nothing ends too."""
    if job.done < job.total or job.active or job.state in FINAL_STATES:
        return
    if job.canceled:
        final = CANCEL
    elif job.failed == 0:
        final = OK
    else:
        final = FAIL
    job_state(eng, job, final, now)
    eng._finished.append((job, None))


# == restore: registering recorded ends ========================================


def _registrable(what: str, old: JobState, new: JobState) -> None:
    if old is not Q or new not in FINAL_STATES:
        raise InvalidTransition(f"{what}: {old.value} -> {new.value} can not be restored")


def register_iteration(job: Job, index: int, state: JobState) -> None:
    """Iteration ``index`` of ``job`` ended ``state`` in a previous run: put it in place
    (no event, no counter: see ``_restore``).

    Raises:
        InvalidTransition: the iteration is not QUEUED, or ``state`` is not final.
    """
    its = codes(job)
    i = index - job.start
    _registrable(f"job {job.name!r} iteration {index}", STATES[its[i]], state)
    its[i] = CODE[state]


def register_queued_iterations(job: Job, state: JobState) -> int:
    """Every QUEUED iteration of ``job`` ended ``state`` in a previous run (a bulk
    cancel or omit records no iteration); returns how many.

    Raises:
        InvalidTransition: ``state`` is not final.
    """
    _registrable(f"job {job.name!r}: queued iterations", Q, state)
    its = codes(job)
    n = its.count(QCODE)
    if n:
        its[:] = its.translate(_FROM_QUEUED[state])
    return n


def register_ended(eng: Engine, job: Job, out: Outcome) -> None:
    """Register ``job`` (just registered, QUEUED, not yet published) in its recorded
    final state: its history holds only that end.

    Raises:
        InvalidTransition: the job is not QUEUED, or ``out.state`` is not final.
    """
    _registrable(f"job {job.name!r}", job.state, out.state)
    job.state = out.state
    job.packed_history = _pack(CODE[out.state], out.time)
    compact_ended(job, eng._shared)
    eng.job_counts[Q] -= 1
    eng.job_counts[out.state] += 1
    if not job.iterative:
        job.done = 1
        job.failed = int(out.state is not OK)
    if out.message and out.state is not OK:
        job.messages = [out.message]
    eng._emit(job.name, None, out.state, out.time)
