"""What a Pilot tells: :class:`PilotView`, the read-only half of its API.

Nothing here changes a job or the pilot. Its state is its own: the pilot's
identity, the engine it reads, the :class:`~._waits.Waiters` it waits with,
the :class:`~._recorder.Recorder` whose service directory and subscribers it
shows. The :class:`~._pilot.Pilot`, which runs and changes jobs, extends it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..engine import Engine
from ..model import FINAL_STATES, JobState
from ._events import EventStream
from ._info import Interfaces, JobInfo, ResourcesInfo, iteration_info, job_info
from ._inputs import names_of
from ._recorder import Recorder
from ._service import status_document
from ._waits import Waiters

__all__ = ("PilotView",)


class PilotView:
    """What a :class:`~._pilot.Pilot` tells about itself and its jobs, and its waits.

    Args:
        pilot_id: the pilot's id.
        root_wd: its working directory.
        engine: the engine whose jobs it tells about.
        waiters: who waits for ends.
        recorder: the pilot's records (service directory, subscribers).
    """

    def __init__(
        self, pilot_id: str, root_wd: str, engine: Engine, waiters: Waiters, recorder: Recorder
    ) -> None:
        self.id = pilot_id
        self.root_wd = root_wd
        #: What ``service_status`` and final_status.json advertise (set by the adapters).
        self.interfaces = Interfaces()
        self._engine = engine
        self._waiters = waiters
        self._recorder = recorder
        self._closed = False  # the pilot's block has ended: nothing will happen any more

    async def status(self, names: str | Iterable[str]) -> dict[str, JobState]:
        """The current state of each job (``name``) or iteration (``name:it``).

        Raises:
            JobNotFoundError: an unknown job or iteration.
        """
        return {n: self._waiters.state_of(n) for n in names_of(names)}

    async def info(
        self, names: str | Iterable[str], with_childs: bool = False
    ) -> dict[str, JobInfo]:
        """Everything known about each job (``name``) or iteration (``name:it``);
        ``to_dict()`` gives the original's form.

        Raises:
            JobNotFoundError: an unknown job or iteration.
        """
        out = {}
        engine, places = self._engine, self._recorder.places
        for n in names_of(names):
            job, index = engine.lookup(n)
            out[n] = (
                job_info(engine, job, places, with_childs)
                if index is None
                else iteration_info(engine, job, index, places)
            )
        return out

    async def resources(self) -> ResourcesInfo:
        """Nodes, cores and GPUs: total, used, free.

        With ``system_core`` the reserved core counts in the total and as used,
        as in the original (4 cores: total 4, used 1, free 3).
        """
        pool = self._engine.pool
        return ResourcesInfo(pool.total_nodes, *self._core_counts(), *self._gpu_counts())

    def _gpu_counts(self) -> tuple[int, int, int]:
        """Total, used and free GPU devices."""
        pool = self._engine.pool
        free = pool.free_gpus
        return pool.total_gpus, pool.total_gpus - free, free

    def _core_counts(self) -> tuple[int, int, int]:
        """Total, used and free cores, the system core counted as used."""
        pool = self._engine.pool
        system = 1 if pool.system_core else 0
        return pool.total_cores + system, pool.used_cores + system, pool.free_cores

    # -- at once, for the adapters and the command line ---------------------------

    def job_state(self, name: str) -> JobState:
        """The state of a job (``name``) or iteration (``name:it``) now.

        Raises:
            JobNotFoundError: an unknown job or iteration (its ``name`` says which).
        """
        return self._waiters.state_of(name)

    def job_messages(self, name: str) -> list[str]:
        """The messages of job ``name`` (why it failed, ...), oldest first.

        Raises:
            JobNotFoundError: an unknown job.
        """
        return list(self._engine.lookup(name)[0].messages or ())

    def is_iterative(self, name: str) -> bool:
        """Whether job ``name`` has iterations (False for an unknown job)."""
        job = self._engine.jobs.get(name)
        return job is not None and job.iterative

    def unfinished_jobs(self, *, cancelling: bool = True) -> list[str]:
        """The jobs that have not ended, in submission order (``cancelling`` False:
        without those being cancelled)."""
        return [
            n
            for n, j in self._engine.jobs.items()
            if j.state not in FINAL_STATES and (cancelling or not j.canceled)
        ]

    def job_counts(self) -> Mapping[JobState, int]:
        """How many jobs are in each state now (every state present)."""
        return dict(self._engine.job_counts)

    def iteration_counts(self) -> Mapping[JobState, int]:
        """How many iterations (a job without iterations counts as one) are in each state."""
        return self._engine.iteration_counts()

    # -- waits ------------------------------------------------------------------------

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
        return await self._waiters.wait4(names, timeout)

    async def wait4all(self, timeout: float | None = None) -> None:
        """Wait until every submitted job has ended.

        Raises:
            PilotTimeoutError: some are still running after ``timeout`` seconds.
        """
        await self._waiters.wait4all(timeout)

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
        return await self._waiters.wait4_any(names, timeout)

    def events(self) -> EventStream:
        """Every state change from this call on, until the pilot closes.

        Subscribes at once, so nothing that happens after the call is missed::

            async with pilot.events() as events:
                async for ev in events:   # StateChanged(job, iteration, state, time)
                    ...

        Returns:
            An async iterator of :class:`StateChanged`; close it (``aclose()`` or
            ``async with``) when done, or it keeps collecting until the pilot closes.
        """
        stream = EventStream(self._recorder.subscribers)
        if self._closed:  # nothing more will happen: the stream ends at once
            stream.end()
        return stream

    # -- the service -----------------------------------------------------------------

    @property
    def log(self) -> logging.Logger | None:
        """The logger of ``service.log`` (None before the pilot starts)."""
        svc = self._recorder.service
        return None if svc is None else svc.log

    @property
    def service_path(self) -> str | None:
        """The service directory, ``<wd>/.qcgpjm-service-<id>`` (None before the start)."""
        svc = self._recorder.service
        return None if svc is None else svc.path

    @property
    def report_path(self) -> str | None:
        """The ``jobs.report`` file (None before the start, or with no report)."""
        svc = self._recorder.service
        return None if svc is None else svc.report_path

    def service_status(
        self, *, zmq_address: str | None = None, publisher: str | None = None
    ) -> dict[str, Any]:
        """The original's ``status`` data (also written to final_status.json).

        ``zmq_address`` and ``publisher`` default to those in :attr:`interfaces`.
        """
        zmq_address = zmq_address or self.interfaces.zmq_address
        ifaces = list(self.interfaces.names)
        if zmq_address and "ZMQ" not in ifaces:  # a Protocol given an address by hand
            ifaces.append("ZMQ")
        return status_document(
            instance_id=self.id,
            started_at=self._recorder.started_at,
            wd=self.root_wd,
            zmq_address=zmq_address,
            publisher=publisher or self.interfaces.publisher,
            ifaces=ifaces,
            nodes=self._engine.pool.total_nodes,
            cores=self._core_counts(),
            gpus=self._gpu_counts(),
            jobs=self._engine.job_counts,
            iterations=self._engine.iteration_counts(),
        )

    def run_totals(self) -> dict[str, Any]:
        """What the runs that ended here add up to, gathered as they ended (no file read):
        ``cores`` (usable), ``first_start``/``last_end`` (None before any run ended),
        ``busy`` core-seconds, ``count`` and ``kinds`` of the ends that were not a
        success, and the first few of them by end time, ``unsuccessful``:
        ``(state, name, message, exit_code, started)``."""
        return self._recorder.totals.figures()

    def final_status(self) -> dict[str, Any]:
        """What final_status.json holds: :meth:`service_status`, and beside the
        original's fields every state counted as itself (the original counts
        CANCELED as finished and OMITTED as failed)."""
        status = self.service_status()
        status["JobStates"] = {s.value: n for s, n in self._engine.job_counts.items()}
        status["IterationStates"] = {s.value: n for s, n in self._engine.iteration_counts().items()}
        return status

    async def list(self) -> dict[str, JobState]:
        """Every job the pilot knows, with its state, in submission order."""
        return {n: j.state for n, j in self._engine.jobs.items()}
