"""What a report is made of: one record per task (a plain job or an iteration) and per job.

These are plain data (stdlib dataclasses: this package reads files and
imports nothing of the runtime), filled by :mod:`._load` from a service
directory and read by the pure functions of :mod:`._stats`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

__all__ = ("FINAL", "JobRecord", "RunRecord", "TaskRecord")

#: The final states (as in ``model.FINAL_STATES``, by value).
FINAL = frozenset({"SUCCEED", "FAILED", "CANCELED", "OMITTED"})


@dataclass(slots=True)
class TaskRecord:
    """One task: the run of a plain job, or one iteration of an iteration job.

    Times are POSIX seconds (None where the task never reached that state).
    ``ready`` is when its dependencies were met (its ``queued`` time when it
    has none; None when they never were).
    """

    name: str
    job: str
    it: int | None
    state: str
    queued: float | None = None
    scheduled: float | None = None
    started: float | None = None
    ended: float | None = None
    alloc: tuple[tuple[str, tuple[int, ...]], ...] = ()
    exit_code: int | None = None
    message: str | None = None
    ready: float | None = None
    ncores: int = 0  # cores asked for
    acores: int = 0  # cores of ``alloc`` (0: count them)
    restored: bool = False  # it ended in the run resumed (--resume), not in this one
    gpus: int = 0  # GPU devices it held (on all its nodes)

    @property
    def cores(self) -> int:
        """Cores it held (from its allocation; else the number it asked for)."""
        return self.acores or sum(len(c) for _, c in self.alloc) or self.ncores

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes it ran on."""
        return [n for n, _ in self.alloc]

    @property
    def reason(self) -> str:
        """Why it ended as it did: its message, else its exit code, else its state."""
        if self.message:
            return self.message.replace("\n", "; ")
        if self.restored:
            return f"{self.state.lower()} before the resume (restored from the journal)"
        code = self.exit_code
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        if code is not None and code != 0:
            return f"exit code {code}"
        if self.state == "CANCELED":
            return "cancelled" + (" before it started" if self.started is None else "")
        return self.state.lower()


@dataclass(slots=True)
class JobRecord:
    """One job: its state and, for an iteration job, how many iterations it has."""

    name: str
    state: str
    total: int | None = None  # iterations (None: a plain job)
    ended: float | None = None
    message: str | None = None
    after: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RunRecord:
    """Everything read from one service directory (or one ``jobs.report``).

    Attributes:
        path: the service directory (or the report file read alone).
        instance_id: the pilot's id ("" when unknown).
        opened: when the pilot started (None: unknown, e.g. a report read alone).
        closed: when it ended (None: still running, or killed).
        alive: True while its process runs, False when it is gone, None unknown.
        nodes: usable cores per node (inferred from the allocations when no
            journal says so, then ``nodes_inferred`` is True).
        gpus: GPU devices per node (from the journal; none when it names none).
        tasks: one record per task.
        jobs: one record per job, by name.
        interrupted: jobs stopped because the pilot was interrupted.
        now: the time the files were read.
    """

    path: str
    instance_id: str = ""
    opened: float | None = None
    closed: float | None = None
    alive: bool | None = None
    nodes: dict[str, int] = field(default_factory=dict)
    nodes_inferred: bool = False
    gpus: dict[str, int] = field(default_factory=dict)
    tasks: list[TaskRecord] = field(default_factory=list)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    interrupted: int = 0
    now: float = 0.0
    report_path: str | None = None

    @property
    def total_cores(self) -> int:
        """Cores of all nodes."""
        return sum(self.nodes.values())

    @property
    def finished(self) -> bool:
        """The pilot ended (cleanly: its journal is closed)."""
        return self.closed is not None
