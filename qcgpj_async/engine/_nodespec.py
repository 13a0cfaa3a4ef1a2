"""The ``--nodes`` spec: the nodes of the pool, their cores and GPU ids, from text."""

from __future__ import annotations

import re

from ..model import JobDescriptionError
from ._gpus import split_spec

__all__ = ("MAX_CORES", "parse_nodes", "parse_nodes_gpus")

_NODE = re.compile(r"(?:([^:,\s]+):)?(\d+)")


#: The most cores :func:`parse_nodes` accepts (the pool keeps a few bytes per core).
MAX_CORES = 10_000_000


def parse_nodes(spec: str) -> list[tuple[str, int]]:
    """Parse a nodes spec like ``"4"``, ``"n1:2"``, ``"4,2,2"``, ``"n1:4,n2:4"``.

    Unnamed nodes are called ``n0, n1, ...`` by their position. GPU parts
    (``n1:4:gpu=0+1``) are allowed and left out: see :func:`parse_nodes_gpus`.

    Raises:
        JobDescriptionError: the spec is malformed.
    """
    return parse_nodes_gpus(spec)[0]


def parse_nodes_gpus(spec: str) -> tuple[list[tuple[str, int]], dict[str, tuple[str, ...]]]:
    """:func:`parse_nodes`, and the GPU ids of the nodes that have a GPU part:
    ``n1:4:gpu=0+1`` (ids ``0`` and ``1``), ``n1:4:gpus=2`` (two GPUs, ``0`` and
    ``1``), ``4:gpus=4`` (``n0``).

    Raises:
        JobDescriptionError: the spec is malformed.
    """
    out: list[tuple[str, int]] = []
    gpus: dict[str, tuple[str, ...]] = {}
    for i, raw in enumerate(spec.split(",")):
        item, ids = split_spec(raw)
        m = _NODE.fullmatch(item.strip())
        if m is None or int(m.group(2)) < 1:
            raise JobDescriptionError(
                [
                    f"nodes: invalid entry {raw!r} in {spec!r} "
                    "(expected [name:]cores[:gpu=ID+ID...|:gpus=N], cores >= 1)"
                ]
            )
        out.append((m.group(1) or f"n{i}", int(m.group(2))))
        if ids:
            gpus[out[-1][0]] = ids
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise JobDescriptionError([f"nodes: duplicate node name in {spec!r}"])
    total = sum(c for _, c in out)
    if total > MAX_CORES:  # each core has its slot in the pool's tables
        raise JobDescriptionError(
            [f"nodes: {total} cores in {spec!r}, more than the {MAX_CORES:,} one pilot manages"]
        )
    return out, gpus
