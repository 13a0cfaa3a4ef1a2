"""Smoke test of the peer side: the original batch service and xargs, side by side.

Usage: ``python benchmarks/peers_smoke.py [--runs 3] [--nodes 2] [-n 1000]``

Runs, interleaved, the original (QCG-PilotJob 0.14.2, ``--file-path``) on 1
and N separate ``/bin/true`` jobs, and ``xargs -P <nodes>`` on N, then prints
a markdown table. Expected on the reference 2-core machine: original ~1.7 s
for 1 job, ~2.4 s for 1000; xargs well under 1 s.
"""

from __future__ import annotations

import argparse
import sys
import time

from _harness import (
    alternate,
    format_machine_info,
    make_rows,
    markdown_table,
    run_cmd,
    run_in_fresh_wd,
)
from _peers import (
    batch_verifier,
    ensure_original_venv,
    original_batch_cmd,
    write_true_jobs,
    xargs_cmd,
)


def main(argv: list[str] | None = None) -> int:
    """Run the smoke benchmark and print its table; exit 1 if any run failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--nodes", default="2", help="cores of the single node (original's --nodes)")
    p.add_argument("-n", "--jobs", type=int, default=1000)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    venv = ensure_original_venv()
    print(f"original venv: {venv} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    n, nodes = args.jobs, args.nodes
    one, many = write_true_jobs(1), write_true_jobs(n)
    par = sum(int(x.rpartition(":")[2]) for x in nodes.split(","))

    variants = {
        "original 1": lambda: run_in_fresh_wd(
            lambda wd: original_batch_cmd(one, nodes, wd, venv), verify=batch_verifier(1),
            tag="orig1",
        ),
        f"original {n}": lambda: run_in_fresh_wd(
            lambda wd: original_batch_cmd(many, nodes, wd, venv), verify=batch_verifier(n),
            tag=f"orig{n}",
        ),
        f"xargs {n}": lambda: run_cmd(xargs_cmd(n, par)),
    }  # fmt: skip
    results = alternate(variants, args.runs)

    rows = make_rows("1 x /bin/true", {"original": results["original 1"]}, jobs=1)
    rows += make_rows(
        f"{n} x /bin/true",
        {"original": results[f"original {n}"], f"xargs -P {par}": results[f"xargs {n}"]},
        jobs=n,
        ratio_to={"original": "original", "xargs": f"xargs -P {par}"},
    )
    print(format_machine_info())
    print(
        f"`--nodes {nodes}`, {args.runs} runs each, interleaved; ratio = time / reference time.\n"
    )
    print(markdown_table(rows))
    return 0 if all(m.ok for ms in results.values() for m in ms) else 1


if __name__ == "__main__":
    sys.exit(main())
