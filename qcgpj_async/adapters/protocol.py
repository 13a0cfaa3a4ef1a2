"""The original's request protocol, once, for every transport.

:meth:`Protocol.handle` maps one request dict (``{"request": "submit", ...}``)
to a Pilot call and its result to the original's reply dict (``{"code": 0|1,
"message"?: ..., "data"?: ...}``, with the original's messages). It never
raises: a malformed request, a rejected job or a bug in a handler is an error
reply, and the service goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from ..model import (
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    JobState,
    QcgpjError,
)
from ..runtime import Pilot

__all__ = ("Protocol", "error_reply", "invalid_reply", "ok_reply", "submit_error")

Reply = dict[str, Any]


def ok_reply(data: Any = None, message: str | None = None) -> Reply:
    """A success reply; keys whose value is None are left out."""
    out: Reply = {"code": 0}
    if message is not None:
        out["message"] = message
    if data is not None:
        out["data"] = data
    return out


def error_reply(message: str) -> Reply:
    """An error reply."""
    return {"code": 1, "message": message}


def submit_error(problems: Sequence[str]) -> str:
    """The message of a rejected submit, starting with the original's phrase (tools
    match on it): ``Job a already exist`` for names taken, else ``Wrong submit
    request: `` and every problem, each naming its job and field."""
    taken = [p.rpartition(": ")[2] for p in problems if p.endswith(" already exist")]
    if taken and len(taken) == len(problems):
        return "; ".join(taken)
    return "Wrong submit request: " + "; ".join(problems)


def invalid_reply(message: str) -> Reply:
    """The error reply of a request of the wrong form (the original's prefix)."""
    return error_reply(f"Invalid request: {message}")


def _names(request: dict[str, Any], what: str) -> list[str] | Reply:
    names = request.get("jobNames")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return invalid_reply(f"Wrong {what} request - missing job names")
    return names


class Protocol:
    """Serves requests against one Pilot.

    Args:
        pilot: the running pilot.
        zmq_address: the REP address to advertise in ``status`` (ZMQ transport).
        publisher: the PUB address to advertise as ``StatusPublisher``.
        log: where replies to rejected requests are logged.
    """

    def __init__(
        self,
        pilot: Pilot,
        *,
        zmq_address: str | None = None,
        publisher: str | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.pilot = pilot
        self.zmq_address = zmq_address
        self.publisher = publisher
        self.log = log or logging.getLogger("qcgpj_async.protocol")
        #: Set by a ``finish`` request: stop now, killing running jobs.
        self.finish = anyio.Event()
        #: Set by ``control finishAfterAllTasksDone``: stop once every job ended
        #: (jobs submitted meanwhile count too, as in the original).
        self.finish_after_all = anyio.Event()
        #: Set by the transport when the service is ending: no more submits.
        self.closing = False
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Reply]]] = {
            "submit": self._submit,
            "jobStatus": self._job_status,
            "jobInfo": self._job_info,
            "cancelJob": self._cancel,
            "removeJob": self._remove,
            "listJobs": self._list,
            "resourcesInfo": self._resources,
            "status": self._status,
            "control": self._control,
            "finish": self._finish,
            "register": self._governor_only,
            "notify": self._governor_only,
        }

    @property
    def finishing(self) -> bool:
        """Whether a finish of either kind was requested."""
        return self.finish.is_set() or self.finish_after_all.is_set()

    async def handle(self, request: object) -> Reply:
        """Answer one request; never raises (but for cancellation)."""
        if not isinstance(request, dict):
            return invalid_reply("Invalid request")
        name = request.get("request")
        if not isinstance(name, str) or not name:
            return invalid_reply("Invalid request")
        handler = self._handlers.get(name)
        if handler is None:
            return invalid_reply(f"Unknown request name: {name}")
        try:
            return await handler(request)
        except QcgpjError as e:
            return error_reply(str(e))
        except Exception as e:  # a bug must not take the service down
            self.log.exception("request %s failed", name)
            return error_reply(f"Internal error while handling {name}: {e!r}")

    async def _submit(self, request: dict[str, Any]) -> Reply:
        jobs = request.get("jobs")
        if not isinstance(jobs, list) or not jobs:
            return invalid_reply("Wrong submit request - missing jobs data")
        if self.finish.is_set() or self.closing:
            return error_reply("Finish request already requested - no more jobs accepted")
        try:
            names = await self.pilot.submit(jobs)
        except JobDescriptionError as e:
            return error_reply(submit_error(e.problems))
        return ok_reply({"submitted": len(names), "jobs": names}, f"{len(names)} jobs submitted")

    async def _job_status(self, request: dict[str, Any]) -> Reply:
        names = _names(request, "job status")
        if isinstance(names, dict):
            return names
        out: dict[str, Any] = {}
        for n in names:  # an unknown name fails the whole request, as in the original
            state = (await self.pilot.status(n))[n]
            out[n] = {"status": 0, "data": {"jobName": n, "status": state.value}}
        return ok_reply({"jobs": out})

    async def _job_info(self, request: dict[str, Any]) -> Reply:
        names = _names(request, "job info")
        if isinstance(names, dict):
            return names
        params = request.get("params")
        childs = bool(params.get("withChilds")) if isinstance(params, dict) else False
        out: dict[str, Any] = {}
        for n in names:  # an unknown name fails the whole request, as in the original
            info = (await self.pilot.info(n, with_childs=childs))[n]
            out[n] = {"status": 0, "data": info.to_dict()}
        return ok_reply({"jobs": out})

    async def _cancel(self, request: dict[str, Any]) -> Reply:
        names = _names(request, "cancel job")
        if isinstance(names, dict):
            return names
        # As the original: success with the errors by name, even when nothing was cancelled.
        canceled, errors = 0, {}
        for n in names:
            try:
                self.pilot.job_state(n)
            except JobNotFoundError as e:
                unknown_job = e.name == n.partition(":")[0]  # else: an unknown iteration
                errors[n] = f"Job/iteration {e.name} doesn't exist" if unknown_job else str(e)
                continue
            if await self.pilot.cancel(n):
                canceled += 1
            else:
                errors[n] = f"Job/iteration {n} already finished"
        self._log_errors("cancelJob", errors)
        return ok_reply({"canceled": canceled, **({"errors": errors} if errors else {})})

    async def _remove(self, request: dict[str, Any]) -> Reply:
        names = _names(request, "remove job")
        if isinstance(names, dict):
            return names
        # As the original: success with the errors by name, even when nothing was removed.
        removed, errors = 0, {}
        for n in names:
            try:
                removed += await self.pilot.remove(n)
            except (JobNotFoundError, InvalidTransition) as e:
                errors[n] = str(e)
        self._log_errors("removeJob", errors)
        return ok_reply({"removed": removed, **({"errors": errors} if errors else {})})

    def _log_errors(self, what: str, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            self.log.warning("%s %s: %s", what, name, message)

    async def _list(self, request: dict[str, Any]) -> Reply:
        jobs: dict[str, Any] = {}
        in_queue = 0  # the original's position in its (arrival-ordered) queue
        for name, state in (await self.pilot.list()).items():
            entry: dict[str, Any] = {"status": state.value}
            messages = self.pilot.job_messages(name)
            if messages:
                entry["messages"] = "\n".join(messages)
            if state is JobState.QUEUED:
                entry["inQueue"] = in_queue
                in_queue += 1
            jobs[name] = entry
        return ok_reply({"length": len(jobs), "jobs": jobs})

    async def _resources(self, request: dict[str, Any]) -> Reply:
        return ok_reply((await self.pilot.resources()).to_dict())

    async def _status(self, request: dict[str, Any]) -> Reply:
        options = request.get("options")
        if isinstance(options, dict) and options.get("allJobsFinished"):
            done = not self.pilot.unfinished_jobs()
            return ok_reply({"AllJobsFinished": done})
        return ok_reply(
            self.pilot.service_status(zmq_address=self.zmq_address, publisher=self.publisher)
        )

    async def _control(self, request: dict[str, Any]) -> Reply:
        command = request.get("command")
        if not command:
            return invalid_reply("Wrong control request - missing command")
        if not isinstance(command, str):
            # Never format it: a deeply nested list has no repr (RecursionError).
            return invalid_reply(
                f"Wrong control request - command: expected a string, got {type(command).__name__}"
            )
        if command != "finishAfterAllTasksDone":
            return invalid_reply(f'Wrong control request - unknown command "{command}"')
        if self.finishing:
            return error_reply("Finish request already requested")
        self.finish_after_all.set()
        return ok_reply(message="finishAfterAllTasksDone command accepted")

    async def _finish(self, request: dict[str, Any]) -> Reply:
        if self.finish.is_set():
            return error_reply("Finish request already requested")
        self.finish.set()
        return ok_reply({"when": "0s"})

    async def _governor_only(self, request: dict[str, Any]) -> Reply:
        return error_reply(
            f"Invalid request: {request['request']} is for a governor manager; "
            "this is a plain manager"
        )
