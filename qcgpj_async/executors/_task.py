"""From an engine :class:`Launch` to a :class:`Task`: argv, environment, files. Pure.

Everything an executor needs to start one iteration is computed here without
touching the system, so it is tested without running anything.
"""

from __future__ import annotations

import os
import shlex
from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import cast

import attrs

from ..engine import Allocation, GpuSetup, Launch
from ..model import Execution, substitute

__all__ = (
    "Task",
    "TaskCache",
    "execution_variables",
    "gpu_environment",
    "prepare_task",
    "qcg_environment",
)


@attrs.frozen
class Task:
    """One iteration, ready to start."""

    run_id: int
    job: str
    iteration: int | None
    argv: tuple[str, ...]
    #: The whole environment (``env_extra`` over ``env_base`` where both are given).
    env: Mapping[str, str]
    cwd: str
    stdin: str | None
    stdout: str | None
    stderr: str | None
    allocation: Allocation
    model: str
    model_opts: Mapping[str, object]
    #: ``env`` is ``env_base`` (shared by many tasks, never changed) plus ``env_extra``,
    #: less ``env_unset``.
    env_base: Mapping[str, str] | None = None
    env_extra: Mapping[str, str] | None = None
    #: How the pilot's GPUs are shown to jobs (None: the pilot has none).
    gpu: GpuSetup | None = None
    env_unset: tuple[str, ...] = ()

    def getenv(self, name: str) -> str | None:
        """``env.get(name)``, read from ``env_extra`` and ``env_base`` where given (faster)."""
        extra, base = self.env_extra, self.env_base
        if extra is None or base is None:
            return self.env.get(name)
        value = extra.get(name)
        return value if value is not None else base.get(name)

    @property
    def label(self) -> str:
        """``job`` or ``job:iteration``."""
        return self.job if self.iteration is None else f"{self.job}:{self.iteration}"


def execution_variables(launch: Launch, root_wd: str) -> dict[str, str]:
    """The execution-time variables of one iteration."""
    alloc = launch.allocation
    it = launch.iteration
    spec_it = launch.spec.iteration
    return {
        "root_wd": root_wd,
        "ncores": str(alloc.cores),
        "nnodes": str(len(alloc.parts)),
        "nlist": ",".join(alloc.nodes),
        "it": "" if it is None else str(it),
        "itval": "" if it is None or spec_it is None else spec_it.value(it),
    }


def qcg_environment(alloc: Allocation, step_id: str) -> dict[str, str]:
    """The ``QCG_PM_*`` variables every job gets."""
    parts = alloc.parts
    if len(parts) == 1:  # most jobs: the same variables, made without a loop
        part = parts[0]
        n = str(len(part.cores))
        return {
            "QCG_PM_NNODES": "1",
            "QCG_PM_NODELIST": part.node,
            "QCG_PM_NPROCS": n,
            "QCG_PM_NTASKS": n,
            "QCG_PM_STEP_ID": step_id,
            "QCG_PM_TASKS_PER_NODE": n,
        }
    ncores = str(alloc.cores)
    return {
        "QCG_PM_NNODES": str(len(alloc.parts)),
        "QCG_PM_NODELIST": ",".join(alloc.nodes),
        "QCG_PM_NPROCS": ncores,
        "QCG_PM_NTASKS": ncores,
        "QCG_PM_STEP_ID": step_id,
        "QCG_PM_TASKS_PER_NODE": ",".join(str(len(p.cores)) for p in alloc.parts),
    }


def gpu_environment(alloc: Allocation, gpu: GpuSetup, part: int = 0) -> dict[str, str]:
    """The variables that name a job's GPUs on its node ``part`` (first: 0), on a
    pilot with GPUs.

    ``QCG_PM_GPUS`` lists the job's device ids (empty: none). NVIDIA: so does
    ``CUDA_VISIBLE_DEVICES``. AMD: ``ROCR_VISIBLE_DEVICES`` lists them, and
    ``HIP_VISIBLE_DEVICES``/``CUDA_VISIBLE_DEVICES`` count them from 0, since
    HIP numbers only the devices ROCr shows it. A job that asked no GPU gets
    them all empty: it sees no device, and cannot take another job's.
    """
    ids = alloc.parts[part].gpus
    names = ",".join(ids)
    if gpu.vendor == "amd":
        ordinals = ",".join(map(str, range(len(ids))))
        env = {"ROCR_VISIBLE_DEVICES": names, "HIP_VISIBLE_DEVICES": ordinals}
        env["CUDA_VISIBLE_DEVICES"] = ordinals
    else:
        env = {"CUDA_VISIBLE_DEVICES": names}
    env["QCG_PM_GPUS"] = names
    return env


def _user_argv(ex: Execution, sub: Mapping[str, str]) -> tuple[str, ...]:
    """exec+args directly; a script under ``bash -c``; modules/venv through bash."""
    s = (lambda t: substitute(t, sub)) if sub else (lambda t: t)
    direct: tuple[str, ...] | None = None
    if ex.script is not None:
        body = s(ex.script)
    else:
        assert ex.exec is not None
        direct = (s(ex.exec), *(s(a) for a in ex.args))
        if not ex.modules and ex.venv is None:
            return direct
        body = "exec " + shlex.join(direct)
    if not ex.modules and ex.venv is None:
        return ("bash", "-c", body)
    prelude = ["source /etc/profile >/dev/null 2>&1"]
    if ex.modules:
        prelude.append("module load " + " ".join(shlex.quote(s(m)) for m in ex.modules))
    if ex.venv is not None:
        prelude.append("source " + shlex.quote(os.path.join(s(ex.venv), "bin", "activate")))
    return ("bash", "-c", "\n".join([*prelude, body]))


