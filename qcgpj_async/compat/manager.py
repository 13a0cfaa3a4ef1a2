"""The original's synchronous managers (``qcg.pilotjob.api.manager``), on our Pilot.

:class:`LocalManager` runs our :class:`~qcgpj_async.Pilot` in this process,
on a thread of its own: no service process, no ZMQ, and a start and finish
of milliseconds. :class:`Manager` talks to a running service over ZMQ (ours,
``qcgpj-async --net``, or the original's; extra ``[zmq]``). Both have the
original's methods, arguments, reply shapes and errors; waits are driven by
the pilot's events, never by polling.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from ..model import QcgpjError
from . import errors
from ._links import Link, LocalLink, ZmqLink, service_error, zmq_module
from ._server_args import parse_server_args
from .jobinfo import JobInfo

__all__ = ("LocalManager", "Manager")

_logger = logging.getLogger("qcgpj_async.compat")
# A library logs nowhere unless the program says where (no lines on stderr):
# a rejected request is an exception in the caller already.
_logger.addHandler(logging.NullHandler())

Reply = dict[str, Any]


def _names(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _validate(reply: Reply) -> Any:
    """The ``data`` of a success reply (the original's ``_validate_response``)."""
    _validate_wo_data(reply)
    if "data" not in reply:
        raise errors.InternalError("Invalid reply from the service")
    return reply["data"]


def _validate_wo_data(reply: Reply) -> Reply:
    if not isinstance(reply, dict) or "code" not in reply:
        raise errors.InternalError("Invalid reply from the service")
    if reply["code"] != 0:
        if "message" in reply:
            raise errors.ConnectionError(f"Request failed - {reply['message']}")
        raise errors.ConnectionError("Request failed")
    return reply


class Manager:
    """A client of one running pilot-job manager, synchronous, over ZMQ.

    Args:
        address: ``[proto://]host[:port]`` (``tcp`` and ``5555`` by default);
            None: ``$QCG_PM_ZMQ_ADDRESS``, else ``tcp://127.0.0.1:5555``.
        cfg: ``poll_delay`` (seconds between the safety polls of a wait, 5),
            ``init_timeout`` (seconds to wait for the first reply, 300),
            ``log_file`` and ``log_level`` (this client's log; none by default).
            Other keys are ignored.

    Raises:
        ImportError: pyzmq is missing (extra ``[zmq]``).
        ConnectionError: no reply from the address within ``init_timeout``.
    """

    DEFAULT_ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"
    DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
    DEFAULT_PROTO = "tcp"
    DEFAULT_PORT = "5555"
    DEFAULT_POLL_DELAY = 5
    DEFAULT_PUB_TIMEOUT = 5 * 60

    _link: Link

    def __init__(self, address: str | None = None, cfg: dict[str, Any] | None = None) -> None:
        cfg = dict(cfg or {})
        self._setup_logging(cfg)
        self.default_poll_delay = float(cfg.get("poll_delay", Manager.DEFAULT_POLL_DELAY))
        self.default_pub_timeout = float(cfg.get("pub_timeout", Manager.DEFAULT_PUB_TIMEOUT))
        if address is None:
            address = os.environ.get(Manager.DEFAULT_ADDRESS_ENV, Manager.DEFAULT_ADDRESS)
        self._address: str | None = Manager._parse_address(address)
        zmq_module()  # the ImportError naming the extra, before anything starts
        try:
            self._link = ZmqLink(
                self._address,
                poll_delay=self.default_poll_delay,
                connect_timeout=float(cfg.get("init_timeout", 300)),
            )
        except QcgpjError as e:
            raise errors.ConnectionError(f"Failed to connect to {self._address} - {e}") from None
        _logger.info("connected to the manager at %s", self._address)

    @staticmethod
    def _parse_address(address: str) -> str:
        if not re.match(r"\w*://", address):
            address = f"{Manager.DEFAULT_PROTO}://{address}"
        if not re.match(r".*:\d+", address):
            address = f"{address}:{Manager.DEFAULT_PORT}"
        return address

    def _setup_logging(self, cfg: dict[str, Any]) -> None:
        # The original always wrote .qcgpjm-client/api.log in the current
        # directory; we write a client log only where one is asked for.
        self.log_handler: logging.Handler | None = getattr(self, "log_handler", None)
        if self.log_handler is None and cfg.get("log_file"):
            path = os.path.abspath(str(cfg["log_file"]))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.log_handler = logging.FileHandler(path, mode="a")
            self.log_handler.setFormatter(logging.Formatter("%(asctime)-15s: %(message)s"))
            _logger.addHandler(self.log_handler)
            level = str(cfg.get("log_level", "info")).lower()
            _logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)

    # -- requests ------------------------------------------------------------------

    def _assure_connected(self) -> None:
        if not self._link.open:
            raise errors.ConnectionError("Not connected")

    def _send_and_validate_result(self, data: Reply, valid_method: Any = None) -> Any:
        self._assure_connected()
        return (valid_method or _validate)(self._link.request(data))

    def send_request(self, request: Reply) -> Reply:
        """Send any request; the whole reply, once checked (code 0).

        Raises:
            ConnectionError: the manager answered with an error.
        """
        reply: Reply = self._send_and_validate_result(request, _validate_wo_data)
        return reply

    def resources(self) -> dict[str, int]:
        """``{total_nodes, total_cores, used_cores, free_cores}``."""
        data: dict[str, int] = self._send_and_validate_result({"request": "resourcesInfo"})
        return data

    def submit(self, jobs: Any) -> list[str]:
        """Submit jobs (all or none); their names, in order.

        Args:
            jobs: a :class:`~qcgpj_async.compat.Jobs` (or anything with
                ``ordered_jobs()`` or ``to_std()``), or a list of standard-format dicts.

        Raises:
            ConnectionError: ``Request failed - <every problem found>``.
        """
        if hasattr(jobs, "ordered_jobs"):
            std = jobs.ordered_jobs()
        elif hasattr(jobs, "to_std"):  # qcgpj_async.Jobs
            std = jobs.to_std()
        else:
            std = list(jobs)
        data = self._send_and_validate_result({"request": "submit", "jobs": std})
        if "submitted" not in data or "jobs" not in data:
            raise errors.InternalError("Missing response data")
        names: list[str] = data["jobs"]
        return names

    def list(self) -> dict[str, Any]:
        """Every job: ``{name: {"status": ..., "messages"?: ..., "inQueue"?: ...}}``."""
        data = self._send_and_validate_result({"request": "listJobs"})
        if "jobs" not in data:
            raise errors.InternalError("Rquest failed - missing jobs data")
        jobs: dict[str, Any] = data["jobs"]
        return jobs

    def status(self, names: str | Iterable[str]) -> dict[str, Any]:
        """``{"jobs": {name: {"status": 0, "data": {"jobName", "status"}}}}`` (also ``job:it``).

        Raises:
            ConnectionError: an unknown name (``Request failed - Job 'x' doesn't exist``).
        """
        data: dict[str, Any] = self._send_and_validate_result(
            {"request": "jobStatus", "jobNames": _names(names)}
        )
        return data

    def info(self, names: str | Iterable[str], **kwargs: Any) -> dict[str, Any]:
        """``{"jobs": {name: {"status": 0, "data": {jobName, status, iterations?, childs?,
        messages?, runtime?, history}}}}``; ``withChilds=True`` adds each iteration.
        """
        request: Reply = {"request": "jobInfo", "jobNames": _names(names)}
        if kwargs:
            request["params"] = kwargs
        data: dict[str, Any] = self._send_and_validate_result(request)
        return data

    def info_parsed(self, names: str | Iterable[str], **kwargs: Any) -> dict[str, JobInfo]:
        """:meth:`info`, each job parsed into a :class:`JobInfo`."""
        return {
            name: JobInfo.from_job(entry.get("data", {}))
            for name, entry in self.info(names, **kwargs).get("jobs", {}).items()
        }

    def remove(self, names: str | Iterable[str]) -> None:
        """Forget finished jobs (their names can be used again)."""
        job_names = _names(names)
        self._send_and_validate_result({"request": "removeJob", "jobNames": job_names})
        self._link.finals.forget(job_names)

    def cancel(self, names: str | Iterable[str]) -> None:
        """Cancel jobs or iterations (``job:it``)."""
        self._send_and_validate_result({"request": "cancelJob", "jobNames": _names(names)})

    def system_status(self) -> dict[str, Any]:
        """The ``status`` data: System, Resources, JobStats, IterationStats."""
        data: dict[str, Any] = self._send_and_validate_result({"request": "status"})
        return data

    # -- waits ---------------------------------------------------------------------

    def wait4(self, names: str | Iterable[str], timeout: float | None = None) -> dict[str, str]:
        """Wait until the jobs (or iterations ``job:it``) have ended.

        Returns:
            ``{name: final state}``, e.g. ``{"a": "SUCCEED"}``.

        Raises:
            TimeoutElapsed: not all ended within ``timeout`` seconds.
            ConnectionError: an unknown name.
        """
        self._assure_connected()
        ended = self._link.wait4(_names(names), timeout)
        # Known now, even if the event feed has not caught up: done() agrees with us.
        self._link.finals.jobs.update((n, s) for n, s in ended.items() if ":" not in n)
        return ended

    def wait4all(self, timeout_secs: float | None = None) -> None:
        """Wait until every job of the manager has ended.

        Raises:
            TimeoutElapsed: some are still running after ``timeout_secs``.
        """
        self._assure_connected()
        self._link.wait4all(timeout_secs)

    def wait4_any_job_finish(self, timeout_secs: float | None = None) -> tuple[str, str]:
        """The next job or iteration (``job:it``) to end, and its state.

        Each end is reported once, oldest first, from the manager's start (or
        this client's connect) on, as the original's subscription delivered them.

        Raises:
            TimeoutElapsed: none ended within ``timeout_secs`` seconds.
            ServiceError: the service publishes no events.
        """
        if not self._link.has_events:
            raise errors.ServiceError("Service not support publishing status events")
        self._assure_connected()
        return self._link.finals.take(timeout_secs)

    @staticmethod
    def is_status_finished(status: str) -> bool:
        """Whether ``status`` is final (SUCCEED, FAILED, CANCELED, OMITTED)."""
        return status in ("SUCCEED", "FAILED", "CANCELED", "OMITTED")

    # -- the end -------------------------------------------------------------------

    def finish(self) -> None:
        """Ask the manager to finish (it stops its unfinished jobs), and disconnect.

        Raises:
            ConnectionError: already finished.
        """
        self._send_and_validate_result({"request": "finish"})
        self._link.close()
        self.cleanup()

    def cleanup(self) -> None:
        """Remove this client's log handler."""
        if self.log_handler is not None:
            self.log_handler.close()
            _logger.removeHandler(self.log_handler)
            self.log_handler = None

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._link.open:
            self.finish()


