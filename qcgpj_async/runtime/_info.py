"""Typed answers of the Pilot (job info, resources, status) and their original dicts."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

import attrs

from ..engine import Engine, Job, Run
from ..model import JobState
from ._places import RunPlaces

__all__ = (
    "ChildInfo",
    "Interfaces",
    "IterationCounts",
    "JobInfo",
    "ResourcesInfo",
    "RunInfo",
    "format_history",
    "format_time",
    "iteration_info",
    "job_info",
)


def format_time(t: float) -> str:
    """A timestamp as the original prints it (``2026-11-22 22:28:04.026533``)."""
    return str(_dt.datetime.fromtimestamp(t))


def format_rtime(seconds: float) -> str:
    """A run time as the original prints it, always with microseconds (``0:00:01.000000``).

    ``str(timedelta)`` drops them for whole seconds, which the original client cannot parse.
    """
    us = round(seconds * 1_000_000)
    h, rem = divmod(us, 3_600_000_000)
    m, rem = divmod(rem, 60_000_000)
    s, us = divmod(rem, 1_000_000)
    return f"{h}:{m:02d}:{s:02d}.{us:06d}"


def format_history(history: Iterable[tuple[JobState, float]]) -> str:
    """The original's history string: a leading newline, ``<ts>: STATE`` lines."""
    return "".join(f"\n{format_time(t)}: {s.value}" for s, t in history)


@attrs.frozen
class RunInfo:
    """Where and how one run went."""

    allocation: str
    wd: str | None
    rtime: float | None
    exit_code: int | None
    pid: int | None
    pname: str | None

    @classmethod
    def of(cls, run: Run, places: RunPlaces) -> RunInfo:
        """The info of an engine run record, and where it ran (``places``)."""
        wd, pname = places.wd(run.id), places.pname(run.id)
        return cls(str(run.allocation), wd, run.rtime, run.exit_code, run.pid, pname)

    def to_dict(self) -> dict[str, str]:
        """The original's ``runtime`` dict (values are strings)."""
        out = {"allocation": self.allocation}
        if self.wd is not None:
            out["wd"] = self.wd
        if self.rtime is not None:
            out["rtime"] = format_rtime(self.rtime)
        if self.exit_code is not None:
            out["exit_code"] = str(self.exit_code)
        if self.pid is not None:
            out["pid"] = str(self.pid)
        if self.pname is not None:
            out["pname"] = self.pname
        return out


@attrs.frozen
class IterationCounts:
    """Progress of an iteration job."""

    start: int
    stop: int
    total: int
    finished: int
    failed: int

    def to_dict(self) -> dict[str, int]:
        """As the original."""
        return attrs.asdict(self)


@attrs.frozen
class ChildInfo:
    """One iteration of a job."""

    iteration: int
    state: JobState
    runtime: RunInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the original (``{"iteration", "state", "runtime"?}``)."""
        out: dict[str, Any] = {"iteration": self.iteration, "state": self.state.value}
        if self.runtime is not None:
            out["runtime"] = self.runtime.to_dict()
        return out


@attrs.frozen
class JobInfo:
    """Everything known about one job."""

    name: str
    state: JobState
    history: tuple[tuple[JobState, float], ...]
    messages: tuple[str, ...] = ()
    runtime: RunInfo | None = None
    iterations: IterationCounts | None = None
    childs: tuple[ChildInfo, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The original's ``jobInfo`` data of this job."""
        out: dict[str, Any] = {"jobName": self.name, "status": self.state.value}
        if self.iterations is not None:
            out["iterations"] = self.iterations.to_dict()
        if self.childs is not None:
            out["childs"] = [c.to_dict() for c in self.childs]
        if self.messages:
            out["messages"] = "\n".join(self.messages)
        if self.runtime is not None:
            out["runtime"] = self.runtime.to_dict()
        out["history"] = format_history(self.history)
        return out


def _started_or_scheduled(run: Run | None) -> Run | None:
    """The run, unless it waits in the executor's queue (``Engine.lookahead``): then
    the job or iteration is shown as QUEUED ones are, with no run."""
    return None if run is None or run.queued else run


def job_info(engine: Engine, job: Job, places: RunPlaces, with_childs: bool = False) -> JobInfo:
    """Build the info of an engine job record (``places``: where its runs ran)."""
    run = _started_or_scheduled(job.run_at(None)) if not job.iterative else None
    counts = childs = None
    messages = list(job.messages or ())
    if job.iterative:
        counts = IterationCounts(job.start, job.stop, job.total, job.done, job.failed)
        if with_childs:
            runs = {
                i: r
                for i, r in job.runs.items()  # one read: maybe a table
                if not r.queued
            }
            childs = tuple(
                ChildInfo(
                    i,
                    engine.iteration_state(job, i),
                    RunInfo.of(runs[i], places) if i in runs else None,
                )
                for i in range(job.start, job.stop)
            )
        messages.extend(f"{job.name}:{i}: {m}" for i, m in job.run_messages())
    return JobInfo(
        name=job.name,
        state=job.state,
        history=tuple(job.history),
        messages=tuple(messages),
        runtime=RunInfo.of(run, places) if run is not None else None,
        iterations=counts,
        childs=childs,
    )


def iteration_info(engine: Engine, job: Job, index: int, places: RunPlaces) -> JobInfo:
    """The info of iteration ``index`` of an iteration job (named ``job:index``).

    As the original: its state, and the history, message and runtime of its
    run where it started (an iteration that never started has no history).
    """
    run = _started_or_scheduled(job.run_at(index))
    return JobInfo(
        name=f"{job.name}:{index}",
        state=engine.iteration_state(job, index),
        history=tuple(run.history) if run is not None else (),
        messages=(run.message,) if run is not None and run.message else (),
        runtime=RunInfo.of(run, places) if run is not None else None,
    )


@attrs.frozen
class ResourcesInfo:
    """Sizes of the pool now (GPUs: devices, on all nodes)."""

    total_nodes: int
    total_cores: int
    used_cores: int
    free_cores: int
    total_gpus: int = 0
    used_gpus: int = 0
    free_gpus: int = 0

    def to_dict(self) -> dict[str, int]:
        """As the original's ``resourcesInfo`` data; the GPU counts where there are GPUs."""
        out = attrs.asdict(self)
        if not self.total_gpus:
            for key in ("total_gpus", "used_gpus", "free_gpus"):
                del out[key]
        return out


#: The original's order of its request interfaces in ``status``.
_IFACE_ORDER = ("FILE", "ZMQ")


@attrs.define
class Interfaces:
    """The request interfaces a pilot serves, as ``status`` and final_status.json name them.

    Filled in by the adapters: the file transport adds ``FILE``; the ZMQ
    server adds ``ZMQ`` and sets its addresses.
    """

    names: list[str] = attrs.field(factory=list)
    zmq_address: str | None = None
    publisher: str | None = None

    def add(self, name: str) -> None:
        """``name`` is served (listed once, in the original's order)."""
        if name not in self.names:
            self.names.append(name)
            self.names.sort(
                key=lambda n: _IFACE_ORDER.index(n) if n in _IFACE_ORDER else len(_IFACE_ORDER)
            )
