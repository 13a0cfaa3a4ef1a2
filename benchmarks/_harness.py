"""Generic measuring harness for side-by-side benchmarks (stdlib only).

Every run is a whole process: we measure its wall time from the harness, and
its peak RSS and CPU time from the kernel's rusage of the process tree.

Peak RSS is the largest ``ru_maxrss`` of any single process in the tree (not a
sum). It is taken by running the command under GNU ``/usr/bin/time``, because
``os.wait4`` on a child spawned directly from Python reports the *parent's* RSS
high-water mark (the kernel carries it over the fork/vfork + exec). Without GNU
time we fall back to a tiny ``python -I -S`` launcher, whose own ~8 MB then sets
a floor on the figure (fine for Python tools, an overestimate for xargs).

Noisy shared machines: compare tools side by side in one run (``alternate``),
and quote ratios of medians, never absolute numbers.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WORK_DIR = Path(__file__).resolve().parent / ".work"
"""Scratch space for generated request files and per-run working dirs (git-ignored)."""

_GNU_TIME = "/usr/bin/time"
_RUSAGE_HELPER = """\
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_maxrss} {ru.ru_utime} {ru.ru_stime}\\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""
_gnu_time_ok: bool | None = None


@dataclass
class Measurement:
    """One run of one command."""

    wall_s: float
    returncode: int
    peak_rss_kb: int | None = None
    cpu_s: float | None = None
    stdout: str = ""
    stderr_tail: str = ""
    error: str | None = None
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the run exited 0 and passed its verification."""
        return self.error is None

    @property
    def peak_rss_mb(self) -> float | None:
        """Peak RSS in MiB (None when unknown)."""
        return None if self.peak_rss_kb is None else self.peak_rss_kb / 1024


def _have_gnu_time() -> bool:
    global _gnu_time_ok
    if _gnu_time_ok is None:
        _gnu_time_ok = False
        if os.access(_GNU_TIME, os.X_OK):
            with tempfile.NamedTemporaryFile("r") as out:
                res = subprocess.run(
                    [_GNU_TIME, "-f", "%M %U %S", "-o", out.name, "true"],
                    capture_output=True,
                    check=False,
                )
                _gnu_time_ok = res.returncode == 0 and _parse_rusage(out.read()) is not None
    return _gnu_time_ok


def _parse_rusage(text: str) -> tuple[int, float] | None:
    """Parse the last ``maxrss_kb user_s sys_s`` line (GNU time may add a status line)."""
    lines = text.strip().splitlines()
    try:
        rss, user, system = lines[-1].split()
        return int(rss), float(user) + float(system)
    except (IndexError, ValueError):
        return None


def _last_json_object(stdout: str) -> dict[str, float]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                return {}
            return {k: v for k, v in data.items() if isinstance(v, (int, float))}
    return {}


def run_cmd(
    cmd: Sequence[str | Path],
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> Measurement:
    """Run ``cmd`` once and measure it.

    ``env`` holds variables added to (overriding) the current environment.
    Returns wall time, peak RSS (KiB, largest process of the tree), user+sys
    CPU time, exit code, stdout, and the stderr tail when the run failed.
    Numbers in the last JSON-object line of stdout land in ``figures``.
    On timeout the whole process group is killed and ``error`` is set.
    """
    args = [str(c) for c in cmd]
    full_env = {**os.environ, **env} if env else None
    with (
        tempfile.NamedTemporaryFile("r") as usage,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        if _have_gnu_time():
            wrapped = [_GNU_TIME, "-f", "%M %U %S", "-o", usage.name, *args]
        else:
            wrapped = [sys.executable, "-I", "-S", "-c", _RUSAGE_HELPER, usage.name, *args]
        error: str | None = None
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, cwd=cwd, env=full_env, stdout=out, stderr=err, start_new_session=True
        )
        ended, timed_out = threading.Lock(), threading.Event()

        def stop() -> None:  # its group, only while its leader is not reaped (still ours)
            if ended.acquire(blocking=False):
                timed_out.set()
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, stop)
        timer.daemon = True
        timer.start()
        try:
            # A blocking wait for the end, without reaping it: Popen.wait(timeout=...)
            # polls with sleeps of up to 50 ms, which put every wall time 0-50 ms late.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = time.perf_counter() - t0
            ended.acquire(blocking=False)  # from now on the timer signals nothing
        finally:
            timer.cancel()
        rc = proc.wait()
        if timed_out.is_set():
            error = f"timeout after {timeout:g} s"
        usage_data = _parse_rusage(usage.read())
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if error is None and rc != 0:
        error = f"exit code {rc}"
    return Measurement(
        wall_s=wall,
        returncode=rc,
        peak_rss_kb=usage_data[0] if usage_data else None,
        cpu_s=usage_data[1] if usage_data else None,
        stdout=stdout,
        stderr_tail=stderr[-2000:] if error else "",
        error=error,
        figures=_last_json_object(stdout),
    )


def fresh_wd(tag: str = "run") -> Path:
    """Create and return a new empty working directory under ``WORK_DIR/runs``."""
    base = WORK_DIR / "runs"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=base))


def run_in_fresh_wd(
    make_cmd: Callable[[Path], Sequence[str | Path]],
    *,
    verify: Callable[[Path], str | None] | None = None,
    tag: str = "run",
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
    keep: bool = False,
) -> Measurement:
    """Run ``make_cmd(wd)`` in a new working dir ``wd``, then ``verify(wd)``.

    ``verify`` returns an error message (stored in ``Measurement.error``) or
    None. The directory is removed afterwards unless ``keep`` or the run failed.
    """
    wd = fresh_wd(tag)
    m = run_cmd(make_cmd(wd), cwd=wd, env=env, timeout=timeout)
    if m.ok and verify is not None:
        m.error = verify(wd)
    if m.ok and not keep:
        shutil.rmtree(wd, ignore_errors=True)
    elif not m.ok:
        m.error = f"{m.error} (wd kept: {wd})"
    return m


def alternate(
    variants: Mapping[str, Callable[[], Measurement]],
    runs: int,
    *,
    progress: bool = True,
    first_round: int = 0,
) -> dict[str, list[Measurement]]:
    """Run the variants interleaved, ``runs`` times each, the order rotated each round:
    A B C, B C A, C A B, ...

    Interleaving spreads the machine's noise evenly over the variants; rotating
    spreads the aftermath of each one (a heavy run's exit, its files' removal)
    over the others, instead of always on the one after it. ``first_round``:
    the rotation of the first round (a caller running one round at a time).
    With ``progress`` one line per run goes to stderr.
    """
    results: dict[str, list[Measurement]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(runs):
        k = (first_round + i) % len(names) if names else 0
        for name in names[k:] + names[:k]:
            fn = variants[name]
            m = fn()
            results[name].append(m)
            if progress:
                rss = f"{m.peak_rss_mb:.1f} MB" if m.peak_rss_mb is not None else "? MB"
                status = "ok" if m.ok else f"FAILED: {m.error}"
                print(
                    f"  [{i + 1}/{runs}] {name}: {m.wall_s:.3f} s, {rss}, {status}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


@dataclass
class Summary:
    """Statistics over the runs of one variant (wall time over successful runs)."""

    runs: int
    failed: int
    median_s: float
    min_s: float
    max_s: float
    peak_rss_mb: float | None
    cpu_s: float | None
    figures: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def summarize(measurements: Sequence[Measurement]) -> Summary:
    """Median/min/max wall time, max peak RSS, median CPU and median of each figure.

    Failed runs are counted and their errors kept, but excluded from the
    statistics (all NaN when every run failed).
    """
    good = [m for m in measurements if m.ok]
    walls = [m.wall_s for m in good] or [float("nan")]
    rss = [m.peak_rss_mb for m in good if m.peak_rss_mb is not None]
    cpu = [m.cpu_s for m in good if m.cpu_s is not None]
    keys = {k for m in good for k in m.figures}
    figures = {k: statistics.median(m.figures[k] for m in good if k in m.figures) for k in keys}
    return Summary(
        runs=len(measurements),
        failed=len(measurements) - len(good),
        median_s=statistics.median(walls),
        min_s=min(walls),
        max_s=max(walls),
        peak_rss_mb=max(rss) if rss else None,
        cpu_s=statistics.median(cpu) if cpu else None,
        figures=dict(sorted(figures.items())),
        errors=[m.error for m in measurements if m.error],
    )


def ratio(a: Summary | float, b: Summary | float) -> float:
    """Time ratio a / b of medians (< 1 means a is faster than b)."""
    num = a.median_s if isinstance(a, Summary) else a
    den = b.median_s if isinstance(b, Summary) else b
    return num / den if den else float("nan")


@dataclass
class Row:
    """One line of the result table: one tool on one workload."""

    workload: str
    tool: str
    summary: Summary
    jobs: int | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    note: str = ""


def make_rows(
    workload: str,
    results: Mapping[str, Sequence[Measurement]],
    *,
    jobs: int | None = None,
    ratio_to: Mapping[str, str] | None = None,
) -> list[Row]:
    """Summarize ``alternate`` results into rows.

    ``ratio_to`` maps a column label (e.g. ``"original"``) to the variant name
    whose median is the denominator of that ratio column.
    """
    sums = {name: summarize(ms) for name, ms in results.items()}
    rows = []
    for name, s in sums.items():
        ratios = {
            label: ratio(s, sums[ref]) for label, ref in (ratio_to or {}).items() if ref in sums
        }
        note = f"{s.failed}/{s.runs} runs FAILED: {s.errors[0]}" if s.failed else ""
        rows.append(Row(workload, name, s, jobs=jobs, ratios=ratios, note=note))
    return rows


def markdown_table(rows: Sequence[Row]) -> str:
    """Render rows as a GitHub markdown table (one ``ratio vs X`` column per label)."""
    labels: list[str] = []
    for r in rows:
        labels += [k for k in r.ratios if k not in labels]
    with_notes = any(r.note for r in rows)
    head = ["workload", "tool", "wall s median (min-max)", "jobs/s", "peak RSS MB", "CPU s"]
    head += [f"ratio vs {label}" for label in labels] + (["notes"] if with_notes else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r.summary
        rate = f"{r.jobs / s.median_s:.0f}" if r.jobs and r.jobs > 1 and s.median_s > 0 else "-"
        cells = [
            r.workload,
            r.tool,
            f"{s.median_s:.2f} ({s.min_s:.2f}-{s.max_s:.2f})",
            rate,
            f"{s.peak_rss_mb:.1f}" if s.peak_rss_mb is not None else "-",
            f"{s.cpu_s:.2f}" if s.cpu_s is not None else "-",
        ]
        cells += [f"{r.ratios[k]:.2f}" if k in r.ratios else "-" for k in labels]
        if with_notes:
            cells.append(r.note.replace("|", "/").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    """Cores, CPU model, Python version, kernel, load average and UTC date."""
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = {
        "cores": f"{usable} usable / {os.cpu_count()} total",
        "cpu": cpu_model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg": " ".join(f"{x:.2f}" for x in load) if load else "?",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    idle = idle_setting()
    if idle is not None:
        info["cpuidle"] = idle
    return info


#: The guest halt-polling time of Linux's cpuidle-haltpoll driver (a KVM guest's
#: idle vCPU polls this long before it halts; 0: it halts at once).
HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def idle_setting() -> str | None:
    """The cpuidle driver, and the guest halt-polling time where it is haltpoll.

    On the test VM ``haltpoll, guest_halt_poll_ns=0``: an idle vCPU halts at
    once and waking it is slow, which moves short-job figures a little
    (docs/performance.md, "What did not pay off"). None where unknown.
    """
    try:
        driver = Path("/sys/devices/system/cpu/cpuidle/current_driver").read_text().strip()
    except OSError:
        return None
    if driver == "haltpoll":
        with contextlib.suppress(OSError):
            return f"haltpoll, guest_halt_poll_ns={HALT_POLL.read_text().strip()}"
    return driver


def format_machine_info(info: Mapping[str, str] | None = None) -> str:
    """One markdown line describing the machine (``machine_info()`` by default)."""
    info = machine_info() if info is None else info
    return "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items())