#: LocalManagers not finished yet: finished when the interpreter exits.
_open_managers: weakref.WeakSet[LocalManager] = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook_set = False


def _finish_open_managers() -> None:
    for manager in list(_open_managers):
        _logger.warning("LocalManager not finished: its jobs are stopped at exit")
        manager.finish()


def _set_exit_hook() -> None:
    # threading's exit hooks run before the interpreter joins its threads (the
    # portal's among them): an unfinished manager would otherwise hang the exit.
    global _exit_hook_set
    with _exit_hook_lock:
        if not _exit_hook_set:
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                register(_finish_open_managers)
            else:  # pragma: no cover - every CPython we support has it
                import atexit

                atexit.register(_finish_open_managers)
            _exit_hook_set = True


class LocalManager(Manager):
    """A manager run in this process: our Pilot, on a thread of its own.

    Args:
        server_args: the original service's flags, each flag and value a
            separate item: ``--wd``, ``--nodes``, ``--system-core``,
            ``--resources``, ``--log``, ``--report-format``, ``--report-file``,
            ``--id``, ``--resume``; ``--net`` (and its port flags) also serves
            the ZMQ interface (extra ``[zmq]``). Flags that change nothing here
            (``--disable-nl``, ``--tags``, ...) are noted in the log.
        cfg: as :class:`Manager`'s; unknown keys are ignored.

    Raises:
        WrongArgumentsError: a server argument we do not support, named.
        ServiceError: the pilot did not start (e.g. a working directory that
            cannot be made), with the reason.
    """

    def __init__(
        self, server_args: list[Any] | None = None, cfg: dict[str, Any] | None = None
    ) -> None:
        cfg = dict(cfg or {})
        self._setup_logging(cfg)
        self.default_poll_delay = float(cfg.get("poll_delay", Manager.DEFAULT_POLL_DELAY))
        self.default_pub_timeout = float(cfg.get("pub_timeout", Manager.DEFAULT_PUB_TIMEOUT))
        args = parse_server_args(server_args)
        for note in args.notes:
            _logger.info(note)
        if args.net:
            zmq_module()
        try:
            link = LocalLink(args)
        except (QcgpjError, OSError, ValueError) as e:
            raise service_error(e) from e
        self._link = link
        self._address = link.address
        _set_exit_hook()
        _open_managers.add(self)
        _logger.info("manager %s started", link.pilot.id)

    @property
    def pilot_id(self) -> str:
        """The instance id (the service directory is ``.qcgpjm-service-<id>``)."""
        assert isinstance(self._link, LocalLink)
        return self._link.pilot.id

    @property
    def address(self) -> str | None:
        """The ZMQ address when started with ``--net``, else None."""
        return self._address

    def finish(self) -> None:
        """Stop the manager: unfinished jobs are stopped (SIGTERM, SIGKILL after
        the kill grace), the service directory is completed, the thread ends.

        Raises:
            ConnectionError: already finished.
        """
        self._assure_connected()
        _open_managers.discard(self)
        self._link.close()
        self.cleanup()

    def kill_manager_process(self) -> None:
        """SIGKILL every running job now, and stop (``finish`` is the normal way)."""
        _open_managers.discard(self)
        assert isinstance(self._link, LocalLink)
        self._link.kill()
        self.cleanup()

    @staticmethod
    def is_notebook() -> bool:
        """Whether this runs in a Jupyter kernel (nothing depends on it here)."""
        try:
            shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
        except NameError:
            return False
        return bool(shell == "ZMQInteractiveShell")
