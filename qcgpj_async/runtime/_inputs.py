"""What the Pilot takes in: the resources it discovers, and jobs in any of their accepted forms."""

from __future__ import annotations

import datetime as _dt
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..engine import GpuSetup, ResourcePool, parse_nodes, parse_nodes_gpus
from ..model import Jobs, JobSpec, job_to_std, jobs_from_std
from ._gpus import GpuArg, gpus_of

__all__ = (
    "GpuArg",
    "JobsLike",
    "as_specs",
    "discover",
    "local_nodes",
    "names_of",
    "node_gpus",
    "nodes_of",
    "pool_of",
    "request_variables",
    "slurm_resources",
)

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


def nodes_of(
    nodes: str | int | Iterable[tuple[str, int]] | None, resources: str
) -> list[tuple[str, int]]:
    """The ``Pilot(nodes=...)`` argument as ``(name, cores)`` pairs (None: discovered)."""
    if isinstance(nodes, (str, int)):  # 4 is "4": one node of 4 cores
        return parse_nodes(str(nodes))
    return discover(resources) if nodes is None else list(nodes)


def node_gpus(
    nodes: object,
    node_list: Sequence[tuple[str, int]],
    resources: str,
    gpus: GpuArg,
    vendor: str | None,
) -> tuple[dict[str, tuple[str, ...]], GpuSetup | None]:
    """The GPU ids of each node for ``Pilot(nodes=..., gpus=..., gpu_vendor=...)``,
    and how jobs see them: declared, else discovered where the nodes were (see
    ``_gpus``); nodes given by hand have only the GPUs declared.

    Raises:
        ValueError: malformed or unknown GPUs (``JobDescriptionError`` is one).
    """
    declared = parse_nodes_gpus(nodes)[1] if isinstance(nodes, str) else None
    discover = None
    if nodes is None:
        discover = "slurm" if slurm_resources(nodes, resources) else "host"
    names = [n for n, _ in node_list]
    return gpus_of(gpus, names, declared=declared, discover=discover, vendor=vendor)


def pool_of(
    nodes: str | int | Iterable[tuple[str, int]] | None,
    resources: str,
    system_core: bool,
    crs: Mapping[str, Mapping[str, int]] | None,
    gpus: GpuArg,
    gpu_vendor: str | None,
) -> ResourcePool:
    """The pool of ``Pilot(nodes=..., gpus=...)``: its nodes and their GPUs.

    Raises:
        JobDescriptionError: malformed nodes or GPUs.
        ValueError: an unknown GPU vendor or node.
    """
    node_list = nodes_of(nodes, resources)
    gpu_ids, gpu = node_gpus(nodes, node_list, resources, gpus, gpu_vendor)
    return ResourcePool(node_list, system_core=system_core, crs=crs, gpus=gpu_ids, gpu=gpu)


def slurm_resources(nodes: object, resources: str) -> bool:
    """Whether the resources are those of the Slurm allocation this process runs in."""
    return nodes is None and (
        resources == "slurm" or (resources == "auto" and bool(os.environ.get("SLURM_JOB_ID")))
    )


def request_variables(rcnt: int, now: float) -> dict[str, str]:
    """The variables of a submit request (``${rcnt}``, ``${uniq}``, ``${date}``...)."""
    stamp = _dt.datetime.fromtimestamp(now)
    return {
        "rcnt": str(rcnt),
        "uniq": uuid.uuid4().hex,
        "sname": "local",
        "date": stamp.strftime("%Y-%m-%d"),
        "time": stamp.strftime("%H:%M:%S"),
        "dateTime": stamp.isoformat(),
    }


def as_specs(jobs: JobsLike, stds: list[dict[str, Any]] | None = None) -> list[JobSpec]:
    """The validated models of a submit's jobs.

    A :class:`JobSpec` built by hand is checked as a dict is (through its
    standard form): attrs does not check what the format forbids. ``stds``,
    when given, receives the standard dict of each job, in order, where the
    check made one (dicts and lists); it stays empty for a :class:`Jobs`.

    Raises:
        JobDescriptionError: every problem of every job, each naming the job (or
            its index in the batch) and the field.
    """
    if isinstance(jobs, Jobs):
        return jobs.jobs()  # checked as they were added
    if isinstance(jobs, Mapping):
        items: list[Any] = [dict(jobs)]
    else:
        items = [jobs] if isinstance(jobs, JobSpec) else list(jobs)
    # Raw items may be anything, None included (a JSON null).
    return jobs_from_std([job_to_std(j) if isinstance(j, JobSpec) else j for j in items], stds)


def names_of(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)
