"""What the runtime needs from an executor: the seam between the runtime and the executors.

Every executor starts a task and hands back a :class:`Process` to wait for or
signal (:meth:`Executor.start`). An executor may also have a
:class:`StartQueue`: the start queue of a node, which takes starts ahead of
time and reports their ends in batches (the local fork server is the start
queue of the pilot's own node; launch agents, :mod:`.agents`, are the start
queues of the nodes of a Slurm allocation). The runtime finds it through
:meth:`Executor.start_queue`, once, and calls nothing that is not declared here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from anyio.abc import TaskStatus

from ..model import QcgpjError
from ._task import Task

__all__ = (
    "Executor",
    "LaunchError",
    "Process",
    "ServedProcess",
    "StartQueue",
    "Starting",
)


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


class ServedProcess(Process, Protocol):
    """A process a :class:`StartQueue` started: its end is also called back."""

    @property
    def started_at(self) -> float | None:
        """When it started, by the clock of its node (``time.time()``)."""
        ...

    @property
    def ended_at(self) -> float | None:
        """When it ended, by the clock of its node; None while it runs."""
        ...

    @property
    def successor(self) -> list[int] | None:
        """The ``key`` of each queued start that took one of its cores when it ended."""
        ...

    @property
    def reason(self) -> str | None:
        """Why it ended when not by itself (``node n2 lost: ...``); None otherwise."""
        ...

    def on_exit(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(code)`` once it has ended (at once if it has)."""
        ...


class Starting(Protocol):
    """A start asked of a :class:`StartQueue`, answered later: ``proc`` or ``error``."""

    @property
    def proc(self) -> ServedProcess | None:
        """The process, once started."""
        ...

    @property
    def error(self) -> str | None:
        """Why it did not start, once answered without a process."""
        ...

    @property
    def gone(self) -> bool:
        """Not started because the queue's server ended: it may start another way."""
        ...

    @property
    def successor(self) -> list[int] | None:
        """The ``key`` of each queued start that took one of its cores when it failed."""
        ...

    def on_answer(self, callback: Callable[[Starting], object]) -> None:
        """Call ``callback(self)`` once answered (at once if it is)."""
        ...

    async def result(self) -> ServedProcess:
        """The started process, once answered.

        Raises:
            LaunchError: it could not start, or the queue's server is gone.
        """
        ...


class StartQueue(Protocol):
    """The start queue of one node: starts asked at once, some ahead of free cores.

    A start is asked with :meth:`begin` and answered later; a *queued* start
    holds no core yet and starts, with no round trip through the pilot, in a
    core of the first run of this node to end (that run's ``successor`` names
    it), or when :meth:`promote` gives it a free core. Answers and ends come
    in batches, through the callbacks of :class:`Starting` and
    :class:`ServedProcess`, called in the event loop.
    """

    @property
    def accepting(self) -> bool:
        """Whether :meth:`begin` takes starts now (its server runs)."""
        ...

    #: Each node has a queue of its own: a queued start runs on the node its task's
    #: allocation names (launch agents); else one queue serves every node, and the
    #: runtime queues starts ahead only on a one-node pool.
    per_node: bool

    def queueable(self, model: str) -> bool:
        """Whether tasks of this execution model start here (else: ``Executor.start``)."""
        ...

    async def serve(self, *, task_status: TaskStatus[None]) -> None:
        """Deliver the server's answers and ends until ``Executor.aclose`` (run in
        the pilot's task group; reports started at once)."""
        ...

    def begin(self, task: Task, *, queued: bool = False, key: int = 0) -> Starting | None:
        """Ask for ``task``'s start now; None where it does not start it here.

        Args:
            task: what to start.
            queued: the task holds no core yet (see the class docstring).
            key: the caller's name for a queued start, given back in ``successor``.
        """
        ...

    def promote(self, starting: Starting, cores: Sequence[int] = ()) -> None:
        """Start a queued start now (it was given free ``cores`` of its node: the
        engine's numbers, pinned to where pinning is on), if it is still queued."""
        ...

    def drop(self, starting: Starting) -> None:
        """Take a queued start out of the queue, if it has not started (answered
        then with an error)."""
        ...

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """The base environment of the starts from now on, queued ones included."""
        ...

    def on_node_lost(self, callback: Callable[[str, str], object]) -> None:
        """Call ``callback(node, why)`` when a node this queue serves is lost (a launch
        agent that died or stopped answering), before its runs are reported ended."""
        ...

    @property
    def batching(self) -> bool:
        """Whether a batch is open: answers and ends being handled (their callbacks
        run), or a :meth:`batch` of requests."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Within: the starts (and other requests) asked are sent together at the end,
        one write per server, not one per start. Answers and ends are handled in
        batches of their own."""
        ...

    def on_batch_end(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback()`` at the end of each batch, once its requests are sent: what
        the callbacks left to do once per batch (e.g. one write of the journal)."""
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

    def start_queue(self) -> StartQueue | None:
        """The start queue of the pilot's own node, or None (every task through
        :meth:`start`). Asked once, when the pilot starts."""
        ...

    async def aclose(self) -> None:
        """Release what the executor holds (called once, when the pilot closes)."""
        ...
