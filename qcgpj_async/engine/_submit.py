"""Submit-time helpers: requirements, dependency names, cycles.

Pure functions of job specs, used by :class:`~qcgpj_async.engine.Engine`
when it checks a batch.
"""

from __future__ import annotations

from ..model import JobSpec
from ._resources import Requirement

__all__ = ("find_cycles", "parse_dep", "requirement", "sched_min_req")


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
