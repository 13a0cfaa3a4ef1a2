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
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..model import JobSpec, JobState
from ._resources import Allocation, Requirement

__all__ = (
    "CODE",
    "ENTRY",
    "STATES",
    "Job",
    "Kill",
    "Launch",
    "Outcome",
    "Run",
    "RunTable",
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
    wd: str | None = None  # set by the runtime when it starts the run
    pname: str | None = None

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
    iteration) appears with the first iteration event.

    ``packed_history`` is the history packed (see :data:`ENTRY`): a bytearray
    while the job lives, bytes once it ended. ``run_store`` holds the runs:
    the one :class:`Run` of a plain job, a dict of an iteration job's runs,
    or, once an iteration job with many runs ended, a :class:`RunTable`;
    read them through ``runs``.
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
    sched: Iterator[int] | None = None
    sched_nodes: bool = False
    run_store: Run | dict[int | None, Run] | RunTable | None = None
    it_states: bytearray | None = None
    active: int = 0  # runs scheduled or executing
    done: int = 0  # iterations in a final state
    failed: int = 0  # iterations FAILED, CANCELED or OMITTED
    canceled: bool = False
    in_bucket: bool = False
    messages: list[str] | None = None
    attrs_extra: dict[str, Any] | None = None

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
        if type(store) is Run:
            return {None: store}
        return store  # type: ignore[return-value]

    def run_at(self, index: int | None) -> Run | None:
        """The run of iteration ``index`` (None: of a plain job), if it started."""
        store = self.run_store
        if store is None or type(store) is Run:
            return store if index is None else None
        return store.get(index)  # type: ignore[union-attr]

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

    def compact_runs(self) -> None:
        """Put the runs of an ended iteration job into a :class:`RunTable`, when
        there are enough of them for the columns to be smaller."""
        store = self.run_store
        if type(store) is dict and len(store) >= RunTable.MIN_RUNS:
            table = RunTable.of(self, store.values())
            if table is not None:
                self.run_store = table


_NO_RUNS: Mapping[int | None, Run] = MappingProxyType({})
_NONE_INT = -(2**63)  # None in an int column
_NAN = float("nan")  # None in a time column


class RunTable(Mapping[int | None, Run]):
    """The ended runs of an ended iteration job, in columns: no object per run.

    About 130 bytes per run instead of about 400 (a :class:`Run`, its history,
    its numbers, a dict entry). Reading a run makes a new :class:`Run` with the
    same values; iteration order is the order the runs started in.
    """

    #: Fewer runs than this stay in a dict (the columns' own headers cost more).
    MIN_RUNS = 16
    __slots__ = (
        "_hist",
        "_hoff",
        "_ints",
        "_job",
        "_keys",
        "_order",
        "_rare",
        "_refs",
        "_states",
        "_times",
    )

    def __init__(self, job: Job, keys: array[int], order: array[int] | None, ints: array[int],
                 times: array[float], states: bytes, hist: bytes, hoff: array[int],
                 refs: list[Any], rare: dict[int, tuple[str | None, str | None]]) -> None:
        """Use :meth:`of`."""
        self._job = job
        self._keys = keys  # iteration indexes, ascending
        self._order = order  # positions in start order, None when that is ascending
        self._ints = ints  # id, pid, exit code of each run
        self._times = times  # started, finished of each run
        self._states = states
        self._hist = hist  # every run's packed history, one after another
        self._hoff = hoff  # where each run's history starts (and one past the last)
        self._refs = refs  # allocation, wd, pname of each run
        self._rare = rare  # position -> (message, kill reason), for runs that have one

    @classmethod
    def of(cls, job: Job, runs: Iterable[Run]) -> RunTable | None:
        """The table of ``runs`` (all ended), or None when a value does not fit a column."""
        started = list(runs)
        by_index = sorted(started, key=lambda r: r.index)  # type: ignore[arg-type, return-value]
        keys = array("q")
        ints = array("q")
        times = array("d")
        hist = []
        hoff = array("q", [0])
        refs: list[Any] = []
        rare = {}
        at = 0
        for pos, r in enumerate(by_index):
            h = r.packed_history
            if (h is None or r.started != r.started or r.finished is None
                    or r.finished != r.finished or _NONE_INT in (r.pid, r.exit_code)):
                return None  # values the columns cannot tell apart from None
            try:
                ints.extend((r.id, _NONE_INT if r.pid is None else r.pid,
                             _NONE_INT if r.exit_code is None else r.exit_code))
            except (OverflowError, TypeError):
                return None
            keys.append(r.index)  # type: ignore[arg-type]
            times.extend((_NAN if r.started is None else r.started, r.finished))
            hist.append(h)
            at += len(h)
            hoff.append(at)
            refs.extend((r.allocation, r.wd, r.pname))
            if r.message is not None or r.kill_reason is not None:
                rare[pos] = (r.message, r.kill_reason)
        order = None
        if by_index != started:
            pos_of = {id(r): p for p, r in enumerate(by_index)}
            order = array("q", (pos_of[id(r)] for r in started))
        states = bytes(CODE[r.state] for r in by_index)
        return cls(job, keys, order, ints, times, states, b"".join(hist), hoff, refs, rare)

    def _run(self, pos: int) -> Run:
        i, t, refs = 3 * pos, 2 * pos, self._refs
        rid, pid, code = self._ints[i:i + 3]
        started = self._times[t]
        message, reason = self._rare.get(pos, (None, None))
        return Run(rid, self._job, self._keys[pos], refs[i], STATES[self._states[pos]],
                   self._hist[self._hoff[pos]:self._hoff[pos + 1]],
                   None if pid == _NONE_INT else pid,
                   None if code == _NONE_INT else code, message,
                   None if started != started else started, self._times[t + 1], reason,
                   refs[i + 1], refs[i + 2])

    def _pos(self, index: object) -> int:
        keys = self._keys
        if type(index) is int:
            pos = bisect_left(keys, index)
            if pos < len(keys) and keys[pos] == index:
                return pos
        return -1

    def __getitem__(self, index: int | None) -> Run:
        pos = self._pos(index)
        if pos < 0:
            raise KeyError(index)
        return self._run(pos)

    def __contains__(self, index: object) -> bool:
        return self._pos(index) >= 0

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[int | None]:
        keys = self._keys
        if self._order is None:
            return iter(keys)
        return (keys[p] for p in self._order)
