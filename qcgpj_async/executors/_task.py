"""From an engine :class:`Launch` to a :class:`Task`: argv, environment, files. Pure.

Everything an executor needs to start one iteration is computed here without
touching the system, so it is tested without running anything.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

import attrs

from ..engine import Allocation, GpuSetup, Launch
from ..model import Execution, substitute

__all__ = (
    "Task",
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
    env: Mapping[str, str]
    cwd: str
    stdin: str | None
    stdout: str | None
    stderr: str | None
    allocation: Allocation
    model: str
    model_opts: Mapping[str, object]
    #: ``env`` is ``env_base`` (shared by many tasks, never changed) plus ``env_extra``.
    env_base: Mapping[str, str] | None = None
    env_extra: Mapping[str, str] | None = None
    #: How the pilot's GPUs are shown to jobs (None: the pilot has none).
    gpu: GpuSetup | None = None

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
    if ex.script is not None:
        body = s(ex.script)
        direct: tuple[str, ...] | None = None
    else:
        assert ex.exec is not None
        direct = (s(ex.exec), *(s(a) for a in ex.args))
        body = "exec " + shlex.join(direct)
    if not ex.modules and ex.venv is None:
        return direct if direct is not None else ("bash", "-c", body)
    prelude = ["source /etc/profile >/dev/null 2>&1"]
    if ex.modules:
        prelude.append("module load " + " ".join(shlex.quote(s(m)) for m in ex.modules))
    if ex.venv is not None:
        prelude.append("source " + shlex.quote(os.path.join(s(ex.venv), "bin", "activate")))
    return ("bash", "-c", "\n".join([*prelude, body]))


def prepare_task(
    launch: Launch,
    *,
    root_wd: str,
    base_env: Mapping[str, str],
    step_id: str,
    submit_vars: Mapping[str, str] | None = None,
    gpu: GpuSetup | None = None,
) -> Task:
    """Build the task of one launch.

    Args:
        launch: what the engine decided.
        root_wd: the pilot's working directory (relative job paths join it).
        base_env: the environment jobs inherit (``QCG_PM_ZMQ_ADDRESS`` included
            when the network interface is on).
        step_id: the unique ``QCG_PM_STEP_ID`` of this run.
        submit_vars: the submit-time variables of the job's request.
        gpu: how the pilot's GPUs are shown to jobs (``ResourcePool.gpu``; None:
            the pilot has none, and no GPU variable is set).
    """
    ex = launch.spec.execution
    sub = execution_variables(launch, root_wd)
    if submit_vars:
        sub.update(submit_vars)
    sub["jname"] = launch.job

    def s(text: str) -> str:
        return substitute(text, sub)

    cwd = os.path.join(root_wd, s(ex.wd)) if ex.wd else root_wd
    extra = qcg_environment(launch.allocation, step_id)
    if gpu is not None:  # before the job's env: a job may widen its own view
        extra.update(gpu_environment(launch.allocation, gpu))
    if ex.env:
        extra.update({k: s(v) for k, v in ex.env.items()})
    model = ex.model or "default"
    if model == "threads":
        extra["OMP_NUM_THREADS"] = str(launch.allocation.cores)
    env = dict(base_env)
    env.update(extra)

    def stream(name: str | None) -> str | None:
        return os.path.join(cwd, s(name)) if name else None

    return Task(
        run_id=launch.run_id,
        job=launch.job,
        iteration=launch.iteration,
        argv=_user_argv(ex, sub),
        env=env,
        cwd=cwd,
        stdin=stream(ex.stdin),
        stdout=stream(ex.stdout),
        stderr=stream(ex.stderr),
        allocation=launch.allocation,
        model=model,
        model_opts=dict(ex.model_opts or {}),
        env_base=base_env,
        env_extra=extra,
        gpu=gpu,
    )
