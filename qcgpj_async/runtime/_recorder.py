"""Where every state change goes: the :class:`Recorder` of a pilot.

A change reaches the subscribers of ``Pilot.events()`` at once; a final one
also the waiters (:class:`~._waits.Waiters`), the journal (a line written to
the kernel at the end of each batch of instructions, fsynced at most every
``journal_sync`` seconds) and the report and log of the service directory
(lines written :data:`REPORT_DELAY` after the first one that waits, in one
write per file for many jobs' ends).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ..engine import Engine, StateChanged
from ..model import FINAL_STATES, JobDescriptionError, JobSpec, JobState
from ._journal import JOURNAL, Journal, Recovered, stop_orphans
from ._launcher import Launcher
from ._places import RunPlaces
from ._service import ServiceDir
from ._totals import RunTotals
from ._waits import Waiters

#: Seconds by which lines of jobs.report and service.log may follow a job's end.
REPORT_DELAY = 0.02

__all__ = ("REPORT_DELAY", "Recorder")


class Recorder:
    """The pilot's records: its service directory, its journal, its subscribers.

    Args:
        engine: the pilot's engine (the jobs whose ends are recorded).
        waiters: woken by final states.
        submit_vars: each job's submit variables, forgotten when it ends.
        journal_sync: at most this many seconds between fsyncs of the journal.
    """

    def __init__(
        self,
        engine: Engine,
        waiters: Waiters,
        submit_vars: MutableMapping[str, Any],
        journal_sync: float,
    ) -> None:
        self._engine = engine
        self._waiters = waiters
        self._submit_vars = submit_vars
        self.journal_sync = journal_sync
        self.service: ServiceDir | None = None
        #: Where each run ran (noted by the launcher, read by the report and ``info``).
        self.places = RunPlaces()
        #: When the pilot started (``time.time()``).
        self.started_at = 0.0
        self.journal: Journal | None = None
        self.subscribers: list[MemoryObjectSendStream[StateChanged]] = []
        #: Jobs stopped because the pilot is leaving: not journaled as ended.
        self.interrupted: set[str] = set()
        #: Set when lines of jobs.report/service.log wait (see :meth:`flush_reports`).
        self.report_wake: anyio.Event | None = None
        #: Makespan, busy core-seconds, first failures: the batch's closing lines.
        self.totals = RunTotals()

    def open(
        self,
        root_wd: str,
        pilot_id: str,
        started_at: float,
        recovered: Recovered | None,
        service_args: tuple[str, str, str],
    ) -> ServiceDir:
        """Create the service directory and the journal (written at the first flush).

        Raises:
            PilotStartError: the service directory or its report cannot be created.
        """
        self.started_at = started_at
        fmt, file, level = service_args
        svc = self.service = ServiceDir(
            root_wd,
            pilot_id,
            report_format=fmt,
            report_file=file,
            log_level=level,
            places=self.places,
        )
        path = os.path.join(svc.path, JOURNAL)
        resumed = recovered.path if recovered else None
        pool = self._engine.pool
        nodes = {n.name: len(n.free) for n in pool.nodes}  # for reports
        gpus = {n.name: len(n.gpu_ids) for n in pool.nodes if n.gpu_ids}
        self.totals.cores = sum(nodes.values())
        self.journal = Journal(path, pilot_id, started_at, resumed, nodes, gpus)
        return svc

    def submit_record(
        self,
        specs: Sequence[JobSpec],
        variables: dict[str, str],
        now: float,
        stds: list[dict[str, Any]],
    ) -> str | None:
        """The journal line of a submit, not written yet (None: no journal).

        Raises:
            JobDescriptionError: the jobs cannot be recorded.
        """
        if self.journal is None:
            return None
        try:
            return self.journal.submit_record(specs, variables, now, stds)
        except (RecursionError, ValueError, TypeError) as e:
            raise JobDescriptionError([f"the jobs cannot be recorded: {e}"]) from None

    def journal_line(self, record: str | None) -> None:
        """Append a line made by :meth:`submit_record` (written at the next flush)."""
        if record is not None and self.journal is not None:
            self.journal.append(record)

    def batch_end(self) -> None:
        """A batch of the start queue ended: the journal's lines its dispatches left
        are written now, at once (see ``Pilot._dispatch``)."""
        if self.journal is not None:
            self.journal.flush()

    def node_lost(self, node: str, why: str, now: float) -> None:
        """A node was lost (journaled now; a resume reads no more from it than a note)."""
        if self.journal is not None:
            self.journal.lost(node, why, now)
            self.journal.flush()

    def cancelled(self, names: list[str]) -> None:
        """The user cancels jobs or iterations ``names``."""
        if self.journal is not None:
            self.journal.cancel(names)

    def removed(self, names: list[str]) -> None:
        """The user removed the ended jobs ``names`` (journaled now)."""
        if self.journal is not None:
            self.journal.remove(names)
            self.journal.flush()

    async def resume(self, rec: Recovered, timeout: float) -> None:
        """The pilot goes on from ``rec``: say so, journal it, stop what its dead
        service left running (SIGTERM, SIGKILL after ``timeout``)."""
        assert self.service is not None and self.journal is not None
        log = self.service.log
        ended = sum(1 for j in self._engine.jobs.values() if j.state in FINAL_STATES)
        log.info("resuming from %s: %d jobs, %d ended", rec.path, len(rec.specs), ended)
        self.journal.restored(rec, self.started_at)
        await stop_orphans(rec, log, timeout)

    def state_changed(self, ev: StateChanged) -> None:
        """Record ``ev``: subscribers, waiters, the journal, the report, the log."""
        state = ev.state
        for s in self.subscribers:
            s.send_nowait(ev)
        svc = self.service
        if state not in FINAL_STATES:
            if ev.iteration is None and state is JobState.EXECUTING:
                pass
            elif svc is not None and svc.log_debug:
                it = "" if ev.iteration is None else f":{ev.iteration}"
                svc.log.debug("%s%s %s", ev.job, it, state.value)
            return
        job = self._engine.jobs[ev.job]
        assert svc is not None
        waiters = self._waiters
        if ev.iteration is not None and (waiters.final_events or waiters.any_waiters):
            waiters.iteration_ended(f"{ev.job}:{ev.iteration}")  # woken after this call
        if self.journal is not None and (
            ev.job not in self.interrupted or state not in (JobState.CANCELED, JobState.OMITTED)
        ):
            self.journal.job_ended(job, ev.iteration, state, ev.time)
        totals = self.totals
        try:
            if ev.iteration is not None:
                it_run = job.run_at(ev.iteration)
                label = f"{job.name}:{ev.iteration}"
                if it_run is not None:
                    svc.report_run(job, it_run)
                    totals.run_ended(label, it_run, it_run.message)
                else:  # cancelled while queued, or omitted (a:${it} dependency)
                    svc.report_iteration(job.name, ev.iteration, state, ev.time)
                    totals.ended_unrun(label, state, ev.time, None)
                return
            run = job.run_at(None)
            messages = "\n".join(job.messages) if job.messages else None
            if run is not None:
                svc.report_run(job, run)
                totals.run_ended(job.name, run, run.message or messages)
            else:
                svc.report_job(job)
                if not job.iterative:  # an iteration job's ends are its iterations'
                    totals.ended_unrun(job.name, state, ev.time, messages)
        except Exception:  # a report line that cannot be written must not stop the pilot
            it = "" if ev.iteration is None else f":{ev.iteration}"
            svc.log.exception("cannot report %s%s", ev.job, it)
            if ev.iteration is not None:
                return
        self._submit_vars.pop(ev.job, None)  # only launches need them
        if waiters.final_events or waiters.any_waiters:
            waiters.job_ended(ev.job)
        if waiters.all_done is not None and self._engine.unfinished == 0:
            waiters.all_ended()

    def reports_now(self) -> None:
        """The ended jobs' report lines written now (a waiter may read them next)."""
        if self.service is not None and self.service.dirty:
            self.service.flush()

    async def flush_reports(self) -> None:
        """Push jobs.report and service.log lines to their files REPORT_DELAY after the
        first unwritten one: one write per file for many jobs' ends (at the close, all)."""
        svc = self.service
        assert svc is not None
        while True:
            wake = self.report_wake = anyio.Event()
            await wake.wait()
            await anyio.sleep(REPORT_DELAY)
            svc.flush()

    async def sync_journal(self, launcher: Launcher) -> None:
        """fsync the journal at most every ``journal_sync`` s; record long-running processes."""
        journal = self.journal
        assert journal is not None
        while True:
            await anyio.sleep(self.journal_sync)
            journal.running(launcher.procs, self._engine.runs, launcher.journaled_runs)
            journal.flush()
            if journal.unsynced:
                await anyio.to_thread.run_sync(journal.sync)

    def end_subscriptions(self) -> None:
        """Closed: event subscriptions end (nothing more happens)."""
        for s in self.subscribers:
            s.close()
        self.subscribers.clear()

    def close(self, pilot_id: str, now: float, status: dict[str, Any] | None) -> None:
        """Close the journal (``status`` None: the pilot did not start, the journal is
        dropped), write final_status.json, close the service directory."""
        if status is not None and self.journal is not None:
            self.journal.close(now, len(self.interrupted))
        self.journal = None
        svc = self.service
        if svc is not None:
            if status is None:
                svc.log.info("pilot %s did not start", pilot_id)
            else:
                svc.write_final_status(status)
                svc.log.info("pilot %s finished", pilot_id)
            svc.close()
