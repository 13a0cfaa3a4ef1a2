"""What the Pilot takes in: the resources it discovers, and jobs in any of their accepted forms."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from ..model import Jobs, JobSpec, job_from_std, jobs_from_std

__all__ = ("JobsLike", "as_specs", "discover", "local_nodes", "names_of")

JobsLike = Jobs | JobSpec | Mapping[str, Any] | Iterable[JobSpec | Mapping[str, Any]]


def local_nodes() -> list[tuple[str, int]]:
    """This host, with all its cores (the ones this process may use)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return [(socket.gethostname(), cores)]


def discover(resources: str) -> list[tuple[str, int]]:
    if resources not in ("auto", "local", "slurm"):
        raise ValueError(f"resources {resources!r}: one of auto, local, slurm")
    if resources == "slurm" or (resources == "auto" and os.environ.get("SLURM_JOB_ID")):
        from ..executors import _slurm_env

        return _slurm_env.discover(os.environ)
    return local_nodes()


def as_specs(jobs: JobsLike) -> list[JobSpec]:
    if isinstance(jobs, Jobs):
        return jobs.jobs()
    if isinstance(jobs, JobSpec):
        return [jobs]
    if isinstance(jobs, Mapping):
        return [job_from_std(dict(jobs))]
    items = list(jobs)
    if all(isinstance(j, JobSpec) for j in items):
        return items  # type: ignore[return-value]
    # Raw items may be anything, None included (a JSON null): only specs pass as they are.
    checked = iter(jobs_from_std([j for j in items if not isinstance(j, JobSpec)]))
    return [j if isinstance(j, JobSpec) else next(checked) for j in items]


def names_of(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)
