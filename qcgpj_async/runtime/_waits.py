"""How the Pilot's callers wait for ends: ``wait4``, ``wait4all``, ``wait4_any``.

A name is a job (``name``) or one iteration of it (``name:it``), as the
original's client takes them (its ``wait4`` polls ``jobStatus``, which takes
both). Nothing polls here: a wait is an event that the Pilot's state handler
sets when the job or iteration reaches a final state (:meth:`Waiters.job_ended`,
:meth:`Waiters.iteration_ended`, :meth:`Waiters.all_ended`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio

from ..engine import Engine
from ..model import FINAL_STATES, JobState, PilotClosedError, PilotTimeoutError
from ._inputs import names_of

__all__ = ("Waiters",)


class Waiters:
    """Who waits for which ends: the events behind the Pilot's ``wait4`` calls.

    Args:
        pilot_id: names the pilot in errors.
        engine: the pilot's engine (states, names).
        reports_now: writes the ended jobs' report lines (a waiter may read them next).
    """

    def __init__(self, pilot_id: str, engine: Engine, reports_now: Callable[[], None]) -> None:
        self._id = pilot_id
        self._engine = engine
        self._reports_now = reports_now
        self._closed = False
        #: One event per awaited job or iteration (key: its name), set when it ends.
        self.final_events: dict[str, anyio.Event] = {}
        #: ``wait4_any`` calls: (names or None for any, wake, slot for the name that ended).
        self.any_waiters: list[tuple[set[str] | None, anyio.Event, list[str]]] = []
        #: Set when no job is left unfinished (``wait4all``).
        self.all_done: anyio.Event | None = None

    def state_of(self, name: str) -> JobState:
        """The state of a job or iteration (JobNotFoundError: unknown)."""
        job, index = self._engine.lookup(name)
        return job.state if index is None else self._engine.iteration_state(job, index)

    def _ended(self, name: str) -> bool:
        """Whether ``name`` has ended; an iteration also when its job has (nothing more runs)."""
        job, index = self._engine.lookup(name)
        if job.state in FINAL_STATES:
            return True
        return index is not None and self._engine.iteration_state(job, index) in FINAL_STATES

    # -- set by the Pilot's state handler ---------------------------------------------

    def job_ended(self, name: str) -> None:
        """Job ``name`` reached a final state: wake who waits for it or its iterations."""
        events = self.final_events
        if events:
            event = events.pop(name, None)
            if event is not None:
                event.set()
            prefix = name + ":"
            for key in [k for k in events if k.startswith(prefix)]:
                events.pop(key).set()  # its iterations end with it
        for names, wake, slot in self.any_waiters:
            if not slot and (names is None or name in names):
                slot.append(name)
                wake.set()

    def iteration_ended(self, label: str) -> None:
        """Iteration ``label`` (``job:it``) reached a final state."""
        event = self.final_events.pop(label, None)
        if event is not None:
            event.set()
        for names, wake, slot in self.any_waiters:
            if not slot and names is not None and label in names:
                slot.append(label)
                wake.set()

    def all_ended(self) -> None:
        """No job is left unfinished: wake ``wait4all``."""
        done = self.all_done
        if done is not None:
            self.all_done = None
            done.set()

    def close(self) -> None:
        """The pilot closed: nothing more ends; ``wait4_any`` calls end."""
        self._closed = True
        for _, wake, _ in self.any_waiters:
            wake.set()

    # -- the Pilot's API ---------------------------------------------------------------

    async def _wait_events(self, names: list[str], timeout: float | None) -> None:
        try:
            with anyio.fail_after(timeout):
                for name in names:
                    while not self._ended(name):
                        ev = self.final_events.get(name)
                        if ev is None:
                            ev = self.final_events[name] = anyio.Event()
                        await ev.wait()
        except TimeoutError:
            left = [n for n in names if not self._ended(n)]
            raise PilotTimeoutError(
                f"timeout ({timeout} s) waiting for {len(left)} job(s): {', '.join(left[:10])}"
            ) from None

    async def wait4(
        self, names: str | Iterable[str], timeout: float | None = None
    ) -> dict[str, JobState]:
        """Wait until the jobs (``name``) or iterations (``name:it``) have ended.

        Returns:
            ``{name: final state}``.

        Raises:
            JobNotFoundError: an unknown job or iteration (checked before waiting).
            PilotTimeoutError: not all ended within ``timeout`` seconds.
        """
        names = names_of(names)
        for n in names:
            self._engine.lookup(n)
        await self._wait_events(names, timeout)
        self._reports_now()
        return {n: self.state_of(n) for n in names}

    async def wait4all(self, timeout: float | None = None) -> None:
        """Wait until every submitted job has ended.

        Raises:
            PilotTimeoutError: some are still running after ``timeout`` seconds.
        """
        if self._engine.unfinished == 0:
            return
        if self.all_done is None:
            self.all_done = anyio.Event()
        done = self.all_done
        try:
            with anyio.fail_after(timeout):
                await done.wait()
        except TimeoutError:
            raise PilotTimeoutError(
                f"timeout ({timeout} s) waiting for all jobs: "
                f"{self._engine.unfinished} not finished"
            ) from None
        self._reports_now()

    async def wait4_any(
        self, names: str | Iterable[str] | None = None, timeout: float | None = None
    ) -> tuple[str, JobState]:
        """Wait until one of the jobs or iterations (any job when ``names`` is None) ends.

        One that has already ended counts at once.

        Returns:
            ``(name, final state)`` of the first one found ended.

        Raises:
            JobNotFoundError: an unknown job or iteration.
            PilotTimeoutError: none ended within ``timeout`` seconds.
            PilotClosedError: the pilot closed (or is closed) before one ended.
            ValueError: ``names`` is empty.
        """
        wanted = None if names is None else set(names_of(names))
        if wanted is not None and not wanted:
            raise ValueError("wait4_any: no job names given")
        for n in wanted or ():
            self._engine.lookup(n)
        for n in wanted if wanted is not None else self._engine.jobs:
            if self._ended(n):
                return n, self.state_of(n)
        if self._closed:
            raise PilotClosedError(f"pilot {self._id} is closed: no job will end")
        wake = anyio.Event()
        slot: list[str] = []
        entry = (wanted, wake, slot)
        self.any_waiters.append(entry)
        try:
            with anyio.fail_after(timeout):
                await wake.wait()
        except TimeoutError:
            raise PilotTimeoutError(f"timeout ({timeout} s): none of the jobs ended") from None
        finally:
            self.any_waiters.remove(entry)
        if not slot:  # woken by the close
            raise PilotClosedError(f"pilot {self._id} closed before any of the jobs ended")
        return slot[0], self.state_of(slot[0])
