"""Executors: start tasks and report their end (local subprocesses, Slurm steps, null).

The seam the runtime uses is declared in :mod:`._base`: :class:`Executor` and the
:class:`StartQueue` of a node (the local fork server, :class:`ForkServer`).
"""

from ._base import Executor, LaunchError, Process, ServedProcess, Starting, StartQueue
from ._forkserver_link import ByteLink, ForkServer, PipeLink
from ._task import (
    Task,
    TaskCache,
    execution_variables,
    gpu_environment,
    prepare_task,
    qcg_environment,
)
from .local import LocalExecutor, local_argv
from .null import NullExecutor
from .srun import SrunExecutor, slurm_environment, srun_argv

__all__ = (
    "ByteLink",
    "Executor",
    "ForkServer",
    "LaunchError",
    "LocalExecutor",
    "NullExecutor",
    "PipeLink",
    "Process",
    "ServedProcess",
    "StartQueue",
    "Starting",
    "SrunExecutor",
    "Task",
    "TaskCache",
    "execution_variables",
    "gpu_environment",
    "local_argv",
    "prepare_task",
    "qcg_environment",
    "slurm_environment",
    "srun_argv",
)
