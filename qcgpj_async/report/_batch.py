"""What the terminal of a batch run says: the closing lines, the progress line, the stop line.

Pure text functions, and :func:`summary_lines`, which reads the service
directory the run just closed (final_status.json, the journal and
jobs.report): the CLI hands over paths and counts only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
from collections.abc import Mapping

from ._load import ReportError, load_run
from ._records import FINAL, TaskRecord
from ._stats import summarize
from ._text import WORDS, format_duration

__all__ = ("progress_text", "stopping_text", "summary_lines")

#: Failed tasks listed under a batch run (``report --jobs`` lists all).
SHOWN_FAILURES = 3


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _job_states(service_dir: str) -> dict[str, int] | None:
    try:
        with open(os.path.join(service_dir, "final_status.json"), encoding="utf-8") as f:
            states = json.load(f).get("JobStates")
    except (OSError, ValueError, AttributeError):
        return None
    return {str(k): int(v) for k, v in states.items()} if isinstance(states, dict) else None


def _counts(states: Mapping[str, int]) -> str:
    total = sum(states.values())
    parts = [f"{states.get('SUCCEED', 0)} succeeded"]
    parts += [f"{states[s]} {WORDS[s]}" for s in ("FAILED", "OMITTED", "CANCELED") if states.get(s)]
    left = total - sum(states.get(s, 0) for s in FINAL)
    if left:
        parts.append(f"{left} not ended")
    return f"{total} job{'s' if total != 1 else ''}: {', '.join(parts)}"


# A run's line in our jobs.report (runtime/_service.py writes it): its start, its end,
# its allocation. Found by one regex over the file: parsing every line as JSON would
# cost a batch of 100,000 jobs seconds at its end, for two numbers.
_RAN = re.compile(
    rb'\{"state": "EXECUTING", "date": "([^"]+)"\}, \{"state": "\w+", "date": "([^"]+)"\}\], '
    rb'"runtime": \{"allocation": "([^"]*)"'
)
_OK = b'"state": "SUCCEED", "history"'


#: jobs.report is read in blocks of this size: a 100,000-job report is ~50 MB, and the
#: closing lines must not hold it all at the end of a run.
BLOCK = 1 << 20


class _Scan:
    """What the closing lines need from a jobs.report, gathered block by block."""

    def __init__(self, shown: int) -> None:
        self.shown = shown
        self.first, self.last, self.busy = math.inf, -math.inf, 0.0
        self.bad: list[tuple[float, int, str, str, str]] = []
        self.kinds: set[str] = set()
        self.count = 0
        self._seconds: dict[bytes, float] = {}

    def _ts(self, d: bytes) -> float:
        base = self._seconds.get(d[:19])
        if base is None:
            base = _dt.datetime.fromisoformat(d[:19].decode()).timestamp()
            self._seconds[d[:19]] = base
        return base + float(d[19:]) if len(d) > 19 else base

    def feed(self, data: bytes) -> None:
        """Whole lines of a jobs.report."""
        ts = self._ts
        first, last, busy = self.first, self.last, self.busy
        for m in _RAN.finditer(data):
            a, b, alloc = m.groups()
            x, e = ts(a), ts(b)
            first, last = min(first, x), max(last, e)
            busy += (e - x) * (alloc.count(b":") + alloc.count(b"["))
        self.first, self.last, self.busy = first, last, busy
        for line in data.split(b"\n"):
            if line and _OK not in line[:400] and b'"iterations": {' not in line:
                self._unsuccessful(line)

    def _unsuccessful(self, line: bytes) -> None:
        try:
            e = json.loads(line)
            t = TaskRecord(str(e["name"]), "", None, str(e["state"]), message=e.get("messages"))
            code = (e.get("runtime") or {}).get("exit_code")
            t.exit_code = int(code) if code not in (None, "") else None
            hist = e.get("history") or [{}]
            started = any(h.get("state") == "EXECUTING" for h in hist)
            t.started = 0.0 if started else None
            when = _dt.datetime.fromisoformat(str(hist[-1].get("date"))).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # a torn last line (the run is over: none), or not ours
        if t.state not in FINAL or t.state == "SUCCEED":
            return
        self.count += 1
        self.kinds.add(t.state)
        self.bad.append((when, self.count, t.state, t.name, t.reason))  # ties: file order
        self.bad.sort()
        del self.bad[self.shown :]

    def times(self) -> tuple[float, float, float] | None:
        """First start, last end and busy core-seconds of the runs."""
        return (self.first, self.last, self.busy) if self.last >= self.first else None


def _scan(path: str, shown: int) -> _Scan | None:
    """A jobs.report scanned block by block; None: not ours in JSON."""
    scan = _Scan(shown)
    with open(path, "rb") as f:
        rest = f.read(1)
        if rest != b"{":
            return None
        while True:
            block = f.read(BLOCK)
            data = rest + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            rest = data[cut:]
            scan.feed(data[:cut])
            if not block:
                return scan


def summary_lines(
    service_dir: str | None,
    report_path: str | None = None,
    job_states: Mapping[str, int] | None = None,
    failures: int = SHOWN_FAILURES,
) -> list[str]:
    """The closing lines of a batch run; the last one is the summary line of old.

    ``N jobs: a succeeded, b failed, c omitted, d cancelled; report: PATH`` stays
    the last line (scripts take it with ``tail -1``); before it come the first
    ``failures`` tasks that did not succeed, with their reasons and the command
    that lists them all, and one line with the makespan and the utilisation.

    Args:
        service_dir: the run's service directory (None: it never started).
        report_path: its jobs.report in JSON (None: ``--report-format none`` or
            ``text``: the lines come from :func:`load_run`, slower).
        job_states: jobs per state; default: final_status.json's ``JobStates``.
        failures: how many failed tasks to list.
    """
    if service_dir is None:
        return [_counts(job_states or {}) + "; report: none"]
    states = dict(job_states) if job_states is not None else _job_states(service_dir)
    lines: list[str] = []
    # The summary line comes whatever happens here: the rest is a bonus.
    with contextlib.suppress(ReportError, OSError, ValueError, KeyError, TypeError):
        lines = _closing(service_dir, report_path, failures, states)
    where = _rel(report_path or service_dir)
    lines.append(f"{_counts(states or {})}; report: {where}")
    return lines


def _closing(
    service_dir: str, report_path: str | None, failures: int, states: dict[str, int] | None
) -> list[str]:
    scan = _scan(report_path, failures) if report_path is not None else None
    lines = []
    if scan is not None:  # ours, JSON: the fast way
        bad, kinds, count = scan.bad, scan.kinds, scan.count
        times = scan.times()
        cores = _cores(service_dir)
    else:
        run = load_run(service_dir)
        ts = [t for t in run.tasks if t.state in FINAL and t.state != "SUCCEED"]
        ts.sort(key=lambda t: t.ended if t.ended is not None else math.inf)
        bad = [(0.0, 0, t.state, t.name, t.reason) for t in ts[:failures]]
        kinds, count = {t.state for t in ts}, len(ts)
        s = summarize(run)
        times = (
            None
            if s.last_end is None or s.first_start is None
            else (s.first_start, s.last_end, s.usage.busy)
        )
        cores = s.cores
    for _, _, state, name, reason in bad:
        lines.append(f"  {state} {name}: {reason}")
    if count:
        order = ",".join(k for k in ("FAILED", "OMITTED", "CANCELED") if k in kinds)
        more = f"{count} not succeeded; " if count > failures else ""
        lines.append(
            f"  ({more}all: qcgpj-async report {_rel(service_dir)} --jobs --state {order})"
        )
    if times is not None:
        first, last, busy = times
        span = last - first
        util = f"{100 * busy / (cores * span):.1f}%" if cores and span > 0 else "-"
        lines.append(
            f"makespan {format_duration(span)}, utilisation {util} of {cores} cores; "
            f"more: qcgpj-async report {_rel(service_dir)}"
        )
    return lines


def _cores(service_dir: str) -> int:
    """Usable cores: the journal header's nodes (its first line), else final_status.json."""
    with open(os.path.join(service_dir, "journal.jsonl"), "rb") as f:
        header = json.loads(f.readline())
    cores = sum(int(v) for v in (header.get("nodes") or {}).values())
    if not cores:  # a journal of an older version
        with open(os.path.join(service_dir, "final_status.json"), encoding="utf-8") as f:
            cores = int(json.load(f)["Resources"]["TotalCores"])
    return cores


def stopping_text(jobs: int, grace: float) -> str:
    """What a first Ctrl-C (or SIGTERM) says at once."""
    return (
        f"stopping {jobs} job{'s' if jobs != 1 else ''} (SIGTERM; SIGKILL in {grace:g} s; "
        "Ctrl-C again to kill now)"
    )


def progress_text(
    jobs_done: int,
    jobs_total: int,
    jobs_failed: int,
    its_done: int,
    its_total: int,
    running: int,
    queued: int,
    elapsed: float,
) -> str:
    """The ``--show-progress`` line: jobs as in the summary, iterations beside; the rate
    and the ETA in iterations (what flows through the cores)."""
    rate = its_done / max(elapsed, 1e-9)
    left = its_total - its_done
    eta = f"{int(left / rate // 60)}:{int(left / rate % 60):02d}" if rate > 0 and left else "-"
    return (
        f"done {jobs_done}/{jobs_total} jobs ({jobs_failed} failed; iterations "
        f"{its_done}/{its_total}), running {running}, queued {queued}, {rate:.0f} it/s, ETA {eta}"
    )
