"""Batch mode inside one Slurm allocation: our launch agents vs srun steps vs the original.

Usage: ``python benchmarks/slurm_bench.py [--runs 3] [-n 2000] [--nodes 2] [--cpus 4]
[--compare PATH]``

Needs a Slurm cluster (``bash .ci/slurm-cluster.sh up``). Outside an
allocation the script re-runs itself under ``salloc -N<nodes> -n<cpus>
--ntasks-per-node=<cpus/nodes>`` (a unique job name, ``--immediate`` and
``--time`` bound it; cancelled by name at the end), so every variant runs in
the same allocation, in turns A B C A B C ...:

- ``ours agents``: ``python -m qcgpj_async --file-path reqs.json`` (resources
  from Slurm, one-node jobs through a launch agent per node);
- ``ours --no-agents``: the same with a Slurm step per job;
- with ``--compare PATH``, ``agents at PATH``: ours with agents, from another
  checkout (e.g. ``git worktree add /tmp/base REV``), for an A/B of two trees;
- ``original 0.14.2``: ``python -m qcg.pilotjob.service --file-path
  reqs.json`` in its own venv (``_peers.ensure_original_venv``), which runs
  one-node jobs through its node agents. Its agents bind jobs to real CPU
  ids: give each virtual node no more CPUs than the host has (the default,
  2 nodes x 2 CPUs on a 2-core host).

Each run is timed from the start of the command to its exit, and checked by
its ``final_status.json`` (every job finished, none failed). Prints a
markdown table (median wall time, jobs/s, speed relative to the original and
to our srun steps) and one JSON line with every figure.
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
from _peers import (  # noqa: E402
    batch_verifier,
    ensure_original_venv,
    original_python,
    ours_env,
    write_true_jobs,
)


def run(argv: list[str], wd: Path, n: int, env: dict[str, str]) -> tuple[float, str | None]:
    """One batch run: (seconds, error)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, env=env,
        cwd=wd,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    error = batch_verifier(n)(wd)
    if done.returncode != 0 or error:
        tail = (done.stderr or done.stdout)[-300:]
        return elapsed, f"exit {done.returncode}: {error or ''} {tail}"
    return elapsed, None


