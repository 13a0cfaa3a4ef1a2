"""The file transport: a JSON list of requests, processed in order (batch mode).

Each reply is logged to the pilot's service.log; a rejected request, and each
name a cancelJob or removeJob could not act on (the reply is a success with
``errors``, as the original's), is also reported on stderr, one line each, so
a batch user sees it (the original writes it only to its log).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import attrs

from ..model import QcgpjError
from .protocol import Protocol

__all__ = ("RequestFileError", "FileRun", "load_requests", "run_requests")


class RequestFileError(QcgpjError, ValueError):
    """The request file is missing, not JSON, or not a list of requests."""


def load_requests(path: str | os.PathLike[str]) -> list[Any]:
    """Read a request file.

    Raises:
        RequestFileError: naming the file and, for bad JSON, the line and column.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise RequestFileError(f"request file {name!r} not found") from None
    except OSError as e:
        raise RequestFileError(f"request file {name!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise RequestFileError(f"request file {name!r}: not UTF-8 text (byte {e.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestFileError(
            f"request file {name!r}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise RequestFileError(f"request file {name!r}: JSON nested too deeply") from None
    if isinstance(data, dict) and "request" in data:
        data = [data]  # one request alone: be lenient
    if not isinstance(data, list):
        raise RequestFileError(
            f"request file {name!r}: must hold a JSON list of requests, not {type(data).__name__}"
        )
    return data


@attrs.define
class FileRun:
    """What happened to the requests of one file."""

    requests: int = 0
    rejected: int = 0
    finish: bool = False  # a ``finish`` request stopped the run
    #: Jobs of submits left out because the resumed journal has them (``known``).
    resumed_jobs: int = 0


async def run_requests(
    protocol: Protocol,
    requests: list[Any],
    report: Callable[[str], None],
    known: set[str] | None = None,
) -> FileRun:
    """Process requests in order until the list ends or a ``finish`` request.

    Args:
        protocol: serves the requests.
        requests: as loaded by :func:`load_requests`; each entry is set to None
            as its request is taken.
        report: called with one line for each rejected request, and for each
            name a cancelJob or removeJob could not act on (both make the exit code 2).
        known: jobs a resumed journal already has: a submit leaves them out (the
            request file of the first run, given again, goes on where it stopped).
    """
    run = FileRun()
    log = protocol.log
    protocol.pilot.interfaces.add("FILE")
    for i, request in enumerate(requests, 1):
        run.requests += 1
        requests[i - 1] = None  # answered requests are not kept (100,000 jobs: ~50 MB)
        if known and isinstance(request, dict) and request.get("request") == "submit":
            request = _without_known(request, known, run, log, i)
            if request is None:
                continue
        reply = await protocol.handle(request)
        name = request.get("request") if isinstance(request, dict) else None
        if reply["code"] != 0:
            run.rejected += 1
            report(f"request #{i} ({name or 'invalid'}) rejected: {reply.get('message')}")
            log.warning("request #%d (%s) rejected: %s", i, name, reply.get("message"))
        else:
            log.info("request #%d (%s): %s", i, name, json.dumps(reply)[:2000])
            data = reply.get("data")
            errors = data.get("errors") if isinstance(data, dict) else None
            if errors:  # cancelJob, removeJob: a success naming what could not be done
                run.rejected += 1
                for job, message in errors.items():
                    report(f"request #{i} ({name}): {job}: {message}")
        if protocol.finish.is_set():
            run.finish = True
            break
    return run


def _without_known(
    request: dict[str, Any], known: set[str], run: FileRun, log: Any, i: int
) -> dict[str, Any] | None:
    """The submit without the jobs a resumed journal has (None: nothing left)."""
    jobs = request.get("jobs")
    if not isinstance(jobs, list):
        return request
    left = [j for j in jobs if not (isinstance(j, dict) and j.get("name") in known)]
    if len(left) == len(jobs):
        return request
    run.resumed_jobs += len(jobs) - len(left)
    log.info("request #%d (submit): %d jobs resumed from the journal", i, len(jobs) - len(left))
    return {**request, "jobs": left} if left else None
