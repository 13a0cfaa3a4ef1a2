"""The journal: ``journal.jsonl`` in the service directory, for ``--resume``.

One JSON object per line, appended, never rewritten:

- ``{"t": "open", "v": 1, "id": ..., "time": ..., "from": <journal resumed> | null,
  "pid": ..., "host": ..., "nodes": {<name>: <usable cores>, ...}}`` first (``pid``,
  ``host`` and ``nodes`` let ``qcgpj-async report``/``status`` tell a live service
  from a dead one and compute utilisation per node);
- ``{"t": "submit", "time": ..., "vars": {rcnt, uniq, ...}, "jobs": [<standard format>]}``
  for each accepted batch (with its submit-time variables, so ``${uniq}`` keeps
  its value across a resume);
- ``{"t": "end", "job": ..., "it": <index> | null, "state": ..., "code": <exit> | null,
  "time": ..., "msg"?: ...}`` for every final state of a job (``it`` null) or iteration;
- ``{"t": "run", "job": ..., "it": ..., "pid": ..., "start": ..., "alloc": ...,
  "time": ...}`` for a process still running at a sync (so a resume can kill what
  a killed service left running: ``start`` is its start time in clock ticks from
  ``/proc/<pid>/stat``; ``alloc`` and ``time``, its cores and start, are for
  ``qcgpj-async status``);
- ``{"t": "cancel", "names": [...]}``, ``{"t": "remove", "names": [...]}``;
- ``{"t": "close", "time": ..., "interrupted": n}`` when the pilot ends.

Lines are written to the kernel at the end of every event batch, so a crash of
the service process loses nothing it had processed; ``fsync`` runs at most once
per ``sync_interval`` (1 s), so an OS crash or power loss loses at most the
last second. The first write creates the file atomically (temporary file,
fsync, rename): a journal is either absent or starts with its whole header.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _q
from typing import Any

import anyio
import attrs

from ..engine import Engine, Instruction, Job, Outcome, Run
from ..executors import Process
from ..model import (
    FINAL_STATES,
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    JobSpec,
    JobState,
    QcgpjError,
    job_from_std,
    job_to_std,
)

__all__ = (
    "JOURNAL",
    "Journal",
    "JournalError",
    "Recovered",
    "find_journal",
    "kill_orphans",
    "load_journal",
    "proc_start",
    "restore_engine",
    "stop_orphans",
    "wait_gone",
)

JOURNAL = "journal.jsonl"
VERSION = 1
_NAME = {s: s.value for s in JobState}  # a state's name, without the enum's descriptor


class JournalError(QcgpjError, ValueError):
    """A resume source that is not a usable service directory or journal."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


