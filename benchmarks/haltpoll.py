"""Batch mode and xargs under several guest halt-polling times of a KVM guest's idle vCPUs.

Usage: ``python benchmarks/haltpoll.py [--runs 5] [-n 5000] [--nodes 2]
[--settings 0,200000,1000000] [--iterations]`` (as root, in a guest whose
cpuidle driver is ``haltpoll``).

On the test VM the kernel command line sets ``haltpoll.guest_halt_poll_ns=0``:
an idle vCPU halts at once, and waking it from the other vCPU costs tens to
hundreds of µs. xargs carries a job's end to the next start in one process;
batch mode carries it through the fork server and the pilot, and pays that
wake-up more often. This script measures how much of the ``--nodes 2`` gap
to xargs that explains: for each halt-polling time (ns, written to
``/sys/module/haltpoll/parameters/guest_halt_poll_ns``) it runs
``xargs -P <nodes>`` and batch mode side by side, in alternated rounds with
the order rotated, and reports the median wall time, the median of the
per-round speed ratios (xargs time / batch time) and the whole machine's idle
time per run (``/proc/stat``). The setting found at the start is restored at
the end, also after an error or Ctrl-C.

The polling time is a machine-wide setting: an idle vCPU then spins for up to
that long, which the host pays for. Nothing in qcgpj_async changes it.
Prints a markdown table and one JSON line; exit 2 where the setting cannot be
written (not root, or not a haltpoll guest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _harness import HALT_POLL, Measurement, alternate, proc_stat_cpu, run_cmd, run_in_fresh_wd
from _peers import (
    batch_verifier,
    ours_batch_cmd,
    ours_env,
    write_iteration_job,
    write_true_jobs,
    xargs_cmd,
)


def _stat() -> tuple[int, int]:
    return proc_stat_cpu(Path("/proc/stat").read_text())


def with_cpu(run: Callable[[], Measurement]) -> Measurement:
    """``run()``, its figures holding the machine's busy and idle jiffies during it."""
    busy0, idle0 = _stat()
    m = run()
    busy1, idle1 = _stat()
    m.figures["busy_jiffies"] = busy1 - busy0
    m.figures["idle_jiffies"] = idle1 - idle0
    return m


def round_ratios(ref: list[Measurement], tool: list[Measurement]) -> list[float]:
    """Per round, ref wall / tool wall (> 1: the tool is faster), rounds where both ran ok."""
    return [r.wall_s / t.wall_s for r, t in zip(ref, tool, strict=True) if r.ok and t.ok]


def parse_settings(text: str) -> list[int]:
    """``"0,200000"`` -> [0, 200000].

    Raises:
        argparse.ArgumentTypeError: not a comma-separated list of integers >= 0.
    """
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"need one or more integers >= 0: {text!r}")
    return values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-n", type=int, default=5000, help="jobs (/bin/true)")
    ap.add_argument("--nodes", type=int, default=2, help="cores given to the jobs")
    ap.add_argument(
        "--settings",
        type=parse_settings,
        default=[0, 200000, 1000000],
        help="guest_halt_poll_ns values, comma-separated",
    )
    ap.add_argument(
        "--iterations",
        action="store_true",
        help="one job of n iterations instead of n separate jobs",
    )
    args = ap.parse_args()
    n, nodes = args.n, args.nodes
    try:
        found = HALT_POLL.read_text().strip()
        HALT_POLL.write_text(found)
    except OSError as e:
        print(
            f"haltpoll: cannot set {HALT_POLL} ({e.strerror or e}); this needs root "
            "in a KVM guest whose cpuidle driver is haltpoll",
            file=sys.stderr,
        )
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="haltpoll-") as tmp_s:
            tmp = Path(tmp_s)
            if args.iterations:
                reqs = write_iteration_job(n, tmp / "jobs.json")
                verify = batch_verifier(1, iterations=n)
            else:
                reqs = write_true_jobs(n, tmp / "jobs.json")
                verify = batch_verifier(n)
            env = ours_env()

            def variant(setting: int, ours: bool) -> Callable[[], Measurement]:
                def run() -> Measurement:
                    HALT_POLL.write_text(str(setting))
                    if ours:
                        return with_cpu(
                            lambda: run_in_fresh_wd(
                                lambda wd: ours_batch_cmd(reqs, nodes, wd),
                                verify=verify,
                                tag="haltpoll",
                                env=env,
                            )
                        )
                    return with_cpu(lambda: run_cmd(xargs_cmd(n, nodes)))

                return run

            variants: dict[str, Callable[[], Measurement]] = {}
            for s in args.settings:
                variants[f"xargs @{s}"] = variant(s, ours=False)
                variants[f"batch @{s}"] = variant(s, ours=True)
            results = alternate(variants, args.runs)
    finally:
        HALT_POLL.write_text(found)
    what = f"one {n}-iteration job" if args.iterations else f"{n} /bin/true jobs"
    print(
        f"\n{what}, --nodes {nodes}, {args.runs} alternated rounds; "
        f"guest_halt_poll_ns was {found} (restored)\n"
    )
    print(
        "| guest_halt_poll_ns | xargs median | batch median | batch speed vs xargs "
        "(median of rounds, min-max) | idle jiffies xargs / batch |"
    )
    print("|---|---|---|---|---|")
    out: dict[str, object] = {"what": what, "nodes": nodes, "runs": args.runs, "found": found}
    failed = False
    for s in args.settings:
        ref, ours = results[f"xargs @{s}"], results[f"batch @{s}"]
        failed = failed or not all(m.ok for m in ref + ours)
        ratios = round_ratios(ref, ours)
        walls = {
            k: statistics.median([m.wall_s for m in ms if m.ok] or [float("nan")])
            for k, ms in (("xargs", ref), ("batch", ours))
        }
        idle = {
            k: statistics.median([m.figures["idle_jiffies"] for m in ms if m.ok] or [0])
            for k, ms in (("xargs", ref), ("batch", ours))
        }
        med = statistics.median(ratios) if ratios else float("nan")
        span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        print(
            f"| {s} | {walls['xargs']:.3f} s | {walls['batch']:.3f} s | "
            f"{med:.2f}x ({span}) | {idle['xargs']:.0f} / {idle['batch']:.0f} |"
        )
        out[str(s)] = {
            "xargs_s": round(walls["xargs"], 4),
            "batch_s": round(walls["batch"], 4),
            "speed_vs_xargs": round(med, 3),
            "ratios": [round(r, 3) for r in ratios],
            "idle_jiffies": idle,
        }
    print(json.dumps(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
