"""Load: 100,000 /bin/true jobs through one batch run, with the service's RSS sampled.

Usage: ``python benchmarks/load_100k.py [--jobs N] [--nodes 64] [--per-request 1000]``

Runs ``python -m qcgpj_async --file-path F --nodes 64`` on a request file of
N one-core ``/bin/true`` jobs (submits of ``--per-request`` jobs each) and,
while it runs, samples the service process from ``/proc/<pid>/status``
(VmRSS) and how many jobs have ended (the "end" records of its journal,
read as it grows). It prints the RSS at every 10,000 jobs, the growth per
1,000 jobs after the first 10,000 (least squares over every sample), the
largest rise between two consecutive 1,000-job marks, the peak (VmHWM), wall
time and jobs/s; then one JSON line with every figure.

This is a benchmark, not a test: it asserts nothing. "Flat" means the
growth per 1,000 jobs stays a small constant (the engine keeps a record of
every job, ended or not, for status queries: that is state, not a leak).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / ".work"


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KB (empty when it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


class JournalCounter:
    """Counts "end" records of plain jobs in a journal that grows."""

    def __init__(self, wd: Path) -> None:
        self.wd = wd
        self.path: Path | None = None
        self.offset = 0
        self.ended = 0
        self._tail = b""

    def poll(self) -> int:
        if self.path is None:
            found = list(self.wd.glob(".qcgpjm-service-*/journal.jsonl"))
            if not found:
                return 0
            self.path = found[0]
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()  # an incomplete last line waits for the next poll
        self.ended += sum(1 for ln in lines if ln.startswith(b'{"t":"end"'))
        return self.ended


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares KB per job."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--nodes", default="64")
    ap.add_argument("--per-request", type=int, default=1000)
    ap.add_argument("--period", type=float, default=0.1, help="seconds between samples")
    args = ap.parse_args()

    run_dir = WORK / f"load_100k-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    wd = run_dir / "wd"
    wd.mkdir(parents=True)
    reqs = []
    for start in range(0, args.jobs, args.per_request):
        stop = min(start + args.per_request, args.jobs)
        reqs.append(
            {
                "request": "submit",
                "jobs": [
                    {"name": f"j{i}", "execution": {"exec": "/bin/true"}}
                    for i in range(start, stop)
                ],
            }
        )
    req_file = run_dir / "requests.json"
    req_file.write_text(json.dumps(reqs))

    cmd = [
        sys.executable,
        "-m",
        "qcgpj_async",
        "--file-path",
        str(req_file),
        "--wd",
        str(wd),
        "--nodes",
        args.nodes,
        "--resources",
        "local",
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    counter = JournalCounter(wd)
    samples: list[tuple[float, int, int]] = []  # (seconds, jobs ended, RSS KB)
    hwm = 0
    while proc.poll() is None:
        st = status(proc.pid)
        if "VmRSS" in st:
            samples.append((time.monotonic() - t0, counter.poll(), st["VmRSS"]))
            hwm = max(hwm, st.get("VmHWM", 0))
        time.sleep(args.period)
    wall = time.monotonic() - t0
    err = proc.stderr.read() if proc.stderr else ""
    ended = counter.poll()

    marks: dict[int, int] = {}  # every 1,000 jobs: the RSS of the first sample at or past it
    for _, done, rss in samples:
        k = done // 1000 * 1000
        if k and k not in marks:
            marks[k] = rss
    after = [(done, rss) for _, done, rss in samples if done >= 10_000]
    per_1000 = slope(after) * 1000
    keys = sorted(marks)
    rises = [
        marks[b] - marks[a] for a, b in itertools.pairwise(keys) if a >= 10_000 and b - a == 1000
    ]
    figures = {
        "jobs": args.jobs,
        "nodes": args.nodes,
        "per_request": args.per_request,
        "exit_code": proc.returncode,
        "ended": ended,
        "wall_s": round(wall, 2),
        "jobs_per_s": round(ended / wall, 1) if wall else None,
        "rss_kb_at": {str(k): marks[k] for k in keys if k % 10_000 == 0},
        "rss_growth_kb_per_1000_jobs_after_10000": round(per_1000, 1),
        "max_rise_kb_between_1000_marks_after_10000": max(rises) if rises else None,
        "peak_rss_kb": hwm,
        "samples": len(samples),
        "summary": err.strip().splitlines()[-1] if err.strip() else "",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(
        f"# {args.jobs} /bin/true jobs, --nodes {args.nodes}: exit {proc.returncode}, "
        f"{ended} ended in {wall:.1f} s ({figures['jobs_per_s']} jobs/s)"
    )
    print("| jobs ended | service RSS (MB) |")
    print("|---:|---:|")
    for k in keys:
        if k % 10_000 == 0:
            print(f"| {k:,} | {marks[k] / 1024:.1f} |")
    print(
        f"\nafter 10,000 jobs: {per_1000:+.1f} KB per 1,000 jobs (least squares); largest rise "
        f"between consecutive 1,000-job marks {figures['max_rise_kb_between_1000_marks_after_10000']} KB; "
        f"peak RSS {hwm / 1024:.1f} MB"
    )
    print(f"service: {figures['summary']}")
    print(json.dumps(figures))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
