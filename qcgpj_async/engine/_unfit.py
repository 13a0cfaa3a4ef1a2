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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
        need += " with " + ", ".join(f"{n} {k}" for k, n in req.crs) + " per node"
    sizes = sorted({n.total for n in pool.nodes})
    count = len(pool.nodes)
    if len(sizes) == 1:
        has = f"{_plural(count, 'node')} x {_plural(sizes[0], 'core')}"
    else:
        has = f"{count} nodes of {', '.join(str(n.total) for n in pool.nodes)} cores"
    for key, _ in req.crs:
        most = max((n.crs_total.get(key, 0) for n in pool.nodes), default=0)
        has += f", at most {most} {key} per node"
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
