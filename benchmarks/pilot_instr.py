"""The batch-mode pilot's own instructions per job, counted by valgrind: a repeatable figure.

Usage: ``python benchmarks/pilot_instr.py [--small 500] [--large 1500] [--nodes 2]
[--variant "ARGS"]...``

Wall time on a shared 2-core machine varies by 10-30% from run to run, so a
change of 5% in the pilot's work per job is invisible in it. This script
runs batch mode (``python -m qcgpj_async --file-path F --nodes 2``) under
``valgrind --tool=callgrind`` with ``--small`` and ``--large`` ``/bin/true``
jobs and prints ``(large - small) / (large - small jobs)``: the instructions
the pilot's process executes per job, start-up excluded. The same code gives
the same figure within about 1%. Compare rows and commits with it, not
microseconds: valgrind slows the pilot ~50x while the jobs run at full speed,
so what the pilot does per unit of time (the report flush every 20 ms, the
journal's sync every second) and how many events one read brings differ
from a real run.

Only the pilot is counted: valgrind does not follow the fork server nor the
jobs (they are other programs). valgrind 3.19 (Debian 12) lacks the
``pidfd_open`` system call, which the pilot only calls to check that the fork
server can run; the bootstrap below answers yes for it (the server, not under
valgrind, has it). Each ``--variant`` adds a row with those batch-mode
arguments (``--variant "--report-format none"``). Needs ``valgrind``; about
90 s per row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _peers import ours_env  # benchmarks/ is this script's folder

_BOOT = """import runpy, sys
import qcgpj_async.executors.local as local
local._pidfds = lambda: True  # valgrind lacks pidfd_open; the fork server, not traced, has it
sys.argv = ["qcgpj_async", *sys.argv[1:]]
runpy.run_module("qcgpj_async", run_name="__main__", alter_sys=True)
"""

_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def collected(stderr: str) -> int:
    """The instruction count valgrind's callgrind prints at the end of a run.

    Raises:
        ValueError: no count in ``stderr``.
    """
    found = _COLLECTED.findall(stderr)
    if not found:
        raise ValueError("no 'Collected :' line in valgrind's output")
    return int(found[-1])


def count(tmp: Path, n: int, nodes: int, extra: list[str]) -> int:
    """Instructions of one batch-mode run of ``n`` jobs (the pilot's process only)."""
    reqs = tmp / f"reqs{n}.json"
    if not reqs.exists():
        reqs.write_text(
            json.dumps(
                [
                    {
                        "request": "submit",
                        "jobs": [
                            {"name": f"j{i}", "execution": {"exec": "/bin/true"}} for i in range(n)
                        ],
                    }
                ]
            )
        )
    wd = Path(tempfile.mkdtemp(dir=tmp, prefix=f"wd{n}-"))
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/callgrind.out.%p",
            sys.executable,
            str(tmp / "boot.py"),
            "--file-path",
            str(reqs),
            "--nodes",
            str(nodes),
            "--wd",
            str(wd),
            *extra,
        ],
        env={**os.environ, **ours_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-5:])
        raise SystemExit(f"batch mode of {n} jobs exited {proc.returncode}:\n{tail}")
    shutil.rmtree(wd, ignore_errors=True)
    return collected(proc.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--large", type=int, default=1500)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="batch-mode arguments of one more row (quoted)",
    )
    args = ap.parse_args()
    if args.large <= args.small:
        ap.error("--large must be above --small")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    rows = {"batch mode": [], **{f"batch mode {v}": shlex.split(v) for v in args.variant}}
    result = {}
    with tempfile.TemporaryDirectory(prefix="pilot-instr-") as d:
        tmp = Path(d)
        (tmp / "boot.py").write_text(_BOOT)
        for name, extra in rows.items():
            small = count(tmp, args.small, args.nodes, extra)
            large = count(tmp, args.large, args.nodes, extra)
            result[name] = (large - small) / (args.large - args.small)
            print(
                f"{name}: {result[name] / 1000:.0f}k instructions per job "
                f"({args.small} jobs: {small / 1e6:.0f}M, {args.large}: {large / 1e6:.0f}M)",
                flush=True,
            )
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "small": args.small,
                "large": args.large,
                "instructions_per_job": {k: round(v) for k, v in result.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
