"""Engine records (mutable), and what the engine tells the runtime (frozen).

Events are past-tense (:class:`StateChanged`); commands are imperative
(:class:`Launch`, :class:`Kill`).

A pilot keeps the record of every job until it is removed, ended or not, so
the records of ended jobs are compact: a history is packed into bytes (nine
per entry: the state's code and the time) rather than a list of tuples, a
plain job holds its one run without a dict, and the runs of an ended
iteration job go into columns (:class:`RunTable`). Packed records are not
seen by the cyclic GC, whose full collections otherwise grow with every job
kept. Readers see the same values: ``history`` is a list of ``(state,
time)``, ``runs`` a mapping of iteration (None for a plain job) to
:class:`Run`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

import attrs

from ..model import JobSpec, JobState
from ._resources import Allocation, Requirement

if TYPE_CHECKING:
    from ._compact import RunTable

__all__ = (
    "CODE",
    "ENTRY",
    "STATES",
    "Job",
    "Kill",
    "Launch",
    "Outcome",
    "Run",
    "RunStore",
    "StateChanged",
    "pack_history",
    "unpack_history",
)

#: Every state by its one-byte code (the engine's byte per iteration and per history entry).
STATES: tuple[JobState, ...] = tuple(JobState)
#: The code of every state.
CODE: dict[JobState, int] = {s: i for i, s in enumerate(STATES)}
#: One packed history entry: the state's code and the time, nine bytes, no padding.
ENTRY = struct.Struct("<Bd")

History = list[tuple[JobState, float]]

#: Where a job keeps its runs (:attr:`Job.run_store`), by kind of job and phase;
#: read them through :attr:`Job.runs` and :meth:`Job.run_at`, change them through
#: :meth:`Job.add_run`, :meth:`Job.drop_run` and :meth:`Job.clear_runs`:
#:
#: * ``None``: no run (none started yet, or the job was removed);
#: * a :class:`Run`: the one run of a plain job (no dict for a single run);
#: * a ``dict`` of iteration -> :class:`Run`: the runs of a live iteration job;
#: * a :class:`~qcgpj_async.engine.RunTable`: the runs of an ended iteration job,
#:   in columns (see ``_compact``).
RunStore: TypeAlias = "Run | dict[int | None, Run] | RunTable | None"


def pack_history(entries: Iterable[tuple[JobState, float]]) -> bytearray:
    """The packed form of ``(state, time)`` entries (appendable: a bytearray)."""
    pack = ENTRY.pack
    return bytearray(b"".join(pack(CODE[s], t) for s, t in entries))


def unpack_history(packed: bytes | bytearray) -> History:
    """The ``(state, time)`` entries of a packed history."""
    return [(STATES[c], t) for c, t in ENTRY.iter_unpack(packed)]


@attrs.frozen
class StateChanged:
    """A job (``iteration is None``) or one of its iterations changed state."""

    job: str
    iteration: int | None
    state: JobState
    time: float


@attrs.frozen
class Launch:
    """Start this iteration on this allocation."""

    run_id: int
    job: str
    iteration: int | None
    spec: JobSpec
    allocation: Allocation
    #: Queued (see :attr:`Engine.lookahead`): ``allocation`` only says its shape; the
    #: run takes the cores of the run that names it as its successor when it ends.
    queued: bool = False
    #: A queued launch given ``allocation`` (free cores) before the executor started
    #: it in the cores of another run: the executor is to start it now.
    promote: bool = False


@attrs.frozen
class Kill:
    """Stop this running iteration (reason: ``"cancel"`` or ``"walltime"``)."""

    run_id: int
    job: str
    iteration: int | None
    reason: str


@attrs.frozen
class Outcome:
    """How a job or an iteration ended, as a previous run recorded it (see ``Engine.restore``).

    ``exit_code`` is None when it never ran (cancelled or omitted while queued).
    """

    state: JobState
    time: float
    exit_code: int | None = None
    message: str | None = None


@attrs.define(eq=False, weakref_slot=False)
class Run:
    """One started iteration (or the only run of a plain job).

    ``packed_history`` is None for the run of a plain job: it goes through
    the same states at the same times as its job and reads the job's history.
    """

    id: int
    job: Job
    index: int | None
    allocation: Allocation
    state: JobState
    packed_history: bytearray | bytes | None
    pid: int | None = None
    exit_code: int | None = None
    message: str | None = None
    started: float | None = None
    finished: float | None = None
    kill_reason: str | None = None
    queued: bool = False  # launched ahead, holding no cores yet (Engine.lookahead)

    @property
    def history(self) -> History:
        """``(state, time)`` of every change, oldest first (a new list: read only)."""
        h = self.packed_history
        return self.job.history if h is None else unpack_history(h)

    @property
    def rtime(self) -> float | None:
        """Seconds from start to end (or None when it never started)."""
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else self.started) - self.started


@attrs.define(eq=False)
class Job:
    """A submitted job and, for iteration jobs, the bookkeeping of its iterations.

    Iterations are not materialized up front: ``cursor`` is the next index to
    start, ``runs`` holds only the started ones, ``it_states`` (one byte per
    iteration, see :data:`CODE`; written only by ``_lifecycle``) appears with
    the first iteration event.

    ``packed_history`` is the history packed (see :data:`ENTRY`): a bytearray
    while the job lives, bytes once it ended. ``run_store`` holds the runs
    (see :data:`RunStore`); read them through ``runs``.

    Per kind of job: ``start``, ``stop``, ``cursor``, ``it_states`` and
    ``ready_its`` are an iteration job's; ``paired`` and ``paired_left`` a job's
    with ``${it}`` dependencies; ``sched``, ``sched_nodes`` and ``peek`` a job's
    with an iteration scheduler (``req`` is then None).
    """

    name: str
    spec: JobSpec
    seq: int
    state: JobState
    packed_history: bytearray | bytes
    req: Requirement | None  # None: per-iteration requirement from ``sched``
    start: int = 0
    stop: int = 1
    iterative: bool = False
    cursor: int = 0
    waiting: int = 0  # unresolved job-level dependencies
    paired: tuple[str, ...] = ()  # jobs whose iteration i gates our iteration i
    paired_left: dict[int, int] | None = None  # iteration -> paired deps still open
    ready_its: list[int] | None = None  # heap of iterations ready (paired deps only)
    sched: Iterator[int] | None = None  # amount (cores or nodes) of each next iteration
    sched_nodes: bool = False  # ``sched`` gives nodes (else cores)
    peek: int | None = None  # what ``sched`` gives the next iteration, taken ahead
    run_store: RunStore = None
    it_states: bytearray | None = None
    active: int = 0  # runs scheduled or executing
    done: int = 0  # iterations in a final state
    failed: int = 0  # iterations FAILED, CANCELED or OMITTED
    canceled: bool = False
    in_bucket: bool = False
    messages: list[str] | None = None

    @property
    def total(self) -> int:
        """Number of iterations (1 for a plain job)."""
        return self.stop - self.start

    @property
    def history(self) -> History:
        """``(state, time)`` of every change, oldest first (a new list: read only)."""
        return unpack_history(self.packed_history)

    @property
    def runs(self) -> Mapping[int | None, Run]:
        """The started runs by iteration (None: a plain job's run); read only."""
        store = self.run_store
        if store is None:
            return _NO_RUNS
        if isinstance(store, Run):
            return {None: store}
        return store

    def run_at(self, index: int | None) -> Run | None:
        """The run of iteration ``index`` (None: of a plain job), if it started."""
        store = self.run_store
        if store is None or isinstance(store, Run):
            return store if index is None else None
        return store.get(index)

    def run_messages(self) -> list[tuple[int | None, str]]:
        """``(iteration, message)`` of every run that has a message, in start order.

        The same as reading ``runs``, without making a :class:`Run` per ended
        iteration of a job whose runs are in a table (info on a job of 10^5
        iterations: milliseconds, not a tenth of a second).
        """
        store = self.run_store
        if store is None:
            return []
        if isinstance(store, Run):
            return [(None, store.message)] if store.message else []
        if isinstance(store, dict):
            return [(i, r.message) for i, r in store.items() if r.message]
        return store.messages()

    def add_run(self, run: Run) -> None:
        """Keep a run that just started (or, on restore, that had ended)."""
        if run.index is None:
            self.run_store = run
            return
        store = self.run_store
        if store is None:
            store = self.run_store = {}
        assert type(store) is dict, "runs added to an ended job"
        store[run.index] = run

    def drop_run(self, index: int | None) -> None:
        """Forget the run of iteration ``index`` (None: a plain job's), cancelled or
        requeued before it took any cores: it is reported as never run."""
        store = self.run_store
        if index is None:
            self.run_store = None
        elif type(store) is dict:
            store.pop(index, None)

    def clear_runs(self) -> None:
        """Forget every run (a removed job: runs point at their job, and the job at
        its runs; breaking that cycle frees them now, not at a full collection)."""
        self.run_store = None


_NO_RUNS: Mapping[int | None, Run] = MappingProxyType({})
