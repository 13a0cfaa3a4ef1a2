"""Engine records (mutable), and what the engine tells the runtime (frozen).

Events are past-tense (:class:`StateChanged`); commands are imperative
(:class:`Launch`, :class:`Kill`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from ..model import JobSpec, JobState
from ._resources import Allocation, Requirement

__all__ = ("Job", "Kill", "Launch", "Outcome", "Run", "StateChanged")


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


@attrs.define(eq=False)
class Run:
    """One started iteration (or the only run of a plain job)."""

    id: int
    job: Job
    index: int | None
    allocation: Allocation
    state: JobState
    history: list[tuple[JobState, float]]
    pid: int | None = None
    exit_code: int | None = None
    message: str | None = None
    started: float | None = None
    finished: float | None = None
    kill_reason: str | None = None
    wd: str | None = None  # set by the runtime when it starts the run
    pname: str | None = None

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
    """

    name: str
    spec: JobSpec
    seq: int
    state: JobState
    history: list[tuple[JobState, float]]
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
    runs: dict[int | None, Run] = attrs.Factory(dict)
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
