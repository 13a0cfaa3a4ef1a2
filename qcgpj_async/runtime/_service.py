"""The service directory: ``<wd>/.qcgpjm-service-<id>/`` with its log, report, final status.

``service.log`` is concise: one INFO line per job or iteration that ends
(with its allocation, exit code and run time), DEBUG for the steps between.
``jobs.report`` holds one line (JSON) or block (text) per finished iteration
and per finished job, in the original's format. Both reach their files at
most 20 ms after a job's end (one write for many), at once when a ``wait4``
returns, and at the close; the journal (``_journal``) is written at every
batch of events.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import itertools
import json
import json.encoder
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from ..engine import Job, Run
from ..model import JobSpec, JobState, PilotStartError, job_to_std
from ._info import RunInfo, format_rtime, format_time
from ._places import RunPlaces

__all__ = ("ServiceDir", "default_id", "service_stats", "status_document", "user_name")


_ids = itertools.count(1)


def default_id() -> str:
    """The original's default instance id, ``<host>.<pid>``; ``<host>.<pid>.<n>`` for the
    n-th Pilot of one process, so that its jobs' ``QCG_PM_STEP_ID`` stay unique."""
    n = next(_ids)
    return f"{socket.gethostname()}.{os.getpid()}" + (f".{n}" if n > 1 else "")


_iso_second: tuple[int, str] = (-1, "")  # one second and its text: one object, read at once


def _iso(t: float) -> str:
    """``datetime.fromtimestamp(t).isoformat()`` (same rounding), the date part made once
    per second: four of them per report line cost more than the rest of it."""
    global _iso_second
    if t < 0:  # before 1970: not worth a fast path
        return _dt.datetime.fromtimestamp(t).isoformat()
    sec = int(t)
    us = round((t - sec) * 1_000_000)  # half to even, as datetime rounds
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    cached = _iso_second
    if cached[0] != sec:
        cached = _iso_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(sec)))
    return f"{cached[1]}.{us:06d}" if us else cached[1]


_q = json.encoder.encode_basestring_ascii  # a JSON string, as json.dumps writes it
_NAME = {s: s.value for s in JobState}  # a state's name, without the enum's descriptor


def run_json(
    label: str, run: Run, alloc: str, messages: str | None, wd: str | None, pname: str | None
) -> str:
    """The ``jobs.report`` entry of one run, as ``json.dumps`` writes the original's dict
    (``name, state, history, runtime[, messages]``), built as text: a third of the cost.
    A run that ended before a resume (its history is its end alone) adds
    ``"restored": true``."""
    hist = ", ".join([f'{{"state": "{_NAME[s]}", "date": "{_iso(t)}"}}' for s, t in run.history])
    rt = f'"allocation": {_q(alloc)}'
    if wd is not None:
        rt += f', "wd": {_q(wd)}'
    rtime = run.rtime
    if rtime is not None:
        rt += f', "rtime": "{format_rtime(rtime)}"'
    if run.exit_code is not None:
        rt += f', "exit_code": "{run.exit_code}"'
    if run.pid is not None:
        rt += f', "pid": "{run.pid}"'
    if pname is not None:
        rt += f', "pname": {_q(pname)}'
    if run.allocation.has_gpus:  # its device ids per node, as the allocation's syntax
        gpus = ",".join(f"{p.node}[{':'.join(p.gpus)}]" for p in run.allocation.parts if p.gpus)
        rt += f', "gpus": {_q(gpus)}'
    tail = f', "messages": {_q(messages)}' if messages else ""
    if len(run.history) == 1:  # only its end: restored from the journal (--resume)
        tail += ', "restored": true'
    return (
        f'{{"name": {_q(label)}, "state": "{_NAME[run.state]}", "history": [{hist}], '
        f'"runtime": {{{rt}}}{tail}}}'
    )


#: A job's resources when it gives none (as the original's report shows them).
_DEFAULT_RESOURCES = {"numCores": {"exact": 1}}


def _spec_entries(spec: JobSpec) -> dict[str, Any]:
    """The ``execution``, ``resources`` and (where given) ``dependencies`` of a report entry."""
    std = job_to_std(spec)
    out = {"execution": std["execution"], "resources": std.get("resources") or _DEFAULT_RESOURCES}
    if std.get("dependencies"):
        out["dependencies"] = std["dependencies"]
    return out


