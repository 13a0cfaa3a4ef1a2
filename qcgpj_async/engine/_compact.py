"""What an ended job keeps, made small (issue #9: memory flat under load).

A pilot keeps the record of every job until it is removed. When a job ends,
the engine packs its history (see ``_records``) and, here: puts the runs of
an iteration job into columns (:class:`RunTable`), lets its spec share an
equal execution and resources with the job that ended before it
(:class:`SharedParts`), and shares the ``exit code N`` messages. Readers see
the same values.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import Any

import attrs

from ..model import Execution, JobSpec, Resources
from ._records import CODE, STATES, Job, Run

__all__ = ("RunTable", "SharedParts", "compact_ended", "compact_runs", "exit_message")


def compact_ended(job: Job, shared: SharedParts) -> None:
    """Make what an ended job keeps small: its runs in columns, its spec's parts
    shared (called by ``_lifecycle`` as a job ends, or is restored ended)."""
    if job.iterative:
        compact_runs(job)
    shared.share(job)


def compact_runs(job: Job) -> None:
    """Put the runs of an ended iteration job into a :class:`RunTable`, when
    there are enough of them for the columns to be smaller."""
    store = job.run_store
    if type(store) is dict and len(store) >= RunTable.MIN_RUNS:
        table = RunTable.of(job, store.values())
        if table is not None:
            job.run_store = table


_EXIT_MESSAGES: dict[int, str] = {}


def exit_message(code: int) -> str:
    """``exit code N``, one string per code (every job that failed so keeps it)."""
    msg = _EXIT_MESSAGES.get(code)
    if msg is None:
        msg = f"exit code {code}"
        if -256 <= code < 256:
            _EXIT_MESSAGES[code] = msg
    return msg


# SharedParts makes JobSpecs field by field: it must know every field.
assert tuple(f.name for f in attrs.fields(JobSpec)) == (
    "name",
    "execution",
    "resources",
    "iteration",
    "dependencies",
    "attributes",
), "JobSpec changed: update SharedParts.share"


class SharedParts:
    """The execution and resources of the last job that ended.

    Jobs read from JSON carry a copy each (the same ``/bin/true`` a hundred
    thousand times), and the pilot keeps every ended job's spec (for reports,
    and for dependencies submitted later). An ended job whose execution or
    resources equal the last one's gets an equal spec that shares them.
    """

    __slots__ = ("execution", "resources")

    def __init__(self) -> None:
        """Nothing shared yet."""
        self.execution: Execution | None = None
        self.resources: Resources | None = None

    def share(self, job: Job) -> None:
        """Replace ``job.spec`` (ended) by an equal one sharing what it can."""
        spec = job.spec
        ex, res = spec.execution, spec.resources
        last_ex, last_res = self.execution, self.resources
        if ex is last_ex and res is last_res:
            return
        if ex is not last_ex and ex == last_ex:
            ex = last_ex
        if res is not last_res and res == last_res:
            res = last_res
        if ex is not spec.execution or res is not spec.resources:
            job.spec = JobSpec(
                spec.name, ex, res, spec.iteration, spec.dependencies, spec.attributes
            )
        self.execution, self.resources = ex, res


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

    def __init__(
        self,
        job: Job,
        keys: array[int],
        order: array[int] | None,
        ints: array[int],
        times: array[float],
        states: bytes,
        hist: bytes,
        hoff: array[int],
        refs: list[Any],
        rare: dict[int, tuple[str | None, str | None]],
    ) -> None:
        """Use :meth:`of`."""
        self._job = job
        self._keys = keys  # iteration indexes, ascending
        self._order = order  # positions in start order, None when that is ascending
        self._ints = ints  # id, pid, exit code of each run
        self._times = times  # started, finished of each run
        self._states = states
        self._hist = hist  # every run's packed history, one after another
        self._hoff = hoff  # where each run's history starts (and one past the last)
        self._refs = refs  # allocation of each run
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
            if (
                h is None
                or r.started != r.started
                or r.finished is None
                or r.finished != r.finished
                or _NONE_INT in (r.pid, r.exit_code)
            ):
                return None  # values the columns cannot tell apart from None
            try:
                ints.extend(
                    (
                        r.id,
                        _NONE_INT if r.pid is None else r.pid,
                        _NONE_INT if r.exit_code is None else r.exit_code,
                    )
                )
            except (OverflowError, TypeError):
                return None
            keys.append(r.index)  # type: ignore[arg-type]
            times.extend((_NAN if r.started is None else r.started, r.finished))
            hist.append(h)
            at += len(h)
            hoff.append(at)
            refs.append(r.allocation)
            if r.message is not None or r.kill_reason is not None:
                rare[pos] = (r.message, r.kill_reason)
        order = None
        if by_index != started:
            pos_of = {id(r): p for p, r in enumerate(by_index)}
            order = array("q", (pos_of[id(r)] for r in started))
        states = bytes(CODE[r.state] for r in by_index)
        return cls(job, keys, order, ints, times, states, b"".join(hist), hoff, refs, rare)

    def _run(self, pos: int) -> Run:
        i, t, refs, ints, times = 3 * pos, 2 * pos, self._refs, self._ints, self._times
        pid, code, started = ints[i + 1], ints[i + 2], times[t]
        message, reason = self._rare.get(pos, _NO_RARE)
        return Run(
            ints[i],
            self._job,
            self._keys[pos],
            refs[pos],
            STATES[self._states[pos]],
            self._hist[self._hoff[pos] : self._hoff[pos + 1]],
            None if pid == _NONE_INT else pid,
            None if code == _NONE_INT else code,
            message,
            None if started != started else started,
            times[t + 1],
            reason,
        )

    def _positions(self) -> Iterable[int]:
        """Every run's position, in the order the runs started."""
        return range(len(self._keys)) if self._order is None else self._order

    def messages(self) -> list[tuple[int | None, str]]:
        """``(iteration, message)`` of every run with a message, in start order; no run is made."""
        keys = self._keys
        said = {p: m for p, (m, _) in self._rare.items() if m}
        if not said:
            return []
        order = sorted(said) if self._order is None else (p for p in self._order if p in said)
        return [(keys[p], said[p]) for p in order]

    def values(self) -> ValuesView[Run]:
        """The runs, in start order (each read makes new :class:`Run` records)."""
        return _Values(self)

    def items(self) -> ItemsView[int | None, Run]:
        """``(iteration, run)``, in start order (each read makes new :class:`Run` records)."""
        return _Items(self)

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


_NO_RARE = (None, None)


class _Values(ValuesView[Run]):
    """A table's runs, read by position (no lookup per run)."""

    _mapping: RunTable

    def __iter__(self) -> Iterator[Run]:
        table = self._mapping
        return map(table._run, table._positions())


class _Items(ItemsView[int | None, Run]):
    """A table's ``(iteration, run)`` pairs, read by position."""

    _mapping: RunTable

    def __iter__(self) -> Iterator[tuple[int | None, Run]]:
        table = self._mapping
        keys = table._keys
        return ((keys[p], table._run(p)) for p in table._positions())
