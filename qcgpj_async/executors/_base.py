"""What the runtime needs from an executor: start a task, then wait or signal it."""

from __future__ import annotations

from typing import Protocol

from ..model import QcgpjError
from ._task import Task

__all__ = ("Executor", "LaunchError", "Process")


class LaunchError(QcgpjError, OSError):
    """A task could not be started (missing executable, unwritable output, ...)."""


class Process(Protocol):
    """A started task."""

    pid: int | None

    async def wait(self) -> int:
        """Wait for the end; the exit code, or -N when killed by signal N."""
        ...

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM to its process group)."""
        ...

    def kill(self) -> None:
        """Stop it now (SIGKILL to its process group)."""
        ...


class Executor(Protocol):
    """Starts tasks. ``instant`` executors finish every task at once, exit 0."""

    instant: bool

    async def start(self, task: Task) -> Process:
        """Start ``task``.

        Raises:
            LaunchError: it could not be started; the message says why.
        """
        ...

    async def aclose(self) -> None:
        """Release what the executor holds (called once, when the pilot closes)."""
        ...
