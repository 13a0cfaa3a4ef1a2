"""``qcgpj-async status DIR``: a running (or ended) service seen from its files alone."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ._load import load_run
from ._records import FINAL, RunRecord
from ._stats import state_counts
from ._text import counts_line, format_duration

__all__ = ("format_status", "rate_and_eta", "watch")

#: Seconds over which the rate is measured (the recent pace, not the average since the start).
RATE_WINDOW = 60.0


def rate_and_eta(run: RunRecord, window: float = RATE_WINDOW) -> tuple[float, float]:
    """Tasks ended per second over the last ``window`` s, and seconds left at that rate
    (NaN when nothing ended in the window, 0 when nothing is left)."""
    now = run.closed if run.closed is not None else run.now
    ended = [t.ended for t in run.tasks if t.ended is not None and t.state in FINAL]
    left = sum(1 for t in run.tasks if t.state not in FINAL)
    if not left:
        return (len(ended) / max(now - (run.opened or now), 1e-9) if ended else 0.0), 0.0
    since = max(now - window, run.opened if run.opened is not None else now - window)
    recent = sum(1 for e in ended if e >= since)
    span = now - since
    rate = recent / span if span > 0 else 0.0
    return rate, (left / rate if rate > 0 else float("nan"))


def format_status(run: RunRecord, running: int = 10, failures: int = 5) -> str:
    """The status text of ``run`` (see the module)."""
    if run.finished:
        state = "finished"
    elif run.alive:
        state = "running"
    elif run.alive is False:
        state = "dead: its process is gone and its journal has no end (killed?)"
    else:
        state = "not finished (or killed; it runs on another host?)"
    now = run.closed if run.closed is not None else run.now
    up = format_duration(now - run.opened) if run.opened is not None else "-"
    out = [f"pilot {run.instance_id or '?'} {state}; up {up}; {run.path}"]
    jobs = state_counts(j.state for j in run.jobs.values())
    its = state_counts(t.state for t in run.tasks)
    out.append("  " + counts_line(jobs, "job"))
    out.append("  " + counts_line(its, "iteration"))
    rate, eta = rate_and_eta(run)
    eta_s = "-" if eta != eta else format_duration(eta) if eta else "0 s"
    out.append(f"  rate {rate:.3g} tasks/s (last {RATE_WINDOW:.0f} s), ETA {eta_s}")
    busy = [t for t in run.tasks if t.state == "EXECUTING"]
    if busy:
        busy.sort(key=lambda t: t.started or now)
        out.append(
            f"running ({len(busy)} seen; a task is listed once it has run ~1 s, at the "
            "journal's next sync):"
        )
        w = min(max(len(t.name) for t in busy[:running]), 40)
        for t in busy[:running]:
            alloc = ",".join(f"{n}[{':'.join(map(str, c))}]" for n, c in t.alloc) or "?"
            rt = format_duration(now - t.started) if t.started is not None else "-"
            out.append(f"  {t.name:{w}}  {rt:>9}  {alloc}")
        if len(busy) > running:
            out.append(f"  ... {len(busy) - running} more")
    bad = [t for t in run.tasks if t.state in FINAL and t.state != "SUCCEED"]
    if bad:
        bad.sort(key=lambda t: t.ended or 0.0)
        out.append(f"not succeeded so far: {len(bad)}")
        w = min(max(len(t.name) for t in bad[:failures]), 40)
        for t in bad[:failures]:
            out.append(f"  {t.state:9}{t.name:{w}}  {t.reason}")
        if len(bad) > failures:
            out.append("  (all: qcgpj-async report DIR --jobs --state FAILED,OMITTED,CANCELED)")
    return "\n".join(out)


def watch(path: str, interval: float, out: TextIO = sys.stdout, once: bool = False) -> int:
    """Print the status every ``interval`` s (redrawn in place on a terminal) until the
    pilot ends; returns 0 (finished) or 1 (it died without closing its journal)."""
    tty = out.isatty()
    while True:
        run = load_run(path)
        text = format_status(run)
        if tty:
            out.write("\x1b[H\x1b[2J")
        out.write(text + "\n")
        out.flush()
        if once or run.finished or run.alive is False:
            return 0 if run.finished or once else 1
        time.sleep(interval)
