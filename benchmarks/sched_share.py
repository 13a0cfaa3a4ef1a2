"""Where the cores go while batch mode runs short jobs: a ``perf sched`` trace, classified.

Usage: ``python benchmarks/sched_share.py [-n 1000] [--nodes 2]`` (needs ``perf`` and the
right to trace the scheduler system-wide: root, or ``kernel.perf_event_paranoid`` = -1)

Runs ``python -m qcgpj_async --file-path F --nodes N`` (N ``/bin/true`` jobs) and
``seq N | xargs -P N -n 1 /bin/true`` under ``perf sched record``, and reads
``perf sched timehist``. Every CPU, at every 10 µs of the middle 60% of the run
(start and end excluded), runs one of:

- ``J``: a job (the child before its exec included);
- ``P``: the pilot process (batch mode), or xargs;
- ``S``: the fork server (batch mode);
- ``I``: nothing (idle); ``O``: anything else (kernel threads).

It prints the share of time of each combination (``JJ``: two jobs at once on
two CPUs, ``IJ``: one CPU idle while a job runs on the other, ...), and the CPU
time per job of each kind. On the 2-core test machine this is what showed that
at ``--nodes 2`` the pilot and the fork server (~350 µs of CPU per job
between them, in a ping-pong of wakeups) share the two cores with the jobs,
and that two jobs run at once only a quarter of the time (xargs: see its row).

A second table gives, for the pilot (or xargs) and the fork server, the delay from
each wake-up to its run (median and 90th percentile) and the time per job it spent
woken but waiting for a CPU while another CPU was idle. At ``--nodes 2`` on the
test machine the fork server's p90 is 0.5-0.6 ms against xargs' ~0.03 ms: it is
woken onto the CPU of a job that has just started, does not preempt it and waits
for its end (50-65 µs per job while the other CPU idles; xargs: 5-10).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

_LINE = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
_TASK = re.compile(r"^(.*)\[(\d+)(?:/(\d+))?\]$")


Slice = tuple[float, float, str, int, float]  # start, end, comm, pid, wake-up delay (s)


def timeline(data: str) -> dict[str, list[Slice]]:
    """Per CPU: (start, end, comm, pid, delay) of each run slice; ``delay``: from the
    wake-up to the start (perf's "sch delay")."""
    out = subprocess.run(
        ["perf", "sched", "timehist", "-i", data], check=True, capture_output=True, text=True
    ).stdout
    cpus: dict[str, list[Slice]] = collections.defaultdict(list)
    for line in out.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        end, cpu, task, delay_ms, run_ms = float(m[1]), m[2], m[3], float(m[5]), float(m[6])
        t = _TASK.match(task)
        comm, pid = (t[1], int(t[3] or t[2])) if t else (task, -1)
        cpus[cpu].append((end - run_ms / 1000, end, comm, pid, delay_ms / 1000))
    return cpus


def _window(cpus: dict[str, list[Slice]]) -> tuple[float, float, float]:
    """The middle 60% of the traced time (start and end excluded), and the whole span."""
    t0 = max(v[0][0] for v in cpus.values())
    t1 = min(v[-1][1] for v in cpus.values())
    span = t1 - t0
    return t0 + 0.2 * span, t1 - 0.2 * span, span


def classify(
    cpus: dict[str, list[Slice]], kind_of: Callable[[str, int], str], jobs: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Shares of time per combination of kinds, and µs of CPU per job per kind."""
    lo, hi, span = _window(cpus)
    shares: collections.Counter[str] = collections.Counter()
    cpu_us: dict[str, float] = collections.defaultdict(float)
    pos = dict.fromkeys(cpus, 0)
    t = lo
    while t < hi:
        kinds = []
        for cpu, slices in cpus.items():
            i = pos[cpu]
            while i < len(slices) and slices[i][1] < t:
                i += 1
            pos[cpu] = i
            on = i < len(slices) and slices[i][0] <= t
            kinds.append(kind_of(slices[i][2], slices[i][3]) if on else "I")
        shares["".join(sorted(kinds))] += 1
        t += 1e-5
    for slices in cpus.values():
        for start, end, comm, pid, _ in slices:
            if end > lo and start < hi:  # the part inside the window
                cpu_us[kind_of(comm, pid)] += (min(end, hi) - max(start, lo)) * 1e6
    total = sum(shares.values())
    frac = (hi - lo) / span  # the jobs of the window, assuming an even pace
    return (
        {k: v / total for k, v in shares.most_common()},
        {k: v / (jobs * frac) for k, v in cpu_us.items() if k not in ("I", "O")},
    )


def wake_waits(
    cpus: dict[str, list[Slice]], kind_of: Callable[[str, int], str], jobs: int
) -> dict[str, tuple[float, float, float]]:
    """Per kind other than jobs, idle and other: the median and 90th percentile of its
    wake-up delays (µs), and the µs per job it spent woken but waiting for a CPU while
    another CPU was idle (the scheduler did not move it there; summed over the other CPUs,
    so with more than two a wait beside two idle CPUs counts twice)."""
    lo, hi, span = _window(cpus)
    idle = {
        cpu: sorted((a, b) for a, b, comm, _, _ in v if comm.startswith("<idle>"))
        for cpu, v in cpus.items()
    }
    delays: dict[str, list[float]] = collections.defaultdict(list)
    stranded: dict[str, float] = collections.defaultdict(float)
    for cpu, slices in cpus.items():
        for start, _, comm, pid, delay in slices:
            kind = kind_of(comm, pid)
            if kind in ("J", "I", "O") or not lo <= start <= hi:
                continue
            delays[kind].append(delay * 1e6)
            w0 = start - delay
            for other, spans in idle.items():
                if other == cpu:
                    continue
                i = max(bisect.bisect_right(spans, (w0, w0)) - 1, 0)
                while i < len(spans) and spans[i][0] < start:
                    a, b = spans[i]
                    stranded[kind] += max(0.0, min(b, start) - max(a, w0)) * 1e6
                    i += 1
    per_job = jobs * (hi - lo) / span
    out = {}
    for kind, ds in delays.items():
        ds.sort()
        out[kind] = (ds[len(ds) // 2], ds[int(0.9 * len(ds))], stranded[kind] / per_job)
    return out


def _perf(argv: list[str], data: str) -> None:
    subprocess.run(
        ["perf", "sched", "record", "-o", data, "--", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("sched_share: needs perf (Debian: linux-perf)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp, "reqs.json")
        reqs.write_text(
            json.dumps(
                [
                    {
                        "request": "submit",
                        "jobs": [
                            {"name": f"j{i}", "execution": {"exec": "/bin/true"}}
                            for i in range(args.n)
                        ],
                    }
                ]
            )
        )
        wd = Path(tmp, "wd")
        data = str(Path(tmp, "batch.data"))
        _perf(
            [
                sys.executable,
                "-m",
                "qcgpj_async",
                "--file-path",
                str(reqs),
                "--nodes",
                str(args.nodes),
                "--wd",
                str(wd),
            ],
            data,
        )
        svc = next(wd.glob(".qcgpjm-service-*"))
        pilot = int(svc.name.rsplit(".", 1)[1])  # .qcgpjm-service-<host>.<pid>
        cpus = timeline(data)
        slices_of: collections.Counter[int] = collections.Counter(
            pid
            for v in cpus.values()
            for _, _, comm, pid, _ in v
            if comm.startswith("python") and pid != pilot
        )
        server = slices_of.most_common(1)[0][0]

        def batch_kind(comm: str, pid: int) -> str:
            if pid == pilot:
                return "P"
            if pid == server:
                return "S"
            if comm == "true" or comm.startswith("python"):  # a job, before its exec too
                return "J"
            return "I" if comm.startswith("<idle>") else "O"

        rows.append(
            (
                "qcgpj_async batch",
                *classify(cpus, batch_kind, args.n),
                wake_waits(cpus, batch_kind, args.n),
            )
        )
        data = str(Path(tmp, "xargs.data"))
        _perf(["bash", "-c", f"seq {args.n} | xargs -P {args.nodes} -n 1 /bin/true"], data)

        def xargs_kind(comm: str, pid: int) -> str:
            if comm == "xargs":
                return "P"
            if comm == "true":
                return "J"
            return "I" if comm.startswith("<idle>") else "O"

        cpus = timeline(data)
        rows.append(
            (
                f"xargs -P {args.nodes}",
                *classify(cpus, xargs_kind, args.n),
                wake_waits(cpus, xargs_kind, args.n),
            )
        )
    print(f"{args.n} /bin/true jobs, {args.nodes} at a time, {os.cpu_count()} CPUs\n")
    print(
        "| run | share of time per CPU combination (J job, P pilot/xargs, S fork server, "
        "I idle, O other) | CPU µs per job |"
    )
    print("|---|---|---|")
    for name, shares, per_job, _ in rows:
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:7])
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in sorted(per_job.items()))
        print(f"| {name} | {top} | {cpu} |")
    print(
        "\n| run | who | wake-up delay, median / p90 (µs) | woken but waiting while a CPU "
        "idles (µs per job) |"
    )
    print("|---|---|---|---|")
    for name, _, _, waits in rows:
        for kind, (med, p90, stranded) in sorted(waits.items()):
            print(f"| {name} | {kind} | {med:.0f} / {p90:.0f} | {stranded:.0f} |")


if __name__ == "__main__":
    main()