def inside(args: argparse.Namespace) -> int:
    """Run the variants in turns inside the current allocation; print the results."""
    n = args.jobs
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    reqs = write_true_jobs(n, WORK_DIR / f"slurm-bench-{n}.json")
    one = write_true_jobs(1, WORK_DIR / "slurm-bench-1.json")
    venv = ensure_original_venv()
    env = {**os.environ, **ours_env()}
    ours = [sys.executable, "-m", "qcgpj_async", "--file-path", str(reqs)]
    orig = [str(original_python(venv)), "-m", "qcg.pilotjob.service", "--file-path", str(reqs)]

    def variant(
        argv: list[str], jobs: int = n, tree: str | None = None
    ) -> Callable[[], tuple[float, str | None]]:
        env_of = env if tree is None else {**env, "PYTHONPATH": tree}

        def go() -> tuple[float, str | None]:
            wd = Path(tempfile.mkdtemp(prefix="slurm-bench-", dir=WORK_DIR))
            try:
                return run([*argv, "--wd", str(wd)], wd, jobs, env_of)
            finally:
                shutil.rmtree(wd, ignore_errors=True)

        return go

    variants = {
        "ours agents": variant(ours),
        "ours --no-agents": variant([*ours, "--no-agents"]),
        "original 0.14.2": variant(orig),
    }
    if args.compare:
        variants[f"agents at {args.compare}"] = variant(ours, tree=args.compare)
    if args.skip_steps:
        del variants["ours --no-agents"]
    # The start-up the agents add: one job, with and without them.
    one_job = ["-m", "qcgpj_async", "--file-path", str(one)]
    startup = {
        "1 job, agents": variant([sys.executable, *one_job], 1),
        "1 job, --no-agents": variant([sys.executable, *one_job, "--no-agents"], 1),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    errors: dict[str, list[str]] = {k: [] for k in variants}
    times.update({k: [] for k in startup})
    errors.update({k: [] for k in startup})
    for i in range(args.runs):
        for name, fn in [*variants.items(), *startup.items()]:
            elapsed, error = fn()
            if error:
                errors[name].append(error)
            else:
                times[name].append(elapsed)
            status = f"FAILED: {error}" if error else "ok"
            print(f"  [{i + 1}/{args.runs}] {name}: {elapsed:.2f} s, {status}", file=sys.stderr,
                  flush=True)  # fmt: skip
    med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
    print(
        f"\n{n} /bin/true jobs in one request file, batch mode, one allocation of"
        f" {os.environ.get('SLURM_JOB_NODELIST')} ({os.environ.get('SLURM_JOB_CPUS_PER_NODE')}"
        f" CPUs per node), {args.runs} runs each, in turns\n"
    )
    print(
        "| variant | wall s median (min-max) | jobs/s | speed vs original | speed vs srun steps |"
    )
    print("|---|---|---|---|---|")
    steps = med.get("ours --no-agents", float("nan"))  # (nan: left out)
    for k, v in times.items():
        if k in startup:
            continue
        span = f"{min(v):.2f}-{max(v):.2f}" if v else "-"
        print(
            f"| {k} | {med[k]:.2f} ({span}) | {n / med[k]:.0f} |"
            f" {med['original 0.14.2'] / med[k]:.2f}x | {steps / med[k]:.2f}x |"
        )
    added = med["1 job, agents"] - med["1 job, --no-agents"]
    print(
        f"\nOne job, whole run: {med['1 job, agents']:.3f} s with agents,"
        f" {med['1 job, --no-agents']:.3f} s without: the agents add {added:.3f} s (their start and end)\n"
    )
    print(format_machine_info())
    figures: dict[str, float] = {f"{k} median_s": round(med[k], 3) for k in times}
    figures["agents speed vs original"] = round(med["original 0.14.2"] / med["ours agents"], 2)
    figures["agents speed vs srun steps"] = round(steps / med["ours agents"], 2)
    figures["agents start-up added s"] = round(added, 3)
    print(json.dumps(figures))
    for k, errs in errors.items():
        for e in errs:
            print(f"{k}: {e}", file=sys.stderr)
    return 1 if any(errors.values()) else 0


def main(argv: list[str] | None = None) -> int:
    """Parse options; run inside the current allocation, or get one with salloc."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("-n", "--jobs", type=int, default=2000)
    p.add_argument("--nodes", type=int, default=2, help="nodes of the allocation (salloc -N)")
    p.add_argument("--cpus", type=int, default=4, help="CPUs of the allocation (salloc -n)")
    p.add_argument("--skip-steps", action="store_true", help="leave out ours --no-agents")
    p.add_argument("--compare", metavar="PATH", help="also ours with agents from this checkout")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inside or os.environ.get("SLURM_JOB_ID"):
        return inside(args)
    if shutil.which("salloc") is None:
        print("salloc not found: start a cluster with 'bash .ci/slurm-cluster.sh up'",
              file=sys.stderr)  # fmt: skip
        return 2
    name = f"qcgpj-bench-{uuid.uuid4().hex[:10]}"
    cmd = [
        "salloc", "--quiet", "--immediate=60", f"--nodes={args.nodes}",
        f"--ntasks={args.cpus}", f"--ntasks-per-node={max(1, args.cpus // args.nodes)}",
        "--time=60", f"--job-name={name}", "--",
        sys.executable, __file__, "--inside", f"--runs={args.runs}", f"--jobs={args.jobs}",
        *(["--skip-steps"] if args.skip_steps else []),
        *([f"--compare={os.path.abspath(args.compare)}"] if args.compare else []),
    ]  # fmt: skip
    try:
        return subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL).returncode
    finally:
        subprocess.run(["scancel", "--quiet", f"--name={name}"], check=False, timeout=30,
                       stdin=subprocess.DEVNULL)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