class Journal:
    """Appends records to one journal file. Not thread-safe but for :meth:`sync`.

    Args:
        path: the file (created at the first :meth:`flush`).
        instance_id: the pilot's id, for the header.
        now: the time of the header.
        resumed_from: the journal this run resumes, if any.
        nodes: the usable cores of each node, for reports.
    """

    def __init__(
        self,
        path: str,
        instance_id: str,
        now: float,
        resumed_from: str | None = None,
        nodes: Mapping[str, int] | None = None,
        gpus: Mapping[str, int] | None = None,
    ) -> None:
        self.path = path
        self._fd: int | None = None
        header = {"t": "open", "v": VERSION, "id": instance_id, "time": now, "from": resumed_from}
        header.update(pid=os.getpid(), host=os.uname().nodename, nodes=dict(nodes or {}))
        if gpus:  # GPUs per node, for reports
            header["gpus"] = dict(gpus)
        self._buf: list[str] = [_dumps(header) + "\n"]
        self.unsynced = False

    # -- records -------------------------------------------------------------------

    def submit(self, specs: Sequence[JobSpec], variables: dict[str, str], now: float) -> None:
        """An accepted batch."""
        self._buf.append(self.submit_record(specs, variables, now))

    @staticmethod
    def submit_record(
        specs: Sequence[JobSpec],
        variables: dict[str, str],
        now: float,
        stds: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """The line of a batch, made before it is accepted (see :meth:`append`).

        ``stds``: the jobs' standard dicts when the caller has them (from the
        validation of a submit); else each model is converted.

        Raises:
            RecursionError: a job description nested too deeply to be written.
            ValueError: ... or holding what JSON cannot carry.
        """
        return (
            _dumps(
                {
                    "t": "submit",
                    "time": now,
                    "vars": variables,
                    "jobs": stds if stds else [job_to_std(s) for s in specs],
                }
            )
            + "\n"
        )

    def append(self, record: str) -> None:
        """A line made by :meth:`submit_record`."""
        self._buf.append(record)

    def ended(
        self,
        job: str,
        it: int | None,
        state: JobState,
        code: int | None,
        t: float,
        msg: str | None = None,
    ) -> None:
        """A final state. Hand-formatted: this is once per job and iteration."""
        extra = "" if msg is None else ',"msg":' + _q(msg)
        self._buf.append(
            f'{{"t":"end","job":{_q(job)},"it":{"null" if it is None else it},'
            f'"state":"{_NAME[state]}","code":{"null" if code is None else code},'
            f'"time":{t!r}{extra}}}\n'
        )

    def restored(self, rec: Recovered, now: float) -> None:
        """The jobs of a resumed journal: one submit record per original batch."""
        batch: list[JobSpec] = []
        current: dict[str, str] = {}
        for spec, variables in zip(rec.specs, rec.variables, strict=True):
            if batch and variables is not current:
                self.submit(batch, current, now)
                batch = []
            batch.append(spec)
            current = variables
        if batch:
            self.submit(batch, current, now)

    def job_ended(self, job: Job, it: int | None, state: JobState, t: float) -> None:
        """A final state, with the exit code and message of its run (if it ran)."""
        run = job.runs.get(it)
        if it is not None:
            msg = run.message if run is not None else None
        else:
            msg = "\n".join(job.messages) if job.messages else None
        self.ended(job.name, it, state, run.exit_code if run is not None else None, t, msg)

    def running(
        self, procs: Mapping[int, Process], runs: Mapping[int, Run], seen: set[int]
    ) -> None:
        """Processes that run and are not journaled yet (``seen``: run ids journaled).

        Called at each sync: a job that ends within a sync period never costs a
        record. The pid and start time let a resume kill what a dead service
        left running.
        """
        for run_id, proc in list(procs.items()):
            if run_id in seen or proc.pid is None:
                continue
            seen.add(run_id)
            run = runs.get(run_id)
            start = proc_start(proc.pid)
            if run is not None and start is not None:
                self._buf.append(
                    _dumps(
                        {
                            "t": "run",
                            "job": run.job.name,
                            "it": run.index,
                            "pid": proc.pid,
                            "start": start,
                            "alloc": str(run.allocation),
                            "time": run.started,
                        }
                    )
                    + "\n"
                )

    def lost(self, node: str, why: str, t: float) -> None:
        """Node ``node`` was lost (a note: its runs' ends are journaled as they come)."""
        self._buf.append(_dumps({"t": "lost", "node": node, "why": why, "time": t}) + "\n")

    def cancel(self, names: Iterable[str]) -> None:
        """Names (jobs or ``job:it``) the user cancelled."""
        self._buf.append(_dumps({"t": "cancel", "names": list(names)}) + "\n")

    def remove(self, names: Iterable[str]) -> None:
        """Jobs the user removed (forgotten: their names may come back)."""
        self._buf.append(_dumps({"t": "remove", "names": list(names)}) + "\n")

    # -- to disk -------------------------------------------------------------------

    def flush(self) -> None:
        """Write the buffered records to the kernel (they survive a crash of this process)."""
        if not self._buf:
            return
        data = "".join(self._buf).encode()
        self._buf.clear()
        if self._fd is None:
            self._create(data)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.unsynced = True

    def _create(self, data: bytes) -> None:
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def sync(self) -> None:
        """fsync (in a worker thread: it may take milliseconds)."""
        fd = self._fd
        if fd is not None and self.unsynced:
            self.unsynced = False
            os.fsync(fd)

    def close(self, now: float, interrupted: int = 0) -> None:
        """Write the closing record, flush, fsync and close."""
        self._buf.append(_dumps({"t": "close", "time": now, "interrupted": interrupted}) + "\n")
        self.flush()
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# == reading a journal back ===========================================================


@attrs.frozen
class Recovered:
    """What a journal says: the jobs, how far they got, what may still run."""

    path: str
    specs: list[JobSpec]
    variables: list[dict[str, str]]  # the submit-time variables of each spec
    outcomes: dict[str, dict[int | None, Outcome]]
    cancels: list[str]
    orphans: list[tuple[str, int, int]]  # (job or job:it, pid, start ticks)
    rcnt: int


def restore_engine(engine: Engine, rec: Recovered, now: float) -> list[Instruction]:
    """Put the recovered jobs into ``engine``, and the cancels not yet done (pure).

    Raises:
        JobDescriptionError: a job does not fit the engine's resources.
        JournalError: the journal's outcomes do not match its jobs.
    """
    try:
        out = engine.restore(rec.specs, rec.outcomes, now)
    except ValueError as e:
        if isinstance(e, QcgpjError):
            raise
        raise JournalError(f"resume: {rec.path}: {e}") from None
    for name in rec.cancels:
        with contextlib.suppress(InvalidTransition, JobNotFoundError):
            out.extend(engine.cancel(name, now))
    return out


def find_journal(path: str | os.PathLike[str]) -> str:
    """The journal of a service directory, or of the newest one in a working directory.

    Raises:
        JournalError: no such directory, or no journal in it.
    """
    p = os.path.abspath(os.fspath(path))
    if os.path.isfile(p) and os.path.basename(p) == JOURNAL:
        return p
    if not os.path.isdir(p):
        raise JournalError(f"resume: {p!r} is not a directory")
    own = os.path.join(p, JOURNAL)
    if os.path.isfile(own):
        return own
    found = glob.glob(os.path.join(glob.escape(p), ".qcgpjm-service-*", JOURNAL))
    if not found:
        raise JournalError(
            f"resume: {p!r} is neither a service directory with a {JOURNAL} "
            "nor a working directory holding one (.qcgpjm-service-*)"
        )
    return max(found, key=lambda f: (os.stat(f).st_mtime_ns, f))


@attrs.define
class _Entry:
    std: dict[str, Any]
    batch: int
    outcomes: dict[int | None, Outcome] = attrs.Factory(dict)
    running: dict[int | None, tuple[int, int]] = attrs.Factory(dict)
    cancels: list[str] = attrs.Factory(list)
    #: Ended only because their node was lost: run again on a resume.
    rerun: bool = False


def load_journal(path: str | os.PathLike[str]) -> Recovered:
    """Read a journal back (``path``: as :func:`find_journal` takes).

    A torn last line (the service died while writing it) is ignored.

    Raises:
        JournalError: naming the file and the line that is wrong.
    """
    name = find_journal(path)
    try:
        with open(name, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as e:
        raise JournalError(f"resume: cannot read {name!r}: {e.strerror}") from None
    if lines and not lines[-1]:
        lines.pop()
    jobs: dict[str, _Entry] = {}
    batches: list[dict[str, str]] = []
    lost: list[str] = []  # why each node was lost: runs that ended so run again
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError as e:
            if n == len(lines):
                break  # torn by a crash: the record never was complete
            raise JournalError(f"resume: {name}: line {n} is not a journal record ({e})") from None
        if n == 1:
            if rec.get("t") != "open" or rec.get("v") != VERSION:
                raise JournalError(f"resume: {name}: not a qcgpj_async journal (version {VERSION})")
            continue
        try:
            _replay(rec, jobs, batches, lost)
        except (KeyError, TypeError, ValueError) as e:
            raise JournalError(
                f"resume: {name}: line {n}: bad {rec.get('t')!r} record: {e!r}"
            ) from None
    if not lines:
        raise JournalError(f"resume: {name}: empty journal")
    _rerun_dependants(jobs)
    return _recovered(name, jobs, batches)


def _replay(
    rec: dict[str, Any], jobs: dict[str, _Entry], batches: list[dict[str, str]], lost: list[str]
) -> None:
    kind = rec["t"]
    if kind == "lost":
        lost.append(str(rec["why"]))
        return
    if kind == "submit":
        batches.append({str(k): str(v) for k, v in rec["vars"].items()})
        for std in rec["jobs"]:
            jobs[std["name"]] = _Entry(std, len(batches) - 1)
    elif kind == "end":
        entry = jobs.get(rec["job"])
        if entry is not None:
            state = JobState(rec["state"])
            if state not in FINAL_STATES:
                raise ValueError(f"state {state.value} is not final")
            it = rec["it"]
            code = rec["code"]
            msg = rec.get("msg")
            if state is JobState.FAILED and (
                (isinstance(msg, str) and any(msg.endswith(why) for why in lost))
                or (it is None and entry.rerun)  # an iteration job with such iterations
            ):
                entry.rerun = True  # its node was lost under it: it runs again
                entry.running.pop(it, None)
                return
            entry.outcomes[None if it is None else int(it)] = Outcome(
                state, float(rec["time"]), None if code is None else int(code), rec.get("msg")
            )
            entry.running.pop(it, None)
    elif kind == "run":
        entry = jobs.get(rec["job"])
        if entry is not None and rec["it"] not in entry.outcomes:
            entry.running[rec["it"]] = (int(rec["pid"]), int(rec["start"]))
    elif kind == "cancel":
        for n in rec["names"]:
            entry = jobs.get(str(n).partition(":")[0])
            if entry is not None:
                entry.cancels.append(str(n))
    elif kind == "remove":
        for n in rec["names"]:
            jobs.pop(n, None)


def _rerun_dependants(jobs: dict[str, _Entry]) -> None:
    """Jobs OMITTED because a job that runs again failed run again too (transitively)."""
    changed = True
    while changed:
        changed = False
        rerun = {name for name, e in jobs.items() if e.rerun}
        for entry in jobs.values():
            deps = entry.std.get("dependencies")
            after = deps.get("after") if isinstance(deps, dict) else None
            if entry.rerun or not after:
                continue
            if not {str(d).partition(":")[0] for d in after} & rerun:
                continue
            omitted = [k for k, o in entry.outcomes.items() if o.state is JobState.OMITTED]
            if omitted:
                for k in [*omitted, None]:
                    entry.outcomes.pop(k, None)
                entry.rerun = changed = True


def _recovered(name: str, jobs: dict[str, _Entry], batches: list[dict[str, str]]) -> Recovered:
    stds = []
    for entry in jobs.values():
        std = entry.std
        deps = std.get("dependencies")
        after = deps.get("after") if isinstance(deps, dict) else None
        if after and isinstance(deps, dict):
            # A removed job had ended: a dependant still waiting for it waits no more.
            kept = [d for d in after if str(d).partition(":")[0] in jobs]
            if len(kept) != len(after):
                std = {**std, "dependencies": {**deps, "after": kept}}
                if not kept:
                    del std["dependencies"]
        stds.append(std)
    try:
        specs = [job_from_std(s, i) for i, s in enumerate(stds)]
    except JobDescriptionError as e:
        raise JournalError(
            f"resume: {name}: a journaled job is not valid: {'; '.join(e.problems)}"
        ) from None
    entries = list(jobs.values())
    outcomes = {}
    orphans = []
    cancels = []
    for spec, entry in zip(specs, entries, strict=True):
        if entry.outcomes:
            outcomes[spec.name] = entry.outcomes
        done = None in entry.outcomes
        for it, (pid, start) in entry.running.items():
            if not done and it not in entry.outcomes:
                orphans.append((spec.name if it is None else f"{spec.name}:{it}", pid, start))
        if not done:
            cancels.extend(entry.cancels)
    variables = [batches[e.batch] for e in entries]
    rcnt = max((int(v["rcnt"]) for v in batches if v.get("rcnt", "").isdigit()), default=0)
    return Recovered(name, specs, variables, outcomes, cancels, orphans, rcnt)


# == the processes of a dead service ====================================================


def _stat(pid: int) -> list[str] | None:
    """Fields 3... of ``/proc/<pid>/stat`` (after the command name), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].decode().split()
    except (OSError, UnicodeDecodeError):
        return None


def proc_start(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None: gone, or not Linux)."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def kill_orphans(orphans: Iterable[tuple[str, int, int]]) -> list[tuple[str, int]]:
    """SIGKILL the process groups a dead service left running.

    Only a group whose leader is the very process the journal recorded: the
    same pid, started at the same clock tick, leading its own session and
    group, ours, and not a zombie. A pid reused since then fails the start
    time, so nothing else is ever signalled. The whole group dies at once
    (no grace: the resumed run starts the job afresh).

    Returns:
        ``(label, pid)`` of each group killed.
    """
    killed = []
    uid = os.getuid()
    for label, pid, start in orphans:
        fields = _stat(pid)
        if not fields or len(fields) <= 19 or fields[0] == "Z":
            continue
        if int(fields[2]) != pid or int(fields[3]) != pid or int(fields[19]) != start:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            killed.append((label, pid))
    return killed


async def stop_orphans(rec: Recovered, log: logging.Logger, timeout: float) -> None:
    """Kill what the resumed (dead) service left running, and wait until it is gone."""
    killed = kill_orphans(rec.orphans)
    for label, pid in killed:
        log.warning(
            "killed process group %d of %s, left running by the resumed service", pid, label
        )
    await wait_gone([pid for _, pid in killed], timeout)


async def wait_gone(pids: Iterable[int], timeout: float) -> None:
    """Wait (at most ``timeout`` s) until processes that are not our children have ended."""
    with anyio.move_on_after(timeout):
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):  # gone already, or no pidfd: nothing to wait on
                continue
            try:
                await anyio.wait_readable(fd)  # readable once it has exited
            finally:
                os.close(fd)
