"""Futures over a pilot: ``qcg-pilotjob-executor-api``'s :class:`QCGPJExecutor`, and
:class:`PilotExecutor`, a plain :class:`concurrent.futures.Executor`.

:class:`QCGPJExecutor` keeps the original package's surface (its template
``submit``, :class:`QCGPJFuture` with ``done/result/running/cancel/cancelled``,
:class:`BasicTemplate`) on a :class:`~qcgpj_async.compat.LocalManager`, and
does better where it can: ``done()`` reads a state cache fed by the pilot's
events (no request), and ``result(timeout)`` honours its timeout.

:class:`PilotExecutor` is for a fresh start: ``submit(job)`` takes a job
description and gives a real :class:`concurrent.futures.Future` (so
``as_completed``, ``wait`` and callbacks work), resolved by the pilot's events.
"""

from __future__ import annotations

import ast
import concurrent.futures
import os
import textwrap
import threading
import uuid
from collections.abc import Callable, Mapping
from enum import Enum
from string import Template
from typing import Any

from ..model import JobSpec, JobState, QcgpjError, job_to_std, std_from_simple
from ._links import LocalLink
from ._server_args import ServerArgs
from .errors import TimeoutElapsed
from .job import Jobs
from .manager import LocalManager

__all__ = (
    "BasicTemplate",
    "JobFailedError",
    "JobFuture",
    "PilotExecutor",
    "QCGPJExecutor",
    "QCGPJFuture",
    "QCGPJTemplate",
    "ResultTimeout",
    "__version__",
)

#: The version of ``qcg-pilotjob-executor-api`` whose surface this is.
__version__ = "0.14.2"


class ResultTimeout(TimeoutElapsed, TimeoutError):
    """``result(timeout)`` ran out: both the original's ``TimeoutElapsed`` and a ``TimeoutError``
    (what :class:`concurrent.futures.Future` raises)."""


