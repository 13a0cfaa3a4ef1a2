"""How the Pilot's callers wait for ends: ``wait4``, ``wait4all``, ``wait4_any``.

A name is a job (``name``) or one iteration of it (``name:it``), as the
original's client takes them (its ``wait4`` polls ``jobStatus``, which takes
both). Nothing polls here: a wait is an event that the Pilot's state handler
sets when the job or iteration reaches a final state (:meth:`WaitsMixin._job_ended_waits`,
:meth:`WaitsMixin._iteration_ended_waits`).
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio

from ..engine import Engine
from ..model import FINAL_STATES, JobState, PilotClosedError, PilotTimeoutError
from ._inputs import names_of

__all__ = ("WaitsMixin",)


class WaitsMixin:
    """The waiting half of :class:`~._pilot.Pilot` (its state is the Pilot's)."""

    id: str
    engine: Engine
    _closed: bool
    #: One event per awaited job or iteration (key: its name), set when it ends.
    _final_events: dict[str, anyio.Event]
    _any_waiters: list[tuple[set[str] | None, anyio.Event, list[str]]]
    _all_done: anyio.Event | None

    def _reports_now(self) -> None:
        raise NotImplementedError  # the Pilot's

    def _state_of(self, name: str) -> JobState:
        """The state of a job or iteration (JobNotFoundError: unknown)."""
        job, index = self.engine.lookup(name)
        return job.state if index is None else self.engine.iteration_state(job, index)

    def _ended(self, name: str) -> bool:
        """Whether ``name`` has ended; an iteration also when its job has (nothing more runs)."""
        job, index = self.engine.lookup(name)
        if job.state in FINAL_STATES:
            return True
        return index is not None and self.engine.iteration_state(job, index) in FINAL_STATES

    # -- set by the Pilot's state handler ---------------------------------------------

    def _job_ended_waits(self, name: str) -> None:
        """Job ``name`` reached a final state: wake who waits for it or its iterations."""
        events = self._final_events
        if events:
            event = events.pop(name, None)
            if event is not None:
                event.set()
            prefix = name + ":"
            for key in [k for k in events if k.startswith(prefix)]:
                events.pop(key).set()  # its iterations end with it
        for names, wake, slot in self._any_waiters:
            if not slot and (names is None or name in names):
                slot.append(name)
                wake.set()

    def _iteration_ended_waits(self, label: str) -> None:
        """Iteration ``label`` (``job:it``) reached a final state."""
        event = self._final_events.pop(label, None)
        if event is not None:
            event.set()
        for names, wake, slot in self._any_waiters:
            if not slot and names is not None and label in names:
                slot.append(label)
                wake.set()

    # -- the API ---------------------------------------------------------------------

    async def _wait_events(self, names: list[str], timeout: float | None) -> None:
        try:
            with anyio.fail_after(timeout):
                for name in names:
                    while not self._ended(name):
                        ev = self._final_events.get(name)
                        if ev is None:
                            ev = self._final_events[name] = anyio.Event()
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
            self.engine.lookup(n)
        await self._wait_events(names, timeout)
        self._reports_now()
        return {n: self._state_of(n) for n in names}

    async def wait4all(self, timeout: float | None = None) -> None:
        """Wait until every submitted job has ended.

        Raises:
            PilotTimeoutError: some are still running after ``timeout`` seconds.
        """
        if self.engine.unfinished == 0:
            return
        if self._all_done is None:
            self._all_done = anyio.Event()
        done = self._all_done
        try:
            with anyio.fail_after(timeout):
                await done.wait()
        except TimeoutError:
            raise PilotTimeoutError(
                f"timeout ({timeout} s) waiting for all jobs: {self.engine.unfinished} not finished"
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
            self.engine.lookup(n)
        for n in wanted if wanted is not None else self.engine.jobs:
            if self._ended(n):
                return n, self._state_of(n)
        if self._closed:
            raise PilotClosedError(f"pilot {self.id} is closed: no job will end")
        wake = anyio.Event()
        slot: list[str] = []
        entry = (wanted, wake, slot)
        self._any_waiters.append(entry)
        try:
            with anyio.fail_after(timeout):
                await wake.wait()
        except TimeoutError:
            raise PilotTimeoutError(f"timeout ({timeout} s): none of the jobs ended") from None
        finally:
            self._any_waiters.remove(entry)
        if not slot:  # woken by the close
            raise PilotClosedError(f"pilot {self.id} closed before any of the jobs ended")
        return slot[0], self._state_of(slot[0])
