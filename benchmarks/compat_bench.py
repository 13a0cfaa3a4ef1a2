"""The original's synchronous API on ours (qcgpj_async.compat) vs the original itself.

Usage: ``.venv/bin/python benchmarks/compat_bench.py [--rounds 3] [--latency 200]
[--jobs 5000] [--nodes 2]``

Both sides run with this interpreter (the test extra installs the original,
``qcg-pilotjob==0.14.2``, and ``qcg-pilotjob-executor-api==0.14.2`` beside
ours), each workload in a fresh child process, the order alternating between
rounds. Three workloads:

1. ``LocalManager([...])`` then ``finish()``: start and finish, wall time;
2. one ``/bin/true`` job ``submit`` -> ``wait4`` through the synchronous API,
   repeated ``--latency`` times on one manager: median and 90th percentile;
3. ``--jobs`` ``/bin/true`` jobs through ``QCGPJExecutor(...).submit(BasicTemplate...)``
   futures, then ``result()`` of each: jobs/s, start and finish excluded.

Prints a markdown table (ratio = original / ours: > 1 means ours is faster),
then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIDES = ("ours", "original")


def _api(side: str) -> tuple[Any, Any]:
    if side == "ours":
        from qcgpj_async.compat import Jobs, LocalManager
    else:
        from qcg.pilotjob.api.job import Jobs  # type: ignore[no-redef]
        from qcg.pilotjob.api.manager import LocalManager  # type: ignore[no-redef]
    return Jobs, LocalManager


def child(side: str, workload: str, n: int, nodes: str, wd: str) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    args = ["--wd", wd, "--nodes", nodes]
    if workload == "start":
        Jobs, LocalManager = _api(side)
        t0 = time.perf_counter()
        m = LocalManager(args, {"log_file": os.path.join(wd, "api.log")})
        t1 = time.perf_counter()
        m.finish()
        t2 = time.perf_counter()
        return {"start_s": t1 - t0, "finish_s": t2 - t1, "total_s": t2 - t0}
    if workload == "latency":
        Jobs, LocalManager = _api(side)
        m = LocalManager(args, {"log_file": os.path.join(wd, "api.log")})
        try:
            times = []
            for i in range(n + 5):
                t0 = time.perf_counter()
                names = m.submit(Jobs().add(name=f"j{i}", exec="/bin/true"))
                state = m.wait4(names)
                dt = time.perf_counter() - t0
                assert state == {f"j{i}": "SUCCEED"}, state
                if i >= 5:  # the first ones warm caches up
                    times.append(dt)
        finally:
            m.finish()
        times.sort()
        return {
            "median_ms": 1e3 * statistics.median(times),
            "p90_ms": 1e3 * times[int(0.9 * len(times))],
        }
    if workload == "executor":
        if side == "ours":
            from qcgpj_async.compat.executor import BasicTemplate, QCGPJExecutor
        else:
            from qcg.pilotjob.executor_api.qcgpj_executor import QCGPJExecutor  # type: ignore[no-redef]
            from qcg.pilotjob.executor_api.templates.basic_template import (  # type: ignore[no-redef]
                BasicTemplate,
            )
        ex = QCGPJExecutor(wd=wd, resources=nodes)
        try:
            t0 = time.perf_counter()
            futures = [
                ex.submit(BasicTemplate.template, name=f"j{i}", exec="/bin/true") for i in range(n)
            ]
            t1 = time.perf_counter()
            results = [f.result() for f in futures]
            t2 = time.perf_counter()
            done = sum(f.done() for f in futures)
            t3 = time.perf_counter()
        finally:
            ex.shutdown()
        assert all(next(iter(r.values())) == "SUCCEED" for r in results)
        assert done == n
        return {
            "submit_s": t1 - t0,
            "total_s": t2 - t0,
            "jobs_per_s": n / (t2 - t0),
            "done_us": 1e6 * (t3 - t2) / n,
        }
    raise ValueError(workload)


def run_child(side: str, workload: str, n: int, nodes: str, timeout: float) -> dict[str, float]:
    wd = tempfile.mkdtemp(prefix=f"compat-{side}-{workload}-")
    try:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            side,
            workload,
            str(n),
            nodes,
            wd,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=wd)
        if out.returncode != 0:
            raise RuntimeError(f"{side} {workload} failed: {out.stderr[-2000:]}")
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency", type=int, default=200, help="submit->wait4 repetitions")
    p.add_argument("--jobs", type=int, default=5000, help="jobs through QCGPJExecutor futures")
    p.add_argument("--executor-rounds", type=int, default=1)
    p.add_argument("--nodes", default="2")
    p.add_argument("--child", nargs=5, metavar=("SIDE", "WORKLOAD", "N", "NODES", "WD"))
    a = p.parse_args()
    if a.child:
        side, workload, n, nodes, wd = a.child
        print(json.dumps(child(side, workload, int(n), nodes, wd)))
        return
    figures: dict[str, dict[str, list[dict[str, float]]]] = {}
    plan = [
        ("start", 0, a.rounds),
        ("latency", a.latency, a.rounds),
        ("executor", a.jobs, a.executor_rounds),
    ]
    for workload, n, rounds in plan:
        figures[workload] = {s: [] for s in SIDES}
        for r in range(rounds):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                res = run_child(side, workload, n, a.nodes, timeout=600)
                figures[workload][side].append(res)
                print(f"# {workload} {side} round {r}: {res}", file=sys.stderr, flush=True)

    def med(workload: str, side: str, key: str) -> float:
        return statistics.median(x[key] for x in figures[workload][side])

    rows = [
        ("LocalManager start + finish (s)", "start", "total_s", False),
        ("  of which start (s)", "start", "start_s", False),
        ("  of which finish (s)", "start", "finish_s", False),
        (f"submit -> wait4, one job, median of {a.latency} (ms)", "latency", "median_ms", False),
        ("submit -> wait4, 90th percentile (ms)", "latency", "p90_ms", False),
        (f"QCGPJExecutor, {a.jobs} jobs: submit + result (s)", "executor", "total_s", False),
        ("QCGPJExecutor: jobs/s", "executor", "jobs_per_s", True),
        ("QCGPJExecutor: done() per future (us)", "executor", "done_us", False),
    ]
    print(
        f"nodes {a.nodes}; rounds {a.rounds} (executor {a.executor_rounds}); medians; python {sys.version.split()[0]}"
    )
    print("| workload | ours | original | original / ours |")
    print("|---|---|---|---|")
    for label, workload, key, higher_better in rows:
        o, q = med(workload, "ours", key), med(workload, "original", key)
        ratio = (o / q) if higher_better else (q / o)
        print(f"| {label} | {o:.4g} | {q:.4g} | {ratio:.1f}x |")
    print(json.dumps({"args": vars(a), "figures": figures}))


if __name__ == "__main__":
    main()