class ServiceLogLevel(Enum):
    """The log levels of the manager."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


class ClientLogLevel(Enum):
    """The log levels of the client."""

    INFO = "info"
    DEBUG = "debug"


class QCGPJTemplate:
    """A job template: ``template()`` returns the description text and default values."""

    @staticmethod
    def template() -> tuple[str, dict[str, Any]]:
        """The template text (a Python dict literal with ``$name`` placeholders) and defaults."""
        raise NotImplementedError


class BasicTemplate(QCGPJTemplate):
    """One executable with its arguments and output files."""

    @staticmethod
    def template() -> tuple[str, dict[str, Any]]:
        """Placeholders: ``name``, ``exec``, ``args`` (``[]``), ``stdout``, ``stderr``."""
        text = """
        {
            'name': '${name}',
            'execution': {
                'exec': '${exec}',
                'args': ${args},
                'stdout': '${stdout}',
                'stderr': '${stderr}'
            }
        }
        """
        return text, {"args": [], "stdout": "stdout", "stderr": "stderr"}


class QCGPJFuture:
    """The jobs of one :meth:`QCGPJExecutor.submit` (the original's future).

    Args:
        ids: the job names.
        qcgpjm: the manager they were submitted to.
    """

    def __init__(self, ids: list[str], qcgpjm: LocalManager) -> None:
        self.ids = ids
        self.qcgpjm = qcgpjm
        self._done = False
        self._cancelled = False

    def _final(self) -> dict[str, str] | None:
        ended = self.qcgpjm._link.finals.jobs
        try:
            return {i: ended[i] for i in self.ids}
        except KeyError:
            return None

    def done(self) -> bool:
        """Whether every job has ended; no request (a cache fed by the pilot's events)."""
        if not self._done and self._final() is not None:
            self._done = True
        return self._done

    def result(self, timeout: float | None = None) -> dict[str, str]:
        """Wait for the jobs to end: ``{name: final state}``.

        Raises:
            ResultTimeout: they had not all ended within ``timeout`` seconds.
        """
        final = self._final()
        if final is not None:
            return final
        link = self.qcgpjm._link
        try:
            if link.has_events and link.open:  # the events say when: no request, no poll
                final = link.finals.wait_jobs(self.ids, timeout)
                if final is not None:
                    return final
            return self.qcgpjm.wait4(self.ids, timeout)  # e.g. the manager finished: its error
        except TimeoutElapsed:
            raise ResultTimeout(f"jobs not finished within {timeout} s") from None

    def running(self) -> bool:
        """Whether some job has not ended."""
        return not self.done()

    def cancel(self) -> bool:
        """Cancel the jobs (those still queued or running); True, as the original."""
        if not self._cancelled:
            self.qcgpjm.cancel(self.ids)
            self._cancelled = True
        return True

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled


class QCGPJExecutor(concurrent.futures.Executor):
    """The executor of ``qcg-pilotjob-executor-api``: template jobs on a LocalManager.

    Args:
        other_args: more server arguments of the manager (see :class:`LocalManager`).
        wd: the working directory (made if missing).
        resources: ``[name:]cores[,...]`` (the manager's ``--nodes``).
        reserve_core: keep one core for the manager (``--system-core``).
        enable_rt_stats: accepted; jobs.report has every run's times anyway.
        wrapper_rt_stats: accepted; no wrapper is used.
        log_level: the manager's log level.
    """

    def __init__(
        self,
        *other_args: str,
        wd: str = ".",
        resources: str | None = None,
        reserve_core: bool = False,
        enable_rt_stats: bool = False,
        wrapper_rt_stats: str | None = None,
        log_level: str = "info",
    ) -> None:
        self.finished = False
        service_level, client_level = self._setup_qcgpj_logging(log_level)
        args = ["--log", service_level, "--wd", wd]
        if resources:
            args += ["--nodes", str(resources)]
        if reserve_core:
            args.append("--system-core")
        if enable_rt_stats:
            args.append("--enable-rt-stats")
        if wrapper_rt_stats:
            args += ["--wrapper-rt-stats", wrapper_rt_stats]
        args.extend(other_args)
        os.makedirs(wd, exist_ok=True)
        with open(os.path.join(wd, "executor_api.log"), "w") as f:
            f.write(f"Starting QCG-PJ Manager with arguments: {args}")
        self._qcgpjm = LocalManager(
            args, {"log_file": os.path.join(wd, "api.log"), "log_level": client_level}
        )

    def __enter__(self) -> QCGPJExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Finish the manager (its unfinished jobs are stopped); again: nothing."""
        if not self.finished:
            self._qcgpjm.finish()
            self.finished = True

    def submit(  # type: ignore[override]
        self,
        fn: Callable[[], str | tuple[str, dict[str, Any]]],
        *args: Mapping[str, Any] | None,
        **kwargs: Any,
    ) -> QCGPJFuture:
        """Submit one job made from a template.

        Args:
            fn: returns the template: the text of a dict literal with ``$name``
                placeholders, or ``(text, defaults)``.
            args: dicts of values (later ones win over earlier, all over the defaults).
            kwargs: values that win over all others.

        Returns:
            The future of the job.

        Raises:
            KeyError: a placeholder without a value.
            ConnectionError: the manager rejected the job (``Request failed - ...``).
        """
        template = fn()
        text, defaults = template if isinstance(template, tuple) else (template, {})
        values: dict[str, Any] = {}
        for a in args:
            if a is not None:
                values.update(a)
        values.update(kwargs)
        job = ast.literal_eval(Template(textwrap.dedent(text)).substitute(defaults, **values))
        job["execution"].setdefault("env", {})["QCG_PM_EXEC_API_JOB_ID"] = "${jname}"
        ids = self._qcgpjm.submit(Jobs().add_std(job))
        return QCGPJFuture(ids, self._qcgpjm)

    @property
    def qcgpj_manager(self) -> LocalManager:
        """The manager the jobs run on."""
        return self._qcgpjm

    @staticmethod
    def _setup_qcgpj_logging(log_level: str) -> tuple[str, str]:
        level = log_level.upper()
        service = ServiceLogLevel[level].value if level in ServiceLogLevel.__members__ else "debug"
        client = ClientLogLevel[level].value if level in ClientLogLevel.__members__ else "debug"
        return service, client


# == a plain concurrent.futures.Executor =======================================


class JobFailedError(QcgpjError, RuntimeError):
    """A job of a :class:`PilotExecutor` ended FAILED or OMITTED.

    Attributes:
        name: the job.
        state: its final state.
    """

    def __init__(self, name: str, state: JobState) -> None:
        super().__init__(f"job {name!r} ended {state.value}")
        self.name = name
        self.state = state


class JobFuture(concurrent.futures.Future[JobState]):
    """The future of one job of a :class:`PilotExecutor`.

    Its result is ``JobState.SUCCEED``; a FAILED or OMITTED job raises
    :class:`JobFailedError`; ``cancel()`` cancels the job too.

    Attributes:
        name: the job's name.
    """

    def __init__(self, name: str, executor: PilotExecutor) -> None:
        super().__init__()
        self.name = name
        self._executor = executor

    def cancel(self) -> bool:
        """Cancel the job, unless it has ended; True if the future is now cancelled."""
        if not super().cancel():
            return False
        self._executor._cancel_job(self.name)
        return True


class PilotExecutor(concurrent.futures.Executor):
    """A :class:`concurrent.futures.Executor` of job descriptions, run by a Pilot
    on a thread of its own::

        with PilotExecutor(nodes="4", wd="run") as ex:
            futures = [ex.submit(exec="/bin/echo", args=[str(i)]) for i in range(10)]
            for f in concurrent.futures.as_completed(futures):
                print(f.name, f.result())

    Args:
        nodes: as :class:`~qcgpj_async.Pilot`'s (None: this host's cores).
        wd: the working directory.
        pilot_kwargs: more :class:`~qcgpj_async.Pilot` arguments.
    """

    def __init__(self, nodes: str | int | None = None, wd: str | None = None, **pilot_kwargs: Any):
        self._link = LocalLink(ServerArgs(pilot={"nodes": nodes, "wd": wd, **pilot_kwargs}))
        self._futures: dict[str, JobFuture] = {}
        self._shutdown = False
        self._lock = threading.Lock()
        self._link.finals.watchers.append(self._ended)

    def submit(  # type: ignore[override]
        self, job: Mapping[str, Any] | JobSpec | None = None, /, **simple: Any
    ) -> JobFuture:
        """Submit one job: a standard-format dict, a :class:`~qcgpj_async.JobSpec`,
        or the simple format's keywords (``exec``, ``args``, ``numCores``, ...).

        Raises:
            JobDescriptionError: the job is invalid (every problem named).
            RuntimeError: the executor was shut down.
        """
        if job is None:
            std = std_from_simple(simple)
        elif isinstance(job, JobSpec):
            std = job_to_std(job)
        else:
            std = dict(job)
            std.setdefault("name", str(uuid.uuid4()))
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
        future = JobFuture(str(std.get("name")), self)
        self._link.call(self._submit, std, future)
        return future

    async def _submit(self, std: dict[str, Any], future: JobFuture) -> None:
        (name,) = await self._link.pilot.submit(std)
        # In the loop, before the event feed can see the job end.
        self._futures[name] = future

    def _ended(self, job: str, state: str) -> None:
        future = self._futures.pop(job, None)
        if future is None or not future.set_running_or_notify_cancel():
            return
        final = JobState(state)
        if final is JobState.SUCCEED:
            future.set_result(final)
        elif final is JobState.CANCELED:
            future.set_exception(concurrent.futures.CancelledError(f"job {job!r} was cancelled"))
        else:
            future.set_exception(JobFailedError(job, final))

    def _cancel_job(self, name: str) -> None:
        self._link.cancel_soon(name)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; with ``cancel_futures`` the jobs not ended are cancelled;
        with ``wait`` this returns once every job has ended and the pilot has closed,
        else the pilot closes on its own thread once they have."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        if cancel_futures:
            for future in list(self._futures.values()):
                future.cancel()
        if wait:
            self._close()
        else:
            threading.Thread(target=self._close, name="PilotExecutor-shutdown").start()

    def _close(self) -> None:
        if self._link.open:
            self._link.wait4all(None)
        self._link.close()
