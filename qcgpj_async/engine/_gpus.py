"""GPU device ids of the nodes: how they are declared, and how jobs are shown them.

A node's GPUs are the consumable ``gpu`` with ids: ``("0", "1", "2", "3")``,
or whatever the node names them (Slurm's GRES indexes, UUIDs). The pool gives
each job N specific ids on each of its nodes (``NodePart.gpus``); this module
holds the pure parts around that: the ids of a node from what was declared,
the GPU items of a ``--nodes`` spec, and :class:`GpuSetup` (which variables a
job gets, whether Slurm steps ask for GRES).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from ..model import JobDescriptionError

__all__ = ("VENDORS", "GpuSetup", "node_gpu_ids", "parse_gpu_ids", "split_spec")

#: GPU vendors: which variables name a job's devices (see :class:`GpuSetup`).
VENDORS = ("nvidia", "amd")

# A GPU id: no separator of the specs it is written in, no whitespace.
_GPU_ID = re.compile(r"[^,\[\]\s:=+]+")


@attrs.frozen
class GpuSetup:
    """How the pilot's GPUs are shown to jobs.

    Attributes:
        vendor: ``nvidia``: ``CUDA_VISIBLE_DEVICES`` names the job's ids;
            ``amd``: ``ROCR_VISIBLE_DEVICES`` names them, and
            ``HIP_VISIBLE_DEVICES``/``CUDA_VISIBLE_DEVICES`` count them from 0
            (HIP numbers the devices ROCr lets it see).
        gres: the GPUs are Slurm GRES of the allocation: every srun step asks
            for its GPUs (``--gres=gpu:N``, ``--gres=none`` for none) and Slurm
            sets the step's device variables on each node.
        source: where the ids came from (``declared``, ``CUDA_VISIBLE_DEVICES``,
            ``nvidia-smi``, ``rocm-smi``, ``slurm``), for the log.
    """

    vendor: str = "nvidia"
    gres: bool = False
    source: str = "declared"


def parse_gpu_ids(text: str, where: str = "gpus") -> tuple[str, ...]:
    """``"0,1,2,3"`` (or ``"0+1"``, as in a ``--nodes`` item) -> the ids.

    Raises:
        JobDescriptionError: an empty id, a malformed one, or one given twice.
    """
    items = [t.strip() for t in re.split(r"[,+]", text)] if text.strip() else []
    bad = [t for t in items if not _GPU_ID.fullmatch(t)]
    if bad:
        raise JobDescriptionError([f"{where}: invalid GPU id {bad[0]!r} in {text!r}"])
    if len(set(items)) != len(items):
        raise JobDescriptionError([f"{where}: a GPU id given twice in {text!r}"])
    return tuple(items)


def node_gpu_ids(name: str, crs: Mapping[str, int], ids: Iterable[str] | None) -> tuple[str, ...]:
    """The GPU ids of node ``name``: ``ids`` as given, else ``"0".."N-1"`` for a
    ``gpu`` count of N among its consumables ``crs``.

    Raises:
        JobDescriptionError: an id twice, a bad id, or a count that disagrees.
    """
    if ids is None:
        return tuple(str(i) for i in range(crs.get("gpu", 0)))
    out = tuple(str(i) for i in ids)
    where = f"gpus of node {name}"
    bad = [i for i in out if not _GPU_ID.fullmatch(i)]
    if bad:
        raise JobDescriptionError([f"{where}: invalid GPU id {bad[0]!r}"])
    if len(set(out)) != len(out):
        raise JobDescriptionError([f"{where}: a GPU id given twice: {', '.join(out)}"])
    if "gpu" in crs and crs["gpu"] != len(out):
        raise JobDescriptionError(
            [f"{where}: {len(out)} ids ({', '.join(out)}) but a gpu count of {crs['gpu']}"]
        )
    return out


def split_spec(item: str) -> tuple[str, tuple[str, ...] | None]:
    """One ``--nodes`` item without its GPU part, and that part's ids.

    ``n1:4:gpu=0+1`` -> (``n1:4``, (``0``, ``1``)): the ids, ``+`` between them;
    ``n1:4:gpus=2`` -> (``n1:4``, (``0``, ``1``)): a count; ``n1:4`` -> (``n1:4``, None).

    Raises:
        JobDescriptionError: a malformed GPU part.
    """
    text = item.strip()
    for key in (":gpu=", ":gpus="):
        head, sep, value = text.rpartition(key)
        if not sep:
            continue
        where = f"nodes: {text!r}"
        if key == ":gpus=":
            if not value.strip().isdigit():
                raise JobDescriptionError([f"{where}: gpus= takes a count, not {value!r}"])
            return head, tuple(str(i) for i in range(int(value)))
        if not value.strip():
            raise JobDescriptionError([f"{where}: gpu= takes ids (0+1+...), none given"])
        return head, parse_gpu_ids(value, where)
    return item, None
