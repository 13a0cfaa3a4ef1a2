"""The null executor: every task ends at once with exit code 0, no process."""

from __future__ import annotations

from ._task import Task

__all__ = ("NullExecutor",)


class _Done:
    pid: int | None = None

    async def wait(self) -> int:
        return 0

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass


class NullExecutor:
    """Completes every launched task at once with exit code 0, starting nothing.

    For benchmarks of the scheduling path and for dry runs:
    ``Pilot(nodes="1000", executor=NullExecutor())``.
    """

    instant = True

    def __init__(self) -> None:
        self.started = 0

    async def start(self, task: Task) -> _Done:
        """Count the task and return a process that has already ended."""
        self.started += 1
        return _Done()

    def start_queue(self) -> None:
        """None: every task starts through :meth:`start`."""
        return

    async def aclose(self) -> None:
        """Nothing to release."""
