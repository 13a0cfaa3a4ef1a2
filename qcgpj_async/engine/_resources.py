"""The resource pool: nodes with numbered cores and per-node consumables.

Allocation rules follow the original:

* cores only: the lowest free core ids, node by node (may span nodes), as
  many as are free up to the maximum;
* nodes only: whole unused nodes (all their cores);
* both: on each node with at least ``min`` free cores take up to ``max``,
  until ``max`` nodes.

The common case (cores only, no consumables) is O(log n) per allocation:
nodes with free cores sit in a heap by index, each node's free cores in a
heap by id, and "does it fit" is a comparison with a counter. Placing a
job on nodes (``numNodes``, no consumables) does not walk the nodes either:
the nodes that can hold ``c`` cores each (or are whole and free) are in a
heap by index too, one heap per distinct ``c``, made at its first use (see
:meth:`ResourcePool._on_nodes`), and the part of a whole node, or of one core,
is made once per node. Consumables keep the walk over the nodes.

GPUs are the consumable ``gpu`` with device ids: each node knows its ids
(``"0"``, ``"1"``... or whatever the node names them), and an allocation that
takes N gpus on a node takes N of its free ids, the lowest first (see
``_gpus``). Nodes without GPUs come first in every heap and walk (their
"rank"; the same as the index where no node has GPUs), so a job that asks no
GPU takes the cores of a GPU node only once the other nodes are full: the
cores of GPU nodes stay for the GPU jobs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..model import JobDescriptionError
from ._gpus import GpuSetup, node_gpu_ids
from ._nodespec import parse_nodes, parse_nodes_gpus

__all__ = (
    "Allocation",
    "GpuSetup",
    "Node",
    "NodePart",
    "Requirement",
    "ResourcePool",
    "parse_nodes",
    "parse_nodes_gpus",
)


@attrs.define(eq=False)
class Node:
    """One node of the allocation (mutable engine record)."""

    index: int
    name: str
    total: int
    free: list[int]
    crs_total: dict[str, int] = attrs.Factory(dict)
    crs_free: dict[str, int] = attrs.Factory(dict)
    in_heap: bool = False
    #: Taken out of the pool for good (:meth:`ResourcePool.take_out`).
    lost: bool = False
    # The one-core allocation of each core, made once: allocations are
    # immutable, and the most common job takes one core.
    singles: list[Allocation | None] = attrs.Factory(list)
    #: The node's GPU device ids, and which are free (a heap of their positions).
    gpu_ids: tuple[str, ...] = ()
    gpu_free: list[int] = attrs.Factory(list)
    #: Position in the order nodes are taken in (nodes without GPUs first).
    rank: int = 0
    #: The part of an allocation of the whole node, and of each core (no
    #: consumables), made once.
    whole: NodePart | None = None
    ones: list[NodePart | None] = attrs.Factory(list)

    @property
    def free_count(self) -> int:
        """Cores free now."""
        return len(self.free)


@attrs.frozen
class NodePart:
    """The share of one node in an allocation."""

    node: str
    cores: tuple[int, ...]  # ascending
    crs: Mapping[str, int] | None = None
    index: int = 0
    #: The GPU device ids given to the job on this node (``crs["gpu"]`` of them).
    gpus: tuple[str, ...] = ()


@attrs.frozen
class Allocation:
    """The cores (and consumables) given to one job iteration."""

    parts: tuple[NodePart, ...]

    @property
    def cores(self) -> int:
        """Number of cores in all nodes."""
        parts = self.parts
        if len(parts) == 1:  # most jobs (read per job: no generator)
            return len(parts[0].cores)
        return sum(len(p.cores) for p in parts)

    @property
    def nodes(self) -> list[str]:
        """Node names, in allocation order."""
        return [p.node for p in self.parts]

    @property
    def has_gpus(self) -> bool:
        """Whether GPU devices are part of it (on any node)."""
        return any(p.gpus for p in self.parts)

    def __str__(self) -> str:
        parts = self.parts
        if len(parts) == 1 and len(parts[0].cores) == 1:  # a one-core job (no generator)
            return f"{parts[0].node}[{parts[0].cores[0]}]"
        return ",".join(f"{p.node}[{':'.join(map(str, p.cores))}]" for p in parts)


@attrs.frozen
class Requirement:
    """What one iteration needs, reduced to what allocation looks at.

    ``nodes_lo is None``: cores anywhere (``cores_lo..cores_hi`` in total).
    ``cores_lo == 0``: whole nodes. Otherwise ``cores_lo..cores_hi`` cores on
    each of ``nodes_lo..nodes_hi`` nodes.
    """

    cores_lo: int = 1
    cores_hi: int = 1
    nodes_lo: int | None = None
    nodes_hi: int | None = None
    crs: tuple[tuple[str, int], ...] = ()


class ResourcePool:
    """Nodes, their free cores and consumables; allocation and release."""

    def __init__(
        self,
        nodes: Iterable[tuple[str, int]],
        *,
        system_core: bool = False,
        crs: Mapping[str, Mapping[str, int]] | None = None,
        gpus: Mapping[str, Iterable[str]] | None = None,
        gpu: GpuSetup | None = None,
    ) -> None:
        """Create the pool.

        Args:
            nodes: ``(name, cores)`` pairs.
            system_core: reserve core 0 of the first node for the manager.
            crs: consumables per node name, e.g. ``{"n0": {"gpu": 2}}`` (2 GPUs
                with ids ``"0"`` and ``"1"``, unless ``gpus`` names them).
            gpus: GPU device ids per node name, e.g. ``{"n0": ["0", "1"]}``.
            gpu: how jobs are shown their GPUs (vendor, Slurm GRES); the default
                when any node has GPUs: NVIDIA's variables, no GRES.

        Raises:
            JobDescriptionError: no nodes, GPUs of an unknown node, an id twice on
                a node, or a ``gpu`` count that disagrees with the ids given.
        """
        self.nodes: list[Node] = []
        crs, gpus = crs or {}, gpus or {}
        nodes = list(nodes)
        names = {name for name, _ in nodes}
        unknown = sorted(set(gpus) - names)
        if unknown:
            raise JobDescriptionError([f"gpus: no such node: {', '.join(unknown)}"])
        for i, (name, cores) in enumerate(nodes):
            node_crs = dict(crs.get(name, {}))
            ids = node_gpu_ids(name, node_crs, gpus.get(name))
            if ids:
                node_crs["gpu"] = len(ids)
            node = Node(i, name, cores, list(range(cores)), node_crs, dict(node_crs))
            node.gpu_ids, node.gpu_free = ids, list(range(len(ids)))
            self.nodes.append(node)
        if not self.nodes:
            raise JobDescriptionError(["nodes: no nodes given"])
        #: The nodes in the order they are taken in: those without GPUs first.
        self.order = sorted(self.nodes, key=lambda n: (bool(n.gpu_ids), n.index))
        for r, n in enumerate(self.order):
            n.rank = r
        self.total_gpus = sum(len(n.gpu_ids) for n in self.nodes)
        self.gpu = gpu if gpu is not None or not self.total_gpus else GpuSetup()
        self.system_core = system_core
        if system_core:
            heapq.heappop(self.nodes[0].free)
        self.total_cores = sum(len(n.free) for n in self.nodes)
        self.free_cores = self.total_cores
        self._heap: list[int] = []  # ranks (see ``order``), as every node heap
        for n in self.order:
            if n.free:
                n.in_heap = True
                self._heap.append(n.rank)
        self.consumables = frozenset(k for n in self.nodes for k in n.crs_total)
        self.largest_node = max(len(n.free) for n in self.nodes)  # usable cores
        # Cores asked per node (0: whole nodes) -> heap of the ranks of the nodes
        # that can hold that now, and whether each node (by index) is in it. Every
        # node that can is in its heap (a release pushes it) or among the nodes
        # ``_found`` for it; one that no longer can is dropped when a placement
        # meets it (an allocation never walks the heaps).
        self._by_need: dict[int, tuple[list[int], bytearray]] = {}
        self._no_whole = 0 if system_core else -1  # the index of the node never whole
        # The nodes of the last such placement (out of their heap), and the free
        # cores then: the same requirement placed again (fits, then allocate) finds
        # the same nodes while they can still hold it (surely: nothing was allocated
        # since) and no release made a lower one able to (a release puts them back).
        self._found: tuple[Requirement, list[Node], int] | None = None

    @property
    def total_nodes(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def used_cores(self) -> int:
        """Cores allocated now."""
        return self.total_cores - self.free_cores

    def summary(self) -> str:
        """``2 nodes, 8 cores, 2 GPUs (nvidia-smi, nvidia; n1: 0,1)``, for the log."""
        out = f"{self.total_nodes} nodes, {self.total_cores} cores"
        if self.gpu is None:
            return out
        ids = "; ".join(f"{n.name}: {','.join(n.gpu_ids)}" for n in self.nodes if n.gpu_ids)
        return f"{out}, {self.total_gpus} GPUs ({self.gpu.source}, {self.gpu.vendor}; {ids})"

    @property
    def free_gpus(self) -> int:
        """GPU devices free now (on all nodes)."""
        return sum(len(n.gpu_free) for n in self.nodes)

    def usable(self, node: Node) -> int:
        """Cores of ``node`` that jobs can ever get (the system core excluded; none
        once it is lost)."""
        if node.lost:
            return 0
        return node.total - (1 if self.system_core and node.index == 0 else 0)

    def take_out(self, name: str) -> int:
        """Take node ``name`` out of the pool for good (it was lost): its free cores
        now, its other cores as their runs end (:meth:`release` skips them).

        Returns:
            How many cores the pool loses (0: unknown, or out already).
        """
        node = next((n for n in self.nodes if n.name == name), None)
        if node is None or node.lost:
            return 0
        usable = self.usable(node)
        node.lost = True
        self.free_cores -= len(node.free)
        self.total_cores -= usable
        node.free.clear()
        node.crs_free = dict.fromkeys(node.crs_free, 0)
        self._unhold()
        self.largest_node = max((self.usable(n) for n in self.nodes), default=0)
        return usable

    def _whole_free(self, node: Node) -> bool:
        return len(node.free) == self.usable(node) and node.crs_free == node.crs_total

    def _crs_ok(self, node: Node, crs: tuple[tuple[str, int], ...]) -> bool:
        return all(node.crs_free.get(k, 0) >= n for k, n in crs)

    # -- checks at submit time -------------------------------------------------

    def can_ever_fit(self, req: Requirement) -> bool:
        """Whether ``req``'s minimum fits the pool when it is completely free."""
        ok = [n for n in self.nodes if all(n.crs_total.get(k, 0) >= c for k, c in req.crs)]
        if req.nodes_lo is None:
            return sum(self.usable(n) for n in ok) >= req.cores_lo
        if req.cores_lo == 0:
            whole = [n for n in ok if self.usable(n) == n.total]
            return len(whole) >= req.nodes_lo
        return sum(1 for n in ok if self.usable(n) >= req.cores_lo) >= req.nodes_lo

    # -- allocation ------------------------------------------------------------

    def fits(self, req: Requirement) -> bool:
        """Whether ``req``'s minimum can be allocated now."""
        if not req.crs:
            if req.nodes_lo is None:
                return self.free_cores >= req.cores_lo
            return self.free_cores > 0 and self._on_nodes(req) is not None
        if self.free_cores == 0:
            return False
        return self._plan(req) is not None

    def allocate(self, req: Requirement) -> Allocation | None:
        """Allocate for ``req`` (as much as is free up to its maximum), or None."""
        if not req.crs:
            if req.nodes_lo is None:
                return self._allocate_cores(req.cores_lo, req.cores_hi)
            return self._allocate_nodes(req)
        plan = self._plan(req)
        if plan is None:
            return None
        parts = []
        for node, ncores in plan:
            free = node.free
            if ncores == len(free):  # all of them: no pop per core
                cores = tuple(sorted(free))
                free.clear()
            else:
                cores = tuple(heapq.heappop(free) for _ in range(ncores))
            gpus: tuple[str, ...] = ()
            for k, n in req.crs:
                node.crs_free[k] -= n
                if k == "gpu" and node.gpu_ids:
                    taken = sorted(heapq.heappop(node.gpu_free) for _ in range(n))
                    gpus = tuple(node.gpu_ids[g] for g in taken)
            parts.append(NodePart(node.name, cores, dict(req.crs), node.index, gpus))
            self.free_cores -= ncores
        return Allocation(tuple(parts))

    def _allocate_nodes(self, req: Requirement) -> Allocation | None:
        """:meth:`allocate` on ``nodes_lo..nodes_hi`` nodes without consumables."""
        found = self._on_nodes(req)
        if found is None:
            return None
        hi = req.cores_hi if req.cores_lo else 0  # 0: whole nodes (all their cores)
        parts = []
        taken = 0
        pop = heapq.heappop
        for node in found:
            free = node.free
            n = min(len(free), hi) if hi else len(free)
            if n == 1:  # one core: its part is made once
                core = pop(free)
                one = node.ones[core] if node.ones else None
                part = one or self._one_part(node, core)
            elif n == node.total:  # the whole node: its part is made once
                part = node.whole or self._whole_part(node)
                free.clear()
            elif n == len(free):  # all of them: no pop per core
                part = NodePart(node.name, tuple(sorted(free)), None, node.index)
                free.clear()
            else:  # the lowest ids
                part = NodePart(node.name, tuple(pop(free) for _ in range(n)), None, node.index)
            taken += n
            parts.append(part)
        self.free_cores -= taken
        return Allocation(tuple(parts))

    @staticmethod
    def _whole_part(node: Node) -> NodePart:
        node.whole = NodePart(node.name, tuple(range(node.total)), None, node.index)
        return node.whole

    @staticmethod
    def _one_part(node: Node, core: int) -> NodePart:
        if not node.ones:
            node.ones.extend([None] * node.total)
        part = node.ones[core] = NodePart(node.name, (core,), None, node.index)
        return part

    def _allocate_cores(self, lo: int, hi: int) -> Allocation | None:
        if self.free_cores < lo:
            return None
        want = min(hi, self.free_cores)
        if want == 1:
            return self._allocate_one()
        self.free_cores -= want
        parts = []
        heap, nodes = self._heap, self.order
        while want:
            node = nodes[heap[0]]
            if not node.free:
                heapq.heappop(heap)
                node.in_heap = False
                continue
            free = node.free
            if len(free) <= want:
                cores = tuple(sorted(free))
                free.clear()
                heapq.heappop(heap)
                node.in_heap = False
            elif want == 1:
                cores = (heapq.heappop(free),)
            else:
                cores = tuple(heapq.heappop(free) for _ in range(want))
            want -= len(cores)
            parts.append(NodePart(node.name, cores, None, node.index))
        return Allocation(tuple(parts))

    def _allocate_one(self) -> Allocation:
        self.free_cores -= 1
        heap, nodes = self._heap, self.order
        node = nodes[heap[0]]
        while not node.free:
            heapq.heappop(heap)
            node.in_heap = False
            node = nodes[heap[0]]
        free = node.free
        core = heapq.heappop(free)
        if not free:
            heapq.heappop(heap)
            node.in_heap = False
        return _single(node, core)

    def allocate_on(self, index: int) -> Allocation | None:
        """One core of node ``index`` (its lowest free), or None: none free there."""
        node = self.nodes[index]
        if not node.free:
            return None
        self.free_cores -= 1
        return _single(node, heapq.heappop(node.free))  # the heaps drop it when they meet it

    def hand_over(self, alloc: Allocation, picks: Sequence[int]) -> list[Allocation]:
        """The cores at positions ``picks`` of one-node ``alloc``, one per allocation (to
        runs that take them over); the rest of ``alloc`` is released."""
        if not picks:  # each was given free cores already
            self.release(alloc)
            return []
        part = alloc.parts[0]
        node = self.nodes[part.index]
        cores = part.cores
        taken = [_single(node, cores[i]) for i in picks]
        if len(picks) < len(cores) or part.crs:
            rest = tuple(c for i, c in enumerate(cores) if i not in picks)
            self.release(Allocation((attrs.evolve(part, cores=rest),)))
        return taken

    def _plan(self, req: Requirement) -> list[tuple[Node, int]] | None:
        """Which nodes and how many cores on each, for a non-trivial requirement."""
        plan: list[tuple[Node, int]] = []
        if req.nodes_lo is None:  # cores anywhere, on nodes that have the consumables
            want = req.cores_hi
            got = 0
            for node in self.order:
                if node.free and self._crs_ok(node, req.crs):
                    take = min(len(node.free), want - got)
                    plan.append((node, take))
                    got += take
                    if got == want:
                        break
            return plan if got >= req.cores_lo else None
        nodes_hi = req.nodes_hi if req.nodes_hi is not None else req.nodes_lo
        for node in self.order:
            if not self._crs_ok(node, req.crs):
                continue
            if req.cores_lo == 0:
                if self._whole_free(node) and self.usable(node) == node.total:
                    plan.append((node, len(node.free)))
            elif len(node.free) >= req.cores_lo:
                plan.append((node, min(len(node.free), req.cores_hi)))
            if len(plan) == nodes_hi:
                break
        return plan if len(plan) >= req.nodes_lo else None

    def _on_nodes(self, req: Requirement) -> list[Node] | None:
        """The nodes of a placement of ``nodes_lo..nodes_hi`` nodes without
        consumables: the lowest-rank nodes that can hold ``cores_lo`` each (or are
        whole and free), as the walk over the nodes would find them, from their heap."""
        last = self._found
        if last is not None and last[0] is req:
            if last[2] == self.free_cores:  # nothing was allocated since
                return last[1]
            if self._all_fit(last[1], req.cores_lo):
                self._found = (req, last[1], self.free_cores)
                return last[1]
        return self._find_nodes(req)

    def _find_nodes(self, req: Requirement) -> list[Node] | None:
        """The lowest-rank nodes (up to ``nodes_hi``) that can hold ``cores_lo`` each,
        out of their heap while they are the nodes ``_found``."""
        self._unhold()
        need, lo = req.cores_lo, req.nodes_lo
        assert lo is not None
        index = self._by_need.get(need)
        if index is None:  # flags by node index, heap of ranks
            flags = bytearray(self._fits_need(n, need) for n in self.nodes)
            index = self._by_need[need] = ([n.rank for n in self.order if flags[n.index]], flags)
        heap, flags = index
        want = req.nodes_hi if req.nodes_hi is not None else lo
        nodes, fits, pop = self.order, self._fits_need, heapq.heappop
        found: list[Node] = []
        while heap and len(found) < want:
            node = nodes[pop(heap)]
            if fits(node, need):
                found.append(node)
            else:
                flags[node.index] = 0
        if len(found) < lo:
            for node in found:
                heapq.heappush(heap, node.rank)
            return None
        self._found = (req, found, self.free_cores)
        return found

    def _unhold(self) -> None:
        """The nodes ``_found`` go back to their heap, or out of it (flag 0) where
        they can no longer hold what they were found for."""
        last = self._found
        if last is not None:
            self._found = None
            need = last[0].cores_lo
            heap, flags = self._by_need[need]
            for node in last[1]:
                if self._fits_need(node, need):
                    heapq.heappush(heap, node.rank)
                else:
                    flags[node.index] = 0

    def _all_fit(self, found: list[Node], need: int) -> bool:
        """Whether every node of ``found`` can still hold ``need`` cores (0: whole)."""
        if need:
            return all(len(node.free) >= need for node in found)
        return all(self._fits_need(node, 0) for node in found)

    def _fits_need(self, node: Node, need: int) -> bool:
        """Whether ``node`` can hold ``need`` cores now (0: is whole, free and usable)."""
        n = len(node.free)
        if need:
            return n >= need
        return n == node.total and node.crs_free == node.crs_total and node.index != self._no_whole

    def release(self, alloc: Allocation) -> None:
        """Give an allocation's cores and consumables back."""
        by_need, nodes = self._by_need, self.nodes
        if by_need:
            self._unhold()
        for part in alloc.parts:
            node = nodes[part.index]
            if node.lost:  # its cores never come back
                continue
            free, cores = node.free, part.cores
            if free:
                for c in cores:
                    heapq.heappush(free, c)
            else:  # ascending (as every allocation makes them): a heap as they are
                free.extend(cores)
            if part.crs:
                for k, n in part.crs.items():
                    node.crs_free[k] += n
                for g in part.gpus:
                    heapq.heappush(node.gpu_free, node.gpu_ids.index(g))
            self.free_cores += len(cores)
            if not node.in_heap:
                node.in_heap = True
                heapq.heappush(self._heap, node.rank)
            if by_need:
                i = node.index
                for need, (heap, flags) in by_need.items():
                    if not flags[i] and (len(free) >= need if need else self._fits_need(node, 0)):
                        flags[i] = 1
                        heapq.heappush(heap, node.rank)


def _single(node: Node, core: int) -> Allocation:
    """The one-core allocation of ``core`` of ``node`` (made once: allocations are immutable)."""
    singles = node.singles
    if not singles:
        singles.extend([None] * node.total)
    alloc = singles[core]
    if alloc is None:
        alloc = singles[core] = Allocation((NodePart(node.name, (core,), None, node.index),))
    return alloc
