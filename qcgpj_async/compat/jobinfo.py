"""The original's ``JobInfo`` (``qcg.pilotjob.api.jobinfo``): a ``jobInfo`` reply, parsed."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

__all__ = ("JobInfo",)


class JobInfo:
    """What ``Manager.info_parsed`` returns for each job.

    Attributes:
        name: the job's name (``job:it`` for an iteration in ``childs``).
        status: its state, e.g. ``"SUCCEED"``.
        nodes: ``{node: [core ids as strings]}`` of its allocation.
        total_cores: how many cores it was given.
        wdir: its working directory.
        time: how long it ran (a timedelta), once it has ended.
        iteration: the index (iterations in ``childs`` only).
        iterations: ``{start, stop, total, finished, failed}`` of an iteration job.
        childs: one JobInfo per iteration (asked for with ``withChilds=True``).
        history: the lines of its state history.
        messages: its error messages.
    """

    def __init__(self) -> None:
        self.name: str | None = None
        self.status: str | None = None
        self.nodes: dict[str, list[str]] | None = None
        self.total_cores: int | None = None
        self.wdir: str | None = None
        self.time: _dt.timedelta | None = None
        self.iteration: int | None = None
        self.iterations: dict[str, Any] | None = None
        self.childs: list[JobInfo] | None = None
        self.history: list[str] | None = None
        self.messages: str | None = None

    @staticmethod
    def from_child(job_name: str, child_data: dict[str, Any]) -> JobInfo:
        """Parse one entry of ``childs`` of a ``jobInfo`` reply."""
        info = JobInfo()
        info.iteration = child_data["iteration"]
        info.name = f"{job_name}:{info.iteration}"
        info.status = child_data["state"]
        runtime = child_data.get("runtime") or {}
        info.wdir = runtime.get("wd")
        if runtime.get("allocation"):
            info.nodes = JobInfo._parse_allocation(runtime["allocation"])
            info.total_cores = sum(len(cores) for cores in info.nodes.values())
        if runtime.get("rtime"):
            info.time = JobInfo._parse_runtime(runtime["rtime"])
        return info

    @staticmethod
    def from_job(job_data: dict[str, Any]) -> JobInfo:
        """Parse the ``data`` of one job of a ``jobInfo`` reply."""
        info = JobInfo()
        info.name = job_data.get("jobName")
        info.status = job_data.get("status")
        runtime = job_data.get("runtime") or {}
        info.nodes = {}
        info.total_cores = 0
        if runtime.get("allocation"):
            info.nodes = JobInfo._parse_allocation(runtime["allocation"])
            info.total_cores = sum(len(cores) for cores in info.nodes.values())
        info.wdir = runtime.get("wd")
        if runtime.get("rtime"):
            info.time = JobInfo._parse_runtime(runtime["rtime"])
        info.iterations = job_data.get("iterations", {})
        if "childs" in job_data:
            info.childs = [JobInfo.from_child(str(info.name), c) for c in job_data["childs"]]
        # The reply has the history beside runtime; the original read it from
        # inside runtime (where it never is) and always got []: we read it where it is.
        history = job_data.get("history") or runtime.get("history") or ""
        info.history = [line for line in history.splitlines() if line]
        info.messages = job_data.get("messages")
        return info

    @staticmethod
    def _parse_allocation(allocation: str) -> dict[str, list[str]]:
        """``"n0[0:1],n1[2]"`` -> ``{"n0": ["0", "1"], "n1": ["2"]}``."""
        nodes: dict[str, list[str]] = {}
        for node in allocation.split(","):
            bracket = node.index("[")
            nodes[node[:bracket]] = node[bracket + 1 : -1].split(":")
        return nodes

    @staticmethod
    def _parse_runtime(runtime: str) -> _dt.timedelta:
        """``"H:MM:SS.ffffff"`` (``str(timedelta)``) -> timedelta; also longer than a day."""
        days = 0
        if " day" in runtime:  # "1 day, 2:00:00.5": str() of a timedelta of more than a day
            head, _, runtime = runtime.partition(", ")
            days = int(head.split()[0])
        hours, minutes, seconds = runtime.split(":")
        return _dt.timedelta(
            days=days, hours=int(hours), minutes=int(minutes), seconds=float(seconds)
        )

    def __str__(self) -> str:
        return json.dumps(
            {
                attr: str(getattr(self, attr))
                for attr in dir(self)
                if not attr.startswith("_") and not callable(getattr(self, attr))
            }
        )
