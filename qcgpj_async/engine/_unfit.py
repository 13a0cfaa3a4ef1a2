"""A job whose minimum can never fit the pilot's resources ends FAILED, with the numbers.

As the original's documentation says ("If the minimal resource requirements
are greater than total available resources the job is removed from the
queue with the FAILED status"): such a job is no reason to reject the rest
of its request. The message starts with the original's phrase (tools match
on it) and gives what the job needs and what the pilot has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..model import FINAL_STATES, JobState
from ._lifecycle import end_queued_iterations, job_state
from ._resources import Requirement, ResourcePool

if TYPE_CHECKING:
    from ._engine import Engine
    from ._records import Job

__all__ = ("fail_unfit", "lose_node", "unfit_message")


#: Why a pilot has none of a consumable, said after "no gpu".
_NONE_WHY = {
    "gpu": " (none declared by --gpus, --nodes NAME:CORES:gpu=IDS or Pilot(gpus=...), "
    "nor found on the host or in the Slurm allocation)",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


#: How consumables are named in messages (``mem`` as it is).
_WORD = {"gpu": "GPU"}


def _amount(n: int, key: str) -> str:
    return _plural(n, "GPU") if key == "gpu" else f"{n} {key}"


def unfit_message(name: str, req: Requirement, pool: ResourcePool) -> str:
    """``Not enough resources for job big: needs 6 cores on 1 node; the pilot has
    2 nodes x 2 cores, 1 kept by --system-core``."""
    if req.nodes_lo is None:
        need = _plural(req.cores_lo, "core")
    elif req.cores_lo == 0:
        need = f"{_plural(req.nodes_lo, 'whole node')}"
    elif req.nodes_lo == 1:
        need = f"{_plural(req.cores_lo, 'core')} on 1 node"
    else:
        need = f"{_plural(req.cores_lo, 'core')} on each of {req.nodes_lo} nodes"
    if req.crs:
        need += " with " + ", ".join(_amount(n, k) for k, n in req.crs) + " per node"
    sizes = sorted({n.total for n in pool.nodes})
    count = len(pool.nodes)
    if len(sizes) == 1:
        has = f"{_plural(count, 'node')} x {_plural(sizes[0], 'core')}"
    else:
        has = f"{count} nodes of {', '.join(str(n.total) for n in pool.nodes)} cores"
    for key, _ in req.crs:
        most = max((n.crs_total.get(key, 0) for n in pool.nodes), default=0)
        if not most:
            has += f", no {_WORD.get(key, key)}" + _NONE_WHY.get(key, "")
        else:
            with_it = sum(1 for n in pool.nodes if n.crs_total.get(key, 0))
            where = "" if with_it == count else f" on {_plural(with_it, 'node')} of {count}"
            has += f", at most {_amount(most, key)} per node{where}"
    if pool.system_core:
        has += ", 1 kept by --system-core"
    return f"Not enough resources for job {name}: needs {need}; the pilot has {has}"


def fail_unfit(eng: Engine, jobs: Iterable[Job], unfit: Mapping[str, str], now: float) -> None:
    """End each just registered job named in ``unfit`` FAILED, with its reason (its
    iterations OMITTED: none can run); its dependants then end OMITTED."""
    for job in jobs:
        why = unfit.get(job.name)
        if why is None or job.state in FINAL_STATES:  # omitted already: a dependency failed
            continue
        job.waiting = 0
        job.messages = [why]
        if job.iterative:
            end_queued_iterations(eng, job, JobState.OMITTED, now)
        else:
            job.done = job.failed = 1
        job_state(eng, job, JobState.FAILED, now)
        eng._finished.append((job, None))


def lose_node(eng: Engine, name: str, why: str, now: float) -> int:
    """Node ``name`` is lost: its cores leave the pool for good (those of its runs as
    they end); a queued job that can no longer ever fit, and runs nothing, ends
    FAILED with ``why`` and the numbers. Returns the cores lost."""
    lost = eng.pool.take_out(name)
    if not lost:
        return 0
    eng._fit.clear()  # the nodes changed: every requirement is checked again
    pool, unfit, jobs = eng.pool, {}, []
    for heap in eng._buckets.values():
        for _, job in heap:
            if job.state in FINAL_STATES or job.active or job.name in unfit:
                continue
            req = job.req
            if req is not None and not pool.can_ever_fit(req):
                unfit[job.name] = f"{why}; {unfit_message(job.name, req, pool)}"
                jobs.append(job)
    fail_unfit(eng, jobs, unfit, now)
    return lost
