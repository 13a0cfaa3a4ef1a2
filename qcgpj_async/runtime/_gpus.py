"""The GPUs of the pilot's nodes: declared, or discovered on the host or in Slurm.

In order of precedence:

1. declared: ``Pilot(gpus=...)`` / ``--gpus 0,1,2,3`` (every node), or per node
   in the nodes spec (``n1:4:gpu=0+1``, ``n1:4:gpus=2``); ``gpus=()`` or
   ``--gpus none``: no GPUs, nothing probed;
2. nodes given by hand (``nodes=`` / ``--nodes``) and nothing declared: no GPUs;
3. inside a Slurm allocation: the job's GPU GRES per node, from ``scontrol show
   job -d`` (``GRES=gpu:2(IDX:0-1)`` on each node's line), else
   ``SLURM_JOB_GPUS`` (every node), else ``ROCR_VISIBLE_DEVICES`` /
   ``CUDA_VISIBLE_DEVICES`` of the allocation (every node);
4. on this host: ``ROCR_VISIBLE_DEVICES`` or ``CUDA_VISIBLE_DEVICES`` where set
   (empty: none), else ``nvidia-smi -L``, else ``rocm-smi``, each only where
   installed and within :data:`PROBE_TIMEOUT`; nothing found: no GPUs.

Probing runs commands through an injectable ``runner`` (the one that expands
Slurm host lists), so tests pass fake ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..engine import VENDORS, GpuSetup, parse_gpu_ids
from ..executors._slurm_env import Runner, expand_hostlist

__all__ = (
    "PROBE_TIMEOUT",
    "GpuArg",
    "gpus_of",
    "host_gpus",
    "parse_scontrol_gres",
    "slurm_gpus",
)

#: Seconds granted to each probe (``nvidia-smi``, ``rocm-smi``, ``scontrol``).
PROBE_TIMEOUT = 10.0

#: What ``Pilot(gpus=...)`` takes: ids for every node (``"0,1"``, a sequence, a
#: count), or ids per node name.
GpuArg = str | int | Sequence[str] | Mapping[str, str | int | Sequence[str]] | None

Found = tuple[dict[str, tuple[str, ...]], GpuSetup | None]

# "GRES=gpu:2(IDX:0-1)", "GRES=gpu:a100:2(IDX:0,2-3),nic:1(IDX:0)"
_GRES_GPU = re.compile(r"(?:^|[=,])gpu(?::[^:(,=\s]+)?:\d+\(IDX:([^)]*)\)")
_NODES = re.compile(r"(?:^|\s)Nodes=(\S+)")
_NVIDIA = re.compile(r"^GPU (\d+):", re.MULTILINE)
_ROCM = re.compile(r"^GPU\[(\d+)\]", re.MULTILINE)


def _probe(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _ids_of(value: str | int | Sequence[str], where: str) -> tuple[str, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{where}: ids, a count or a list, not {value!r}")
    if isinstance(value, int):
        return tuple(str(i) for i in range(value))
    if isinstance(value, str):
        return () if value.strip().lower() == "none" else parse_gpu_ids(value, where)
    return tuple(str(v) for v in value)


def _env_ids(value: str) -> tuple[str, ...]:
    """Ids of a ``*_VISIBLE_DEVICES`` value (``NoDevFiles``, ``-1``, empty: none)."""
    ids = tuple(v.strip() for v in value.split(",") if v.strip())
    return () if not ids or ids[0] in ("NoDevFiles", "-1") else ids


def _env_gpus(env: Mapping[str, str]) -> tuple[tuple[str, ...], str] | None:
    for var, vendor in (("ROCR_VISIBLE_DEVICES", "amd"), ("CUDA_VISIBLE_DEVICES", "nvidia")):
        if var in env:
            return _env_ids(env[var]), vendor
    return None


def host_gpus(
    env: Mapping[str, str],
    runner: Runner = _probe,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[tuple[str, ...], GpuSetup | None]:
    """The GPUs of this host (see the module's docstring), and how jobs see them."""
    found = _env_gpus(env)
    if found is not None:
        var = "ROCR_VISIBLE_DEVICES" if found[1] == "amd" else "CUDA_VISIBLE_DEVICES"
        return found[0], GpuSetup(found[1], source=var) if found[0] else None
    for prog, argv, pattern, vendor in (
        ("nvidia-smi", ("nvidia-smi", "-L"), _NVIDIA, "nvidia"),
        ("rocm-smi", ("rocm-smi", "--showid"), _ROCM, "amd"),
    ):
        path = which(prog)
        if path is None:
            continue
        try:
            done = runner((path, *argv[1:]))
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            ids = tuple(dict.fromkeys(pattern.findall(done.stdout)))
            if ids:
                return ids, GpuSetup(vendor, source=prog)
    return (), None


def _expand_idx(text: str) -> list[str]:
    out: list[str] = []
    for item in text.split(","):
        lo, sep, hi = item.partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            out.extend(str(i) for i in range(int(lo), int(hi) + 1))
        elif item.strip():
            out.append(item.strip())
    return out


def parse_scontrol_gres(text: str, runner: Runner) -> dict[str, tuple[str, ...]]:
    """GPU GRES indexes per node from ``scontrol show job -d`` (``Nodes=n[1-2]
    CPU_IDs=0-3 Mem=0 GRES=gpu:2(IDX:0-1)``: n1 and n2 have GPUs 0 and 1)."""
    out: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        nodes = _NODES.search(line)
        gres = line.partition("GRES=")[2]
        if nodes is None or not gres:
            continue
        ids = [i for m in _GRES_GPU.finditer("=" + gres.split()[0]) for i in _expand_idx(m[1])]
        if ids:
            for node in expand_hostlist(nodes[1], runner=runner, variable="scontrol Nodes"):
                out[node] = tuple(dict.fromkeys(ids))
    return out


def slurm_gpus(env: Mapping[str, str], names: Sequence[str], runner: Runner = _probe) -> Found:
    """The GPUs of each node of the Slurm allocation (see the module's docstring)."""
    job = env.get("SLURM_JOB_ID", "").strip()
    vendor = "amd" if "ROCR_VISIBLE_DEVICES" in env else "nvidia"
    if job:
        try:
            done = runner(("scontrol", "show", "job", "-d", job))
            found = parse_scontrol_gres(done.stdout, runner) if done.returncode == 0 else {}
        except (OSError, subprocess.SubprocessError, ValueError):
            found = {}
        found = {n: ids for n, ids in found.items() if n in names}
        if found:
            return found, GpuSetup(vendor, gres=True, source="slurm")
    ids = _env_ids(env.get("SLURM_JOB_GPUS", ""))
    if ids:
        return dict.fromkeys(names, ids), GpuSetup(vendor, gres=True, source="SLURM_JOB_GPUS")
    seen = _env_gpus(env)
    if seen is not None and seen[0]:
        var = "ROCR_VISIBLE_DEVICES" if seen[1] == "amd" else "CUDA_VISIBLE_DEVICES"
        return dict.fromkeys(names, seen[0]), GpuSetup(seen[1], source=var)
    return {}, None


def gpus_of(
    gpus: GpuArg,
    nodes: Iterable[str],
    *,
    declared: Mapping[str, tuple[str, ...]] | None = None,
    discover: str | None = None,
    vendor: str | None = None,
    env: Mapping[str, str] | None = None,
    runner: Runner = _probe,
) -> Found:
    """The GPU ids of each node, and how jobs are shown them (None: no GPUs).

    Args:
        gpus: the ``Pilot(gpus=...)`` argument.
        nodes: the node names.
        declared: ids from the nodes spec (``n1:4:gpu=0+1``).
        discover: ``slurm`` or ``host``: where to look when nothing is declared;
            None: nothing is looked for (nodes given by hand).
        vendor: ``nvidia`` or ``amd`` (None: as discovered, else ``nvidia``).
        env: the environment (default ``os.environ``).
        runner: runs the probes.

    Raises:
        ValueError: an unknown vendor or node, or malformed ids.
    """
    if vendor is not None and vendor not in VENDORS:
        raise ValueError(f"gpu_vendor {vendor!r}: one of {', '.join(VENDORS)}")
    names = list(nodes)
    env = os.environ if env is None else env
    found: dict[str, tuple[str, ...]] = dict(declared or {})
    setup: GpuSetup | None = GpuSetup() if found else None
    if isinstance(gpus, Mapping):
        unknown = sorted(set(gpus) - set(names))
        if unknown:
            raise ValueError(f"gpus: no such node: {', '.join(unknown)}")
        found.update({n: _ids_of(v, f"gpus of node {n}") for n, v in gpus.items()})
        setup = GpuSetup()
    elif gpus is not None:
        ids = _ids_of(gpus, "gpus")
        found.update((n, ids) for n in names if n not in found)
        setup = GpuSetup()
    elif not found and discover == "slurm":
        found, setup = slurm_gpus(env, names, runner)
    elif not found and discover == "host" and len(names) == 1:
        ids, setup = host_gpus(env, runner)
        found = {names[0]: ids} if ids else {}
    found = {n: ids for n, ids in found.items() if ids}
    if not found:
        return {}, None
    setup = setup or GpuSetup()
    if vendor is not None and vendor != setup.vendor:
        setup = GpuSetup(vendor, setup.gres, setup.source)
    return found, setup
