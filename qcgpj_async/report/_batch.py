"""What the terminal of a batch run says: the closing lines, the progress line, the stop line.

Pure text functions, and :func:`summary_lines`: the closing lines, from the
figures the pilot gathered as runs ended (``Pilot.run_totals()``), or else
from the service directory the run just closed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

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


def summary_lines(
    service_dir: str | None,
    report_path: str | None = None,
    job_states: Mapping[str, int] | None = None,
    failures: int = SHOWN_FAILURES,
    figures: Mapping[str, Any] | None = None,
) -> list[str]:
    """The closing lines of a batch run; the last one is the summary line of old.

    ``N jobs: a succeeded, b failed, c omitted, d cancelled; report: PATH`` stays
    the last line (scripts take it with ``tail -1``); before it come the first
    ``failures`` tasks that did not succeed, with their reasons and the command
    that lists them all, and one line with the makespan and the utilisation.

    Args:
        service_dir: the run's service directory (None: it never started).
        report_path: its jobs.report, named in the summary line.
        job_states: jobs per state; default: final_status.json's ``JobStates``.
        failures: how many failed tasks to list.
        figures: what the runs added up to, as the pilot gathered them
            (``Pilot.run_totals()``: no file is read); None: computed from the
            service directory (:func:`load_run`, slower).
    """
    if service_dir is None:
        return [_counts(job_states or {}) + "; report: none"]
    states = dict(job_states) if job_states is not None else _job_states(service_dir)
    lines: list[str] = []
    # The summary line comes whatever happens here: the rest is a bonus.
    with contextlib.suppress(ReportError, OSError, ValueError, KeyError, TypeError):
        lines = _closing(service_dir, failures, figures or _figures(service_dir, failures))
    where = _rel(report_path or service_dir)
    lines.append(f"{_counts(states or {})}; report: {where}")
    return lines


def _figures(service_dir: str, failures: int) -> dict[str, Any]:
    """``Pilot.run_totals()``'s figures, from a service directory's files."""
    s = summarize(load_run(service_dir))
    ts = sorted(s.unsuccessful, key=lambda t: t.ended if t.ended is not None else math.inf)
    return {
        "cores": s.cores,
        "first_start": s.first_start,
        "last_end": s.last_end,
        "busy": s.usage.busy,
        "count": len(ts),
        "kinds": {t.state for t in ts},
        "unsuccessful": [
            (t.state, t.name, t.message, t.exit_code, t.started is not None) for t in ts[:failures]
        ],
    }


def _closing(service_dir: str, failures: int, f: Mapping[str, Any]) -> list[str]:
    lines = []
    for state, name, message, code, started in f["unsuccessful"][:failures]:
        t = TaskRecord(name, "", None, state, message=message)
        t.exit_code, t.started = code, (0.0 if started else None)
        lines.append(f"  {state} {name}: {t.reason}")
    count = f["count"]
    if count:
        order = ",".join(k for k in ("FAILED", "OMITTED", "CANCELED") if k in f["kinds"])
        more = f"{count} not succeeded; " if count > failures else ""
        lines.append(
            f"  ({more}all: qcgpj-async report {_rel(service_dir)} --jobs --state {order})"
        )
    first, last, cores = f["first_start"], f["last_end"], f["cores"]
    if first is not None and last is not None:
        span = last - first
        util = f"{100 * f['busy'] / (cores * span):.1f}%" if cores and span > 0 else "-"
        lines.append(
            f"makespan {format_duration(span)}, utilisation {util} of {cores} cores; "
            f"more: qcgpj-async report {_rel(service_dir)}"
        )
    return lines


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
