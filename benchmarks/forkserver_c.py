"""Batch mode with an experimental fork server in C, beside the Python one and xargs.

Usage: ``python benchmarks/forkserver_c.py [--runs 4] [-n 5000] [--nodes 2]``

The pilot's fork server (``qcgpj_async/executors/_forkserver.py``) costs
~140 µs of CPU per job on the test machine; ``benchmarks/forkserver_c/forkserver.c``
speaks its protocol in ~80 µs. This script compiles it (``cc``; it says so and
stops where there is none) and runs, in alternated rounds with the order
rotated:

- ``xargs -P <nodes>``, the reference;
- batch mode as shipped (the Python fork server);
- batch mode with the C server, starting jobs with ``posix_spawn`` as the
  Python server does (each start waits for the child's exec);
- batch mode with the C server, starting jobs with ``fork`` and ``exec``
  (``QCGPJ_FSC_FORK=1``: the server does not wait for the exec).

The C server stands in for ``python -I -S _forkserver.py``: the batch runs in
``python -c`` with the fork-server link's ``sys.executable`` pointed at the
binary. The package itself is not changed. Prints a markdown table (median wall
time, speed relative to xargs and to the Python server, the C server's CPU per
job) and one JSON line. On the test machine neither C variant was faster
(docs/performance.md); this makes the measurement repeatable elsewhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _harness import Measurement, alternate, run_cmd, run_in_fresh_wd, summarize
from _peers import batch_verifier, ours_batch_cmd, ours_env, write_true_jobs, xargs_cmd

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "forkserver_c" / "forkserver.c"

# The batch, with the fork server's interpreter replaced by the C server.
_WRAPPER = """
import sys, types
from qcgpj_async.executors import _forkserver_link
_forkserver_link.sys = types.SimpleNamespace(executable=sys.argv.pop(1))
from qcgpj_async.cli import main
sys.argv[0] = "qcgpj-async"
sys.exit(main())
"""


def compile_server(dest: Path) -> Path | None:
    """``forkserver.c`` built into ``dest``; None (with a message) where it cannot be."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("forkserver_c: no C compiler (cc, gcc) on PATH", file=sys.stderr)
        return None
    binary = dest / "forkserver"
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(binary), str(SOURCE)], capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"forkserver_c: the build failed:\n{done.stderr}", file=sys.stderr)
        return None
    return binary


def server_cpu_per_job(times: Path, n: int) -> float | None:
    """The C server's CPU per job (µs) from its last line of user and system seconds."""
    try:
        user, system = (float(x) for x in times.read_text().split()[-2:])
    except (OSError, ValueError):
        return None
    return (user + system) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("-n", type=int, default=5000, help="jobs (/bin/true)")
    ap.add_argument("--nodes", type=int, default=2, help="cores given to the jobs")
    args = ap.parse_args()
    n, nodes = args.n, args.nodes

    with tempfile.TemporaryDirectory(prefix="fsc-") as tmp_s:
        tmp = Path(tmp_s)
        binary = compile_server(tmp)
        if binary is None:
            return 2
        reqs = write_true_jobs(n, tmp / "jobs.json")
        verify = batch_verifier(n)
        cpu: dict[str, list[float]] = {"C posix_spawn": [], "C fork+exec": []}

        def batch(name: str | None, fork: bool = False) -> Callable[[], Measurement]:
            env = ours_env()
            times = tmp / f"server-times-{fork}"  # the C server appends a line at its exit
            if name is not None:
                env["QCGPJ_FSC_TIMES"] = str(times)
            if fork:
                env["QCGPJ_FSC_FORK"] = "1"

            def cmd(wd: Path) -> list[str]:
                if name is None:
                    return ours_batch_cmd(reqs, nodes, wd)
                return [
                    sys.executable,
                    "-c",
                    _WRAPPER,
                    str(binary),
                    "--file-path",
                    str(reqs),
                    "--nodes",
                    str(nodes),
                    "--wd",
                    str(wd),
                ]

            def run() -> Measurement:
                m = run_in_fresh_wd(cmd, verify=verify, tag="fsc", env=env)
                if name is not None and m.ok:
                    per_job = server_cpu_per_job(times, n)
                    if per_job is not None:
                        cpu[name].append(per_job)
                return m

            return run

        results = alternate(
            {
                f"xargs -P {nodes}": lambda: run_cmd(xargs_cmd(n, nodes)),
                "Python server": batch(None),
                "C posix_spawn": batch("C posix_spawn"),
                "C fork+exec": batch("C fork+exec", fork=True),
            },
            args.runs,
        )

    summaries = {name: summarize(ms) for name, ms in results.items()}
    ref, py = summaries[f"xargs -P {nodes}"], summaries["Python server"]
    print(f"\n{n} /bin/true jobs, --nodes {nodes}, {args.runs} alternated rounds\n")
    print("| variant | median wall | vs xargs | vs Python server | server CPU per job |")
    print("|---|---|---|---|---|")
    out: dict[str, object] = {"jobs": n, "nodes": nodes, "runs": args.runs}
    for name, s in summaries.items():
        per = cpu.get(name)
        cpu_text = f"{sorted(per)[len(per) // 2]:.0f} µs" if per else "-"
        print(
            f"| {name} | {s.median_s:.3f} s | {ref.median_s / s.median_s:.2f}x | "
            f"{py.median_s / s.median_s:.2f}x | {cpu_text} |"
        )
        out[name] = {"median_s": round(s.median_s, 4), "failed": s.failed, "errors": s.errors[:3]}
    print(json.dumps(out))
    return 1 if any(s.failed for s in summaries.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
