"""Submit: checking a batch of jobs, all or none, and registering its jobs.

:func:`check_batch` lists every problem of a batch (names, iteration counts,
resources that can never fit, unknown or cyclic dependencies) in one
:class:`JobDescriptionError`, and otherwise prepares each job: its interned
requirement or its iteration scheduler, and its parsed dependencies.
:func:`register` makes the QUEUED :class:`Job` record. The rest are pure
functions of job specs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeAlias

from ..model import JobDescriptionError, JobSpec, JobState
from ._itersched import plan
from ._records import CODE, ENTRY, Job
from ._resources import Requirement
from ._unfit import unfit_message

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = (
    "MAX_ITERATIONS",
    "Dep",
    "Prepared",
    "Sched",
    "check_batch",
    "find_cycles",
    "parse_dep",
    "register",
    "requirement",
    "resolve",
    "sched_min_req",
)

#: At most this many iterations in one job (a byte of state each: 1 GB).
MAX_ITERATIONS = 1_000_000_000
#: A parsed dependency: job name, iteration (or None), paired (``${it}``).
Dep: TypeAlias = tuple[str, int | None, bool]
#: An iteration scheduler: the amount of each next iteration, and whether it is nodes.
Sched: TypeAlias = tuple[Iterator[int], bool]
#: A checked job: its spec, requirement (None: per iteration, from the scheduler),
#: iteration scheduler, and dependencies.
Prepared: TypeAlias = tuple[JobSpec, Requirement | None, Sched | None, list[Dep]]

Q = JobState.QUEUED
_QUEUED_AT = ENTRY.pack


def check_batch(
    eng: Engine, specs: Sequence[JobSpec], unfit: dict[str, str] | None = None
) -> list[Prepared]:
    """Every job of ``specs``, prepared; or every problem of the batch.

    ``unfit``: where the jobs that can never fit go, by name, with why (they end
    FAILED, the rest of the batch runs); None: such a job is a problem of the batch.

    Raises:
        JobDescriptionError: a name is taken, a dependency is unknown or
            cyclic, a job can never fit the resources, ...; lists every problem.
    """
    problems: list[str] = []
    batch: dict[str, JobSpec] = {}
    for spec in specs:
        if spec.name in eng.jobs or spec.name in batch:
            problems.append(f"job {spec.name!r}: name: Job {spec.name} already exist")
        it = spec.iteration
        if it is not None and it.stop - it.start > MAX_ITERATIONS:
            # one byte of state per iteration, allocated at the first launch
            problems.append(
                f"job {spec.name!r}: iteration: {it.stop - it.start} "
                f"iterations, more than {MAX_ITERATIONS} in one job"
            )
        batch[spec.name] = spec
    out = []
    for spec in specs:
        if (
            problems
            and spec.iteration is not None
            and (spec.iteration.stop - spec.iteration.start > MAX_ITERATIONS)
        ):
            continue
        req, sched = None, None
        try:
            req, sched = resolve(eng, spec)
        except ValueError as e:
            problems.append(f"job {spec.name!r}: resources: {e}")
        else:
            problem = _fit_problem(eng, spec, req, unfit)
            if problem is not None:
                problems.append(problem)
        deps = _deps(eng, spec, batch, problems) if spec.dependencies else []
        out.append((spec, req, sched, deps))
    problems.extend(find_cycles(batch))
    if problems:
        raise JobDescriptionError(problems)
    return out


def _fit_problem(
    eng: Engine, spec: JobSpec, req: Requirement | None, unfit: dict[str, str] | None
) -> str | None:
    """Why ``spec`` can never get its resources, or None (also when it goes to ``unfit``)."""
    # from the spec, not req: a job with an iteration scheduler has no req
    crs = spec.resources.node_crs
    missing = set(crs) - eng.pool.consumables if crs else None
    if missing and unfit is None:
        return f"job {spec.name!r}: resources.nodeCrs: no node has {', '.join(sorted(missing))}"
    req = req if req is not None else sched_min_req(spec)
    # The nodes never change: one answer per distinct requirement.
    fit = eng._fit.get(req)
    if fit is None:
        fit = eng._fit[req] = eng.pool.can_ever_fit(req)
    if fit:
        return None
    if unfit is not None:
        unfit[spec.name] = unfit_message(spec.name, req, eng.pool)
        return None
    return f"Not enough resources for job {spec.name}"


def _deps(eng: Engine, spec: JobSpec, batch: dict[str, JobSpec], problems: list[str]) -> list[Dep]:
    """The dependencies of ``spec``, parsed; what is wrong with them goes to ``problems``."""
    prefix = f"job {spec.name!r}: dependencies.after"
    deps = []
    for dep in spec.dependencies.after if spec.dependencies else ():
        name, index, paired = parse_dep(dep)
        target = batch.get(name) or (eng.jobs[name].spec if name in eng.jobs else None)
        if target is None:
            problems.append(f"{prefix}: unknown job {name!r}")
            continue
        if index is not None or paired:
            it = target.iteration
            if it is None:
                problems.append(f"{prefix}: {dep!r}: job {name!r} has no iterations")
                continue
            if index is not None and not it.start <= index < it.stop:
                problems.append(f"{prefix}: {dep!r}: job {name!r} has no iteration {index}")
                continue
            mine = spec.iteration
            if paired and (mine is None or mine.start < it.start or mine.stop > it.stop):
                problems.append(
                    f"{prefix}: {dep!r}: needs iterations "
                    f"within {name!r}'s {it.start}..{it.stop - 1}"
                )
                continue
        deps.append((name, index, paired))
    return deps


def resolve(
    eng: Engine, spec: JobSpec, iterations: int | None = None
) -> tuple[Requirement | None, Sched | None]:
    """The interned requirement of ``spec``, or (None and) its iteration scheduler,
    sharing the pool among ``iterations`` (default: all of them).

    Raises:
        ValueError: the scheduler cannot give every iteration its minimum.
    """
    r = spec.resources
    pool = eng.pool
    for count, nodes in ((r.num_cores, False), (r.num_nodes, True)):
        if count is not None and count.scheduler is not None:
            if not nodes:
                total = pool.total_cores
            elif r.num_cores is None:  # whole nodes: the system core's node is never whole
                total = sum(1 for n in pool.nodes if pool.usable(n) == n.total)
            else:
                total = pool.total_nodes
            n = iterations or (len(spec.iteration) if spec.iteration else 1)
            s = count.scheduler
            return None, (plan(s.name, s.params, total, n, count.lower), nodes)
    req = requirement(spec, pool.largest_node)
    # One object per distinct requirement: less memory, and the bucket
    # lookup finds an identical key at once.
    return eng._reqs.setdefault(req, req), None


def register(
    eng: Engine,
    spec: JobSpec,
    req: Requirement | None,
    sched: Sched | None,
    now: float,
    emit: bool = True,
) -> Job:
    """The record of a checked job, QUEUED at ``now`` (published unless not ``emit``)."""
    it = spec.iteration
    job = Job(spec.name, spec, eng._seq, Q, bytearray(_QUEUED_AT(CODE[Q], now)), req)
    eng._seq += 1
    if it is not None:
        job.iterative = True
        job.start, job.stop, job.cursor = it.start, it.stop, it.start
    if sched is not None:
        job.sched, job.sched_nodes = sched
    eng.jobs[spec.name] = job
    eng.job_counts[Q] += 1
    if emit:
        eng._emit(job.name, None, Q, now)
    return job


def requirement(spec: JobSpec, largest_node: int | None = None) -> Requirement:
    """The allocation requirement of a job without an iteration scheduler.

    A ``threads`` job (one multi-threaded process) without ``numNodes`` gets
    its cores on one node when one node (of ``largest_node`` usable cores) can
    ever hold its minimum; the original may split them over nodes, where its
    process cannot use them. Larger, it is split as in the original.
    """
    r = spec.resources
    crs = tuple(sorted(r.node_crs.items())) if r.node_crs else ()
    nc, nn = r.num_cores, r.num_nodes
    if nn is None:
        if nc is None:
            return Requirement(1, 1, None, None, crs)
        if (
            spec.execution.model == "threads"
            and largest_node is not None
            and nc.lower <= largest_node
        ):  # one process: its cores on one node
            return Requirement(nc.lower, min(nc.upper or nc.lower, largest_node), 1, 1, crs)
        return Requirement(nc.lower, nc.upper or nc.lower, None, None, crs)
    nodes_hi = nn.upper or nn.lower
    if nc is None:
        return Requirement(0, 0, nn.lower, nodes_hi, crs)
    return Requirement(nc.lower, nc.upper or nc.lower, nn.lower, nodes_hi, crs)


def parse_dep(dep: str) -> tuple[str, int | None, bool]:
    """``a`` -> (a, None, False); ``a:3`` -> (a, 3, False); ``a:${it}`` -> (a, None, True)."""
    name, _, suffix = dep.partition(":")
    if not suffix:
        return name, None, False
    if suffix == "${it}":
        return name, None, True
    return name, int(suffix), False


def sched_min_req(spec: JobSpec) -> Requirement:
    """The least one iteration of a job with an iteration scheduler can get."""
    base = requirement(spec)
    r = spec.resources
    if r.num_nodes is not None and r.num_nodes.scheduler is not None:
        lo = r.num_nodes.lower
        return Requirement(base.cores_lo, base.cores_hi, lo, lo, base.crs)
    lo = r.num_cores.lower if r.num_cores is not None else 1
    return Requirement(lo, lo, base.nodes_lo, base.nodes_hi, base.crs)


def find_cycles(batch: dict[str, JobSpec]) -> list[str]:
    """One problem per dependency cycle among the jobs of ``batch`` (no recursion: long chains)."""
    # Only jobs with dependencies inside the batch can be on a cycle.
    graph: dict[str, list[str]] = {}
    for name, s in batch.items():
        if s.dependencies:
            inside = [d for d in (a.partition(":")[0] for a in s.dependencies.after) if d in batch]
            if inside:
                graph[name] = inside
    color = dict.fromkeys(batch, 0)
    found: list[str] = []
    for root in graph:
        if color[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = 1
                path.append(node)
            edges = graph.get(node, ())
            if i < len(edges):
                stack.append((node, i + 1))
                nxt = edges[i]
                if color[nxt] == 1:
                    cyc = [*path[path.index(nxt) :], nxt]
                    found.append(f"job {nxt!r}: dependencies.after: cycle {' -> '.join(cyc)}")
                elif color[nxt] == 0:
                    stack.append((nxt, 0))
            else:
                color[node] = 2
                path.pop()
    return found