class ServiceDir:
    """Creates and writes the files of one pilot's service directory."""

    def __init__(
        self,
        root_wd: str,
        instance_id: str,
        *,
        report_format: str = "json",
        report_file: str = "jobs.report",
        log_level: str = "info",
        places: RunPlaces | None = None,
    ) -> None:
        """Create the directory (a numbered suffix when the id is taken) and open its files;
        ``places``: where the runs reported ran."""
        self._places = places if places is not None else RunPlaces()
        if report_format not in ("json", "text", "none"):
            raise ValueError(f"report format {report_format!r}: one of json, text, none")
        if not report_file or os.sep in report_file or report_file in (".", ".."):
            raise PilotStartError(
                f"report file {report_file!r}: a file name in the service "
                "directory, without a directory part"
            )
        base = os.path.join(root_wd, f".qcgpjm-service-{instance_id}")
        path, n = base, 0
        while True:
            try:
                os.makedirs(path)
                break
            except FileExistsError:
                n += 1
                path = f"{base}.{n}"
            except OSError as e:
                raise PilotStartError(
                    f"cannot create the service directory {path!r}: {e.strerror or e}"
                ) from None
        self.path = path
        self.report_format = report_format
        self.report_path = os.path.join(path, report_file) if report_format != "none" else None
        try:
            self._report: IO[str] | None = (
                open(self.report_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
                if self.report_path
                else None
            )
        except OSError as e:
            os.rmdir(path)  # still empty
            raise PilotStartError(
                f"cannot create the report file {self.report_path!r}: {e.strerror or e}"
            ) from None
        self.log = logging.getLogger(f"qcgpj_async.service.{os.path.basename(path)}")
        self.log.propagate = False
        self.log.setLevel(getattr(logging, log_level.upper(), logging.INFO))
        self._handler = logging.FileHandler(os.path.join(path, "service.log"), encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(self._handler)
        self.log_info = self.log.isEnabledFor(logging.INFO)
        self._stamp_sec, self._stamp, self._log_dirty = -1, "", False
        self.dirty = False  # lines written since the last flush
        self._tails: dict[tuple[int, int], tuple[object, object, str]] = {}
        self.log_debug = self.log.isEnabledFor(logging.DEBUG)

    def _info(self, message: str) -> None:
        """One INFO line of a job's end, as ``self.log.info`` writes it, at a fifth of its cost.

        Written to the log's stream without a flush (:meth:`flush` does it, at most
        ``REPORT_DELAY`` later, see the Pilot); the other lines go through ``logging``.
        """
        now = time.time()
        sec = int(now)
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
        stream = self._handler.stream
        if stream is None:  # closed
            self.log.info("%s", message)
            return
        stream.write(f"{self._stamp},{int((now - sec) * 1000):03d} INFO {message}\n")
        self._log_dirty = self.dirty = True

    # -- report ----------------------------------------------------------------

    def report_run(self, job: Job, run: Run) -> None:
        """One finished iteration (or plain job) into jobs.report and the log."""
        label = job.name if run.index is None else f"{job.name}:{run.index}"
        alloc = str(run.allocation)
        if self.log_info:
            self._info(
                f"{label} {_NAME[run.state]} alloc={alloc} exit={run.exit_code} "
                f"rtime={run.rtime or 0.0:.3f}s" + (f" ({run.message})" if run.message else "")
            )
        if self._report is None:
            return
        messages = run.message or (
            "\n".join(job.messages) if run.index is None and job.messages else None
        )
        if self.report_format == "json":
            # Read here, not through RunPlaces' methods: once per job (its layout, 2 per id).
            refs, at = self._places.refs, 2 * run.id
            wd, pname = (refs[at], refs[at + 1]) if at < len(refs) else (None, None)
            line = run_json(label, run, alloc, messages, wd, pname)
            if run.index is None:
                line = line[:-1] + self._spec_tail(job) + "}"
            self._report.write(line + "\n")
        else:
            runtime = RunInfo.of(run, self._places).to_dict()
            self._write_text(label, run.state, run.history, runtime, messages)
        self.dirty = True

    def _spec_tail(self, job: Job) -> str:
        """``, "execution": {...}, "resources": {...}`` of a job's report entry.

        Made once per execution and resources objects (ended jobs with equal
        ones share them): unstructuring the spec per line cost a tenth of the
        pilot's time per job.
        """
        spec = job.spec
        key = (id(spec.execution), id(spec.resources))
        hit = self._tails.get(key)
        if hit is not None and hit[0] is spec.execution and hit[1] is spec.resources:
            return hit[2]
        tail = ", " + json.dumps(_spec_entries(spec))[1:-1]
        if len(self._tails) > 1024:
            self._tails.clear()
        self._tails[key] = (spec.execution, spec.resources, tail)
        return tail

    def report_iteration(self, job: str, index: int, state: JobState, t: float) -> None:
        """An iteration that ended without running (CANCELED while queued, OMITTED), as the
        original: its final state at ``t`` and an empty runtime."""
        label = f"{job}:{index}"
        if self.log_info:
            self._info(f"{label} {state.value}")
        if self._report is None:
            return
        if self.report_format == "json":
            self._report.write(
                f'{{"name": {_q(label)}, "state": "{state.value}", "history": '
                f'[{{"state": "{state.value}", "date": "{_iso(t)}"}}], '
                '"runtime": {}}\n'
            )
        else:
            self._write_text(label, state, [(state, t)], None, None)
        self.dirty = True

    def report_job(self, job: Job) -> None:
        """A finished job that has no single run: iteration jobs, never-run jobs."""
        if self.log_info:
            extra = f" ({'; '.join(job.messages)})" if job.messages else ""
            its = f" iterations={job.done - job.failed}/{job.total} ok" if job.iterative else ""
            self._info(f"{job.name} {job.state.value}{its}{extra}")
        if self._report is None:
            return
        messages = "\n".join(job.messages) if job.messages else None
        if self.report_format == "json":
            entry: dict[str, Any] = {
                "name": job.name,
                "state": job.state.value,
                "history": [{"state": s.value, "date": _iso(t)} for s, t in job.history],
            }
            if job.iterative:
                entry["iterations"] = {
                    "start": job.start,
                    "stop": job.stop,
                    "total": job.total,
                    "finished": job.done,
                    "failed": job.failed,
                }
            if messages:
                entry["messages"] = messages
            entry.update(_spec_entries(job.spec))
            self._report.write(json.dumps(entry) + "\n")
        else:
            self._write_text(job.name, job.state, job.history, None, messages)
        self.dirty = True

    def _write_text(
        self,
        label: str,
        state: JobState,
        history: list[tuple[JobState, float]],
        runtime: dict[str, str] | None,
        messages: str | None,
    ) -> None:
        assert self._report is not None
        lines = [f"{label} ({state.value})"]
        lines.extend(f"\t{format_time(t)}: {s.value}" for s, t in history)
        for k, v in (runtime or {}).items():
            lines.append(f"\t{k}: {v}")
        if messages:
            lines.append(f"\tmessages: {messages}")
        self._report.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        """Push buffered report and log lines to their files."""
        self.dirty = False
        if self._report is not None:
            self._report.flush()
        if self._log_dirty:
            self._log_dirty = False
            self._handler.flush()

    # -- the end -----------------------------------------------------------------

    def write_final_status(self, status: dict[str, Any]) -> None:
        """``final_status.json``: the ``status`` data at exit."""
        with open(os.path.join(self.path, "final_status.json"), "w", encoding="utf-8") as f:
            json.dump(status, f, indent=2)

    def close(self) -> None:
        """Close the report and the log."""
        if self._report is not None:
            self._report.close()
            self._report = None
        self.log.removeHandler(self._handler)
        self._handler.close()


def service_stats(c: Mapping[JobState, int], what: str) -> dict[str, int]:
    """The ``JobStats``/``IterationStats`` part of the ``status`` reply."""
    return {
        f"Total{what}": sum(c.values()),
        f"InSchedule{what}": c[JobState.QUEUED] + c[JobState.SCHEDULED],
        f"Failed{what}": c[JobState.FAILED] + c[JobState.OMITTED],
        f"Finished{what}": c[JobState.SUCCEED] + c[JobState.CANCELED],
        f"Executing{what}": c[JobState.EXECUTING],
    }


_GPU_KEYS = ("TotalGpus", "UsedGpus", "FreeGpus")


def status_document(
    *,
    instance_id: str,
    started_at: float,
    wd: str,
    zmq_address: str | None,
    publisher: str | None,
    ifaces: list[str],
    nodes: int,
    cores: tuple[int, int, int],
    jobs: Mapping[JobState, int],
    gpus: tuple[int, int, int] = (0, 0, 0),
    iterations: Mapping[JobState, int],
) -> dict[str, Any]:
    """The original's ``status`` data (also written to final_status.json).

    Args:
        instance_id: the pilot's id.
        started_at: when it started (``time.time()``).
        wd: its working directory.
        zmq_address: where its ZMQ interface listens, if any.
        publisher: where its events are published, if anywhere.
        ifaces: the names of its interfaces.
        nodes: how many nodes it has.
        cores: total, used and free cores.
        gpus: total, used and free GPUs (listed only where the total is not 0).
        jobs: how many jobs are in each state.
        iterations: how many iterations are in each state.
    """
    now = time.time()
    total, used, free = cores
    return {
        "System": {
            "InstanceId": instance_id,
            "Started": str(_dt.datetime.fromtimestamp(started_at)),
            "Generated": str(_dt.datetime.fromtimestamp(now)),
            "Uptime": str(_dt.timedelta(seconds=now - started_at)),
            "Zmqaddress": zmq_address,
            "Ifaces": ifaces,
            "StatusPublisher": publisher,
            "Host": socket.gethostname(),
            "Account": user_name(),
            "Wd": wd,
            "PythonVersion": sys.version.replace("\n", " "),
            "Python": sys.executable,
            "Platform": sys.platform,
        },
        "Resources": {
            "TotalNodes": nodes,
            "TotalCores": total,
            "UsedCores": used,
            "FreeCores": free,
            **(dict(zip(_GPU_KEYS, gpus, strict=True)) if gpus[0] else {}),
        },
        "JobStats": service_stats(jobs, "Jobs"),
        "IterationStats": service_stats(iterations, "Iterations"),
    }


def user_name() -> str:
    """Who runs the pilot (the uid where there is no user name)."""
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user name in a container
        return str(os.getuid())
