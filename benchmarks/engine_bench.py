"""Cost of the scheduler engine per job, driven directly (no processes, no event loop).

Usage: ``python benchmarks/engine_bench.py [--quick] [--profile]``

Every launch is completed at once (``started`` then ``exited(0)``), so what is
measured is the engine's own bookkeeping: the product's headline cost per job.

1. throughput: N one-core jobs on 1,000 cores, submitted at once, then run
   to the end (jobs/s; target >= 20,000).
2. scaling: the cost per job of the same loop with 1,000 vs 100,000 jobs
   queued on 100 cores (ratio should stay <= 1.5).
3. backfill: 1,001 cores, 1,000 long one-core jobs hold 1,000 of them, Q
   two-core jobs are queued and can never fit the one free core, and behind
   them one-core short jobs backfill it one after another. One event is
   "a short job exits, the next one starts": its cost must not grow with Q.
4. lazy iterations: one job of 10^6 iterations on 4 cores: submit time and
   peak traced memory (targets < 50 ms, < 10 MB).
5. multi-node placement: 4-node jobs (``numNodes: 4``: four whole nodes; and
   ``numNodes: 4, numCores: 1``: one core on each of four nodes) on 16 vs
   1,000 nodes of 128 cores, submitted at once and run to the end: us per
   job (target <= 30 at 1,000 nodes, and not growing with the nodes).

Prints a markdown table, then one JSON line with every figure. ``--profile``
prints the cProfile top functions of (1) instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import platform
import pstats
import sys
import time
import tracemalloc
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcgpj_async.engine import Engine, Launch, ResourcePool, parse_nodes
from qcgpj_async.model import Execution, Jobs, JobSpec

_TEMPLATE = JobSpec("t", Execution(exec="/bin/true"))


def one_core_jobs(n: int, prefix: str = "j") -> list[JobSpec]:
    """N one-core jobs (built from a template: spec building is not measured)."""
    return [attrs.evolve(_TEMPLATE, name=f"{prefix}{i}") for i in range(n)]


def cores_jobs(n: int, cores: int, prefix: str) -> list[JobSpec]:
    """N jobs of exactly ``cores`` cores each."""
    tmpl = Jobs().add(name="t", exec="/bin/true", numCores=cores).jobs()[0]
    return [attrs.evolve(tmpl, name=f"{prefix}{i}") for i in range(n)]


def pool(spec: str) -> ResourcePool:
    """A pool from a nodes spec, no system core."""
    return ResourcePool(parse_nodes(spec), system_core=False)


def nodes_spec(cores: int, per_node: int = 100) -> str:
    """``cores`` cores on nodes of ``per_node`` (the last one smaller)."""
    full, rest = divmod(cores, per_node)
    parts = [str(per_node)] * full + ([str(rest)] if rest else [])
    return ",".join(parts)


def run_all(eng: Engine, specs: list[JobSpec], remove: bool = False) -> None:
    """Submit ``specs``, then complete every launch at once until nothing runs.

    With ``remove``, every job is removed as soon as it ends (a service that
    keeps no history).
    """
    now = 0.0
    todo = [i for i in eng.submit(specs, now) if type(i) is Launch]
    started, exited = eng.started, eng.exited
    while todo:
        nxt: list[Launch] = []
        for launch in todo:
            now += 1e-6
            started(launch.run_id, now)
            nxt.extend(i for i in exited(launch.run_id, 0, now) if type(i) is Launch)
            if remove:
                eng.remove(launch.job)
        todo = nxt


def bench_throughput(n: int, cores: int = 1000, reps: int = 3) -> dict[str, float]:
    """(1): jobs/s of submit + run-to-end (best of ``reps``)."""
    dt = float("inf")
    for _ in range(reps):
        specs = one_core_jobs(n)
        eng = Engine(pool(nodes_spec(cores)))
        gc.collect()
        t0 = time.perf_counter()
        run_all(eng, specs)
        dt = min(dt, time.perf_counter() - t0)
        assert eng.unfinished == 0 and eng.job_counts[eng.jobs["j0"].state] == n
        del specs, eng
    return {"jobs": n, "seconds": dt, "jobs_per_s": n / dt, "us_per_job": dt / n * 1e6}


def bench_scaling(small: int, big: int, cores: int = 100) -> dict[str, float]:
    """(2): cost per job with ``small`` vs ``big`` jobs queued (best of several).

    Measured three ways: finished jobs kept (as a pilot keeps them until
    removed), finished jobs removed as they end, and kept with Python's cyclic
    GC off during the timed loop. The gap between the first and the last is
    the interpreter's full collections, which only start once the heap holds
    many objects (100,000 jobs do; 1,000 don't), not the engine's algorithm.
    """

    def per_job(n: int, reps: int, collect: bool, remove: bool) -> float:
        best = float("inf")
        for _ in range(reps):
            specs = one_core_jobs(n)
            eng = Engine(pool(nodes_spec(cores)))
            gc.collect()
            if not collect:
                gc.disable()
            try:
                t0 = time.perf_counter()
                run_all(eng, specs, remove)
                best = min(best, (time.perf_counter() - t0) / n)
            finally:
                gc.enable()
        return best * 1e6

    out: dict[str, float] = {"small": small, "big": big}
    for collect, remove, tag in (
        (True, False, ""),
        (True, True, "_removed"),
        (False, False, "_nogc"),
    ):
        us_small = per_job(small, max(3, big // small), collect, remove)
        us_big = per_job(big, 3, collect, remove)
        out |= {
            f"us_small{tag}": us_small,
            f"us_big{tag}": us_big,
            f"ratio{tag}": us_big / us_small,
        }
    return out


def bench_backfill(queued: int, events: int) -> float:
    """(3): us per "one-core job exits, the next starts" with ``queued`` blocked 2-core jobs."""
    eng = Engine(pool("1001"))
    now = 0.0
    long = [i for i in eng.submit(one_core_jobs(1000, "long"), now) if type(i) is Launch]
    for launch in long:
        eng.started(launch.run_id, now)
    blocked = eng.submit(cores_jobs(queued, 2, "two"), now)
    assert not any(type(i) is Launch for i in blocked)
    todo = [i for i in eng.submit(one_core_jobs(events, "short"), now) if type(i) is Launch]
    assert len(todo) == 1
    gc.collect()
    t0 = time.perf_counter()
    n = 0
    while todo:
        launch = todo[0]
        now += 1e-6
        eng.started(launch.run_id, now)
        todo = [i for i in eng.exited(launch.run_id, 0, now) if type(i) is Launch]
        n += 1
    dt = time.perf_counter() - t0
    assert n == events
    assert eng.pool.free_cores == 1 and eng.unfinished == 1000 + queued
    return dt / events * 1e6


def bench_multinode(nodes: int, n: int, reps: int = 3, **kw: int) -> float:
    """(5): us per 4-node job (``kw``: the job's resources) on ``nodes`` x 128 cores."""
    tmpl = Jobs().add(name="t", exec="/bin/true", numNodes=4, **kw).jobs()[0]
    dt = float("inf")
    for _ in range(reps):
        specs = [attrs.evolve(tmpl, name=f"m{i}") for i in range(n)]
        eng = Engine(pool(",".join(["128"] * nodes)))
        gc.collect()
        t0 = time.perf_counter()
        run_all(eng, specs)
        dt = min(dt, time.perf_counter() - t0)
        assert eng.unfinished == 0 and eng.job_counts[eng.jobs["m0"].state] == n
    return dt / n * 1e6


def bench_iterations(n: int) -> dict[str, float]:
    """(4): submit of one job of ``n`` iterations: seconds (untraced) and traced peak bytes."""
    spec = Jobs().add(name="big", exec="/bin/true", iteration=n).jobs()[0]
    gc.collect()
    eng = Engine(pool("4"))
    t0 = time.perf_counter()
    out = eng.submit([spec], 0.0)
    dt = time.perf_counter() - t0
    assert sum(type(i) is Launch for i in out) == 4
    eng = Engine(pool("4"))
    gc.collect()
    tracemalloc.start()
    eng.submit([spec], 0.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"iterations": n, "submit_ms": dt * 1e3, "peak_mb": peak / 2**20}


def profile(n: int) -> None:
    """cProfile of (1)."""
    specs = one_core_jobs(n)
    eng = Engine(pool(nodes_spec(1000)))
    prof = cProfile.Profile()
    prof.enable()
    run_all(eng, specs)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print their table and JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller N (a smoke run)")
    p.add_argument("--profile", action="store_true", help="profile (1) instead")
    args = p.parse_args(argv)
    n = 10_000 if args.quick else 100_000
    if args.profile:
        profile(n)
        return 0
    its = 100_000 if args.quick else 1_000_000

    thr = bench_throughput(n)
    scal = bench_scaling(1_000, n)
    bf_small = bench_backfill(1_000, 2_000)
    bf_big = bench_backfill(n, 2_000)
    it = bench_iterations(its)
    mn_jobs = 1_000 if args.quick else 4_000
    multi = {
        f"{kind}_{nodes}": bench_multinode(nodes, mn_jobs, **kw)
        for kind, kw in (("whole", {}), ("one_core", {"numCores": 1}))
        for nodes in (16, 1_000)
    }

    rows = [
        (
            "(1) throughput",
            f"{n:,} one-core jobs, 1,000 cores",
            f"{thr['jobs_per_s']:,.0f} jobs/s ({thr['us_per_job']:.1f} us/job)",
            ">= 20,000 jobs/s",
        ),
        (
            "(2) scaling",
            f"{scal['small']:,} vs {scal['big']:,} jobs, 100 cores",
            f"{scal['us_small']:.1f} vs {scal['us_big']:.1f} us/job (x{scal['ratio']:.2f})",
            "ratio <= 1.5",
        ),
        (
            "(2') scaling, removed",
            "same, each job removed when it ends",
            f"{scal['us_small_removed']:.1f} vs {scal['us_big_removed']:.1f} us/job "
            f"(x{scal['ratio_removed']:.2f})",
            "ratio <= 1.5",
        ),
        (
            "(2'') scaling, GC off",
            "same as (2), cyclic GC off while timed",
            f"{scal['us_small_nogc']:.1f} vs {scal['us_big_nogc']:.1f} us/job "
            f"(x{scal['ratio_nogc']:.2f})",
            "ratio <= 1.5",
        ),
        (
            "(3) backfill",
            f"1,000 vs {n:,} blocked 2-core jobs",
            f"{bf_small:.1f} vs {bf_big:.1f} us/event (x{bf_big / bf_small:.2f})",
            "O(1): ratio ~1",
        ),
        (
            "(4) lazy iterations",
            f"one job of {its:,} iterations",
            f"submit {it['submit_ms']:.2f} ms, peak {it['peak_mb']:.2f} MB",
            "< 50 ms, < 10 MB",
        ),
        (
            "(5) multi-node",
            f"{mn_jobs:,} jobs of 4 whole nodes, 16 vs 1,000 nodes x 128 cores",
            f"{multi['whole_16']:.1f} vs {multi['whole_1000']:.1f} us/job",
            "<= 30 us at 1,000 nodes",
        ),
        (
            "(5') multi-node, 1 core",
            f"{mn_jobs:,} jobs of 1 core on each of 4 nodes, same",
            f"{multi['one_core_16']:.1f} vs {multi['one_core_1000']:.1f} us/job",
            "<= 30 us at 1,000 nodes",
        ),
    ]
    print(f"Engine benchmark (python {platform.python_version()}, {platform.machine()})\n")
    print("| case | workload | result | target |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(
        json.dumps(
            {
                "bench": "engine",
                "quick": args.quick,
                "python": platform.python_version(),
                "throughput": thr,
                "scaling": scal,
                "backfill": {
                    "queued_small": 1_000,
                    "queued_big": n,
                    "us_small": bf_small,
                    "us_big": bf_big,
                    "ratio": bf_big / bf_small,
                },
                "iterations": it,
                "multinode": {"jobs": mn_jobs, "us_per_job": multi},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
