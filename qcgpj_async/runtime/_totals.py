"""What the closing lines of a batch need, gathered as runs end: no file is read again.

The makespan (first start to last end), the busy core-seconds, and the first
few ends that were not a success. Read back from jobs.report at the end of a
run they would cost the pilot ~5% more instructions per job (and, read whole,
~0.9 KB of peak memory per job); here each end costs a few additions.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ..engine import Run
from ..model import JobState

__all__ = ("RunTotals",)


@attrs.define(slots=True)
class RunTotals:
    """Totals over the runs that ended in this pilot (restored ends not included).

    ``unsuccessful`` holds the first :attr:`shown` ends that were not a
    success, by end time: ``(end, order, state, name, message, exit_code,
    started)``.
    """

    shown: int = 3
    #: Usable cores (the pilot's, less a reserved system core).
    cores: int = 0
    first_start: float = math.inf
    last_end: float = -math.inf
    busy: float = 0.0
    count: int = 0  # ends that were not a success
    kinds: set[str] = attrs.field(factory=set)
    unsuccessful: list[tuple[float, int, str, str, str | None, int | None, bool]] = attrs.field(
        factory=list
    )

    def run_ended(self, label: str, run: Run, message: str | None) -> None:
        """A run (a plain job, or one iteration) ended."""
        start, end = run.started, run.finished
        if start is not None and end is not None:
            if start < self.first_start:
                self.first_start = start
            if end > self.last_end:
                self.last_end = end
            self.busy += (end - start) * run.allocation.cores
        if run.state is not JobState.SUCCEED:
            at = end if end is not None else (start if start is not None else math.inf)
            self._not_succeeded(at, run.state, label, message, run.exit_code, start is not None)

    def ended_unrun(self, label: str, state: JobState, at: float, message: str | None) -> None:
        """A job or iteration ended without a run of its own (omitted, cancelled queued)."""
        if state is not JobState.SUCCEED:
            self._not_succeeded(at, state, label, message, None, False)

    def _not_succeeded(
        self,
        at: float,
        state: JobState,
        label: str,
        message: str | None,
        code: int | None,
        started: bool,
    ) -> None:
        self.count += 1
        self.kinds.add(state.value)
        bad = self.unsuccessful
        if len(bad) < self.shown or at < bad[-1][0]:
            bad.append((at, self.count, state.value, label, message, code, started))
            bad.sort()
            del bad[self.shown :]

    def figures(self) -> dict[str, Any]:
        """The totals as plain values (what ``qcgpj_async.report`` takes)."""
        return {
            "cores": self.cores,
            "first_start": self.first_start if self.last_end >= self.first_start else None,
            "last_end": self.last_end if self.last_end >= self.first_start else None,
            "busy": self.busy,
            "count": self.count,
            "kinds": set(self.kinds),
            "unsuccessful": [b[2:] for b in self.unsuccessful],
        }
