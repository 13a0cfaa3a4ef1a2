"""Slurm steps per second: our srun executor vs plain srun loops, in one allocation.

Usage: ``python benchmarks/srun_bench.py [--runs 5] [-n 200] [--nodes 2] [--cpus 8]``

Needs a Slurm cluster (``bash .ci/slurm-cluster.sh up``). Outside an
allocation the script re-runs itself under ``salloc`` (a unique job name,
``--immediate`` and ``--time`` bound it; the job is cancelled by name at the
end whatever happens), so every variant runs in the same allocation, in
turns A B C A B C ...:

- ``pilot+srun``: ``Pilot(resources="slurm", executor=SrunExecutor(...))``
  runs N one-core ``/bin/true`` jobs; timed from entering the Pilot to
  leaving it (submit, N steps, report, service files).
- ``srun & loop``: ``for i in 1..N: srun --exact -N1 -n1 -c1 /bin/true &;
  wait``. Every srun is started at once; those beyond the free CPUs retry
  until a step ends ("step creation temporarily disabled").
- ``xargs -P<cpus> srun``: N sruns, at most one per CPU at a time (what the
  pilot does too).

Prints a markdown table (median wall time, steps/s, time ratio to the
``srun &`` loop) and one JSON line with every figure. On this kind of
machine (2 real cores posing as 2 nodes x 4 CPUs, Slurm 22.05) step launch
is ~30 ms, so expect tens of steps per second; a ratio near 1 means the
pilot adds nothing measurable to srun's own cost.
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
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _harness import WORK_DIR, format_machine_info  # noqa: E402

LOOP = (
    "for i in $(seq {n}); do srun --exact --quiet -N1 -n1 -c1 /bin/true || echo FAIL & done; wait"
)
XARGS = (
    "seq {n} | xargs -P {p} -I{{}} sh -c 'srun --exact --quiet -N1 -n1 -c1 /bin/true || echo FAIL'"
)


def run_pilot(n: int) -> tuple[float, str | None]:
    """N /bin/true jobs through the Pilot and the srun executor: (seconds, error)."""
    import anyio

    from qcgpj_async import Jobs, JobState, Pilot
    from qcgpj_async.executors import SrunExecutor

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    wd = tempfile.mkdtemp(prefix="srun-bench-", dir=WORK_DIR)
    states: dict[str, JobState] = {}

    async def main() -> float:
        ex = SrunExecutor(wd)
        t0 = time.perf_counter()
        async with Pilot(resources="slurm", wd=wd, executor=ex) as pilot:
            jobs = Jobs()
            for i in range(n):
                jobs.add(name=f"t{i}", exec="/bin/true")
            names = await pilot.submit(jobs)
            states.update(await pilot.wait4(names))
        elapsed = time.perf_counter() - t0
        await ex.aclose()
        return elapsed

    elapsed = anyio.run(main)
    bad = [k for k, v in states.items() if v is not JobState.SUCCEED]
    shutil.rmtree(wd, ignore_errors=True)
    return elapsed, (f"{len(bad)} jobs not SUCCEED" if bad or len(states) != n else None)


def run_shell(script: str) -> tuple[float, str | None]:
    """A shell loop of sruns: (seconds, error)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - t0
    fails = done.stdout.count("FAIL")
    if done.returncode != 0 or fails:
        return elapsed, f"exit {done.returncode}, {fails} failed sruns: {done.stderr[-300:]}"
    return elapsed, None


def inside(args: argparse.Namespace) -> int:
    """Run the variants in turns inside the current allocation; print the results."""
    n = args.jobs
    variants: dict[str, Callable[[], tuple[float, str | None]]] = {
        "pilot+srun": lambda: run_pilot(n),
        "srun & loop": lambda: run_shell(LOOP.format(n=n)),
        f"xargs -P{args.cpus} srun": lambda: run_shell(XARGS.format(n=n, p=args.cpus)),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    errors: dict[str, list[str]] = {k: [] for k in variants}
    for i in range(args.runs):
        for name, fn in variants.items():
            elapsed, error = fn()
            (errors[name] if error else times[name]).append(error or elapsed)  # type: ignore[arg-type]
            status = f"FAILED: {error}" if error else "ok"
            print(
                f"  [{i + 1}/{args.runs}] {name}: {elapsed:.2f} s, {status}",
                file=sys.stderr,
                flush=True,
            )
    peer = "srun & loop"
    med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
    print(
        f"\n{n} one-core /bin/true steps in one allocation of {os.environ.get('SLURM_JOB_NODELIST')}"
        f" ({os.environ.get('SLURM_JOB_CPUS_PER_NODE')} CPUs), {args.runs} runs each\n"
    )
    print(
        "| variant | wall s median (min-max) | steps/s | time ratio vs srun & loop | failed runs |"
    )
    print("|---|---|---|---|---|")
    for k, v in times.items():
        span = f"{min(v):.2f}-{max(v):.2f}" if v else "-"
        print(
            f"| {k} | {med[k]:.2f} ({span}) | {n / med[k]:.1f} | {med[k] / med[peer]:.2f} "
            f"| {len(errors[k])}/{args.runs} |"
        )
    print()
    print(format_machine_info())
    figures = {f"{k} median_s": round(med[k], 3) for k in times}
    figures.update({f"{k} steps_per_s": round(n / med[k], 1) for k in times})
    figures["ratio pilot/loop"] = round(med["pilot+srun"] / med[peer], 3)
    print(json.dumps(figures))
    return 1 if any(errors.values()) else 0


def main(argv: list[str] | None = None) -> int:
    """Parse options; run inside the current allocation, or get one with salloc."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("-n", "--jobs", type=int, default=200)
    p.add_argument("--nodes", type=int, default=2, help="nodes of the allocation (salloc -N)")
    p.add_argument("--cpus", type=int, default=8, help="CPUs of the allocation (salloc -n)")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inside or os.environ.get("SLURM_JOB_ID"):
        return inside(args)
    if shutil.which("salloc") is None:
        print(
            "salloc not found: start a cluster with 'bash .ci/slurm-cluster.sh up'", file=sys.stderr
        )
        return 2
    name = f"qcgpj-bench-{uuid.uuid4().hex[:10]}"
    cmd = [
        "salloc",
        "--quiet",
        "--immediate=60",
        f"--nodes={args.nodes}",
        f"--ntasks={args.cpus}",
        "--time=30",
        f"--job-name={name}",
        "--",
        sys.executable,
        __file__,
        "--inside",
        f"--runs={args.runs}",
        f"--jobs={args.jobs}",
        f"--cpus={args.cpus}",
    ]
    try:
        return subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL).returncode
    finally:
        subprocess.run(
            ["scancel", "--quiet", f"--name={name}"],
            check=False,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )


if __name__ == "__main__":
    sys.exit(main())
