"""Executors: start tasks and report their end (local subprocesses, Slurm steps, null)."""

from ._base import Executor, LaunchError, Process
from ._task import Task, execution_variables, prepare_task, qcg_environment
from .local import LocalExecutor, local_argv
from .null import NullExecutor
from .srun import SrunExecutor, slurm_environment, srun_argv

__all__ = (
    "Executor",
    "LaunchError",
    "LocalExecutor",
    "NullExecutor",
    "Process",
    "SrunExecutor",
    "Task",
    "execution_variables",
    "local_argv",
    "prepare_task",
    "qcg_environment",
    "slurm_environment",
    "srun_argv",
)