class _Fixed:
    """What every launch of one execution gets alike, where none of its texts names a
    variable (``${...}``): made once, not per iteration."""

    __slots__ = ("argv", "cwd", "env", "execution", "model", "model_opts", "root_wd", "streams")

    def __init__(self, ex: Execution, root_wd: str) -> None:
        self.execution, self.root_wd = ex, root_wd
        self.argv = _user_argv(ex, {})
        self.cwd = cwd = os.path.join(root_wd, ex.wd) if ex.wd else root_wd
        self.streams = tuple(
            os.path.join(cwd, name) if name else None for name in (ex.stdin, ex.stdout, ex.stderr)
        )
        self.env = dict(ex.env) if ex.env else None
        self.model = ex.model or "default"
        self.model_opts: Mapping[str, object] = MappingProxyType(dict(ex.model_opts or {}))


def _names_variables(ex: Execution) -> bool:
    """Whether a text of ``ex`` that :func:`prepare_task` substitutes holds ``${``."""
    texts = (ex.exec, ex.script, ex.wd, ex.stdin, ex.stdout, ex.stderr, ex.venv)
    return (
        any(t is not None and "${" in t for t in texts)
        or any("${" in t for t in ex.args)
        or any("${" in t for t in ex.modules)
        or (ex.env is not None and any("${" in v for v in ex.env.values()))
    )


#: What :func:`prepare_task` keeps between calls: ``id(execution)`` -> its fixed part
#: (None: it names variables). Keep one per pilot.
TaskCache = dict[int, tuple[Execution, _Fixed | None]]


def _fixed_of(ex: Execution, root_wd: str, cache: TaskCache) -> _Fixed | None:
    hit = cache.get(id(ex))
    if hit is not None and hit[0] is ex:
        fixed = hit[1]
        if fixed is None or fixed.root_wd == root_wd:
            return fixed
    fixed = None if _names_variables(ex) else _Fixed(ex, root_wd)
    if len(cache) > 1024:
        cache.clear()
    cache[id(ex)] = (ex, fixed)
    return fixed


def _layered(extra: dict[str, str], base: Mapping[str, str]) -> Mapping[str, str]:
    """``extra`` over ``base`` as one mapping, without a copy of ``base`` (read only:
    ``base`` is the pilot's, shared by every task)."""
    return ChainMap(extra, cast("MutableMapping[str, str]", base))


def prepare_task(
    launch: Launch,
    *,
    root_wd: str,
    base_env: Mapping[str, str],
    step_id: str,
    submit_vars: Mapping[str, str] | None = None,
    gpu: GpuSetup | None = None,
    cache: TaskCache | None = None,
) -> Task:
    """Build the task of one launch.

    Args:
        launch: what the engine decided.
        root_wd: the pilot's working directory (relative job paths join it).
        base_env: the environment jobs inherit (``QCG_PM_ZMQ_ADDRESS`` included
            when the network interface is on); never changed in place: the task's
            ``env`` reads it (``env_base``).
        step_id: the unique ``QCG_PM_STEP_ID`` of this run.
        submit_vars: the submit-time variables of the job's request.
        gpu: how the pilot's GPUs are shown to jobs (``ResourcePool.gpu``; None:
            the pilot has none, and no GPU variable is set).
        cache: what an execution without variables gives every iteration, kept
            here between calls (the same task, made faster).
    """
    ex = launch.spec.execution
    fixed = _fixed_of(ex, root_wd, cache) if cache is not None else None
    alloc = launch.allocation
    extra = qcg_environment(alloc, step_id)
    if gpu is not None:  # before the job's env: a job may widen its own view
        extra.update(gpu_environment(alloc, gpu))
    if fixed is not None:
        if fixed.env is not None:
            extra.update(fixed.env)
        if fixed.model == "threads":
            extra["OMP_NUM_THREADS"] = str(alloc.cores)
        stdin, stdout, stderr = fixed.streams
        return Task(
            launch.run_id, launch.job, launch.iteration, fixed.argv, _layered(extra, base_env),
            fixed.cwd, stdin, stdout, stderr, alloc, fixed.model, fixed.model_opts, base_env,
            extra, gpu,
        )  # fmt: skip
    sub = execution_variables(launch, root_wd)
    if submit_vars:
        sub.update(submit_vars)
    sub["jname"] = launch.job

    def s(text: str) -> str:
        return substitute(text, sub)

    cwd = os.path.join(root_wd, s(ex.wd)) if ex.wd else root_wd
    if ex.env:
        extra.update({k: s(v) for k, v in ex.env.items()})
    model = ex.model or "default"
    if model == "threads":
        extra["OMP_NUM_THREADS"] = str(alloc.cores)

    def stream(name: str | None) -> str | None:
        return os.path.join(cwd, s(name)) if name else None

    return Task(
        run_id=launch.run_id,
        job=launch.job,
        iteration=launch.iteration,
        argv=_user_argv(ex, sub),
        env=_layered(extra, base_env),
        cwd=cwd,
        stdin=stream(ex.stdin),
        stdout=stream(ex.stdout),
        stderr=stream(ex.stderr),
        allocation=alloc,
        model=model,
        model_opts=dict(ex.model_opts or {}),
        env_base=base_env,
        env_extra=extra,
        gpu=gpu,
    )
