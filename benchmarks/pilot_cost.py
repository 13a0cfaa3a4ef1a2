"""What the manager's CPU per job costs when the jobs and the manager share the cores.

Usage: ``python benchmarks/pilot_cost.py [--runs 5] [-n 5000] [--cores 2] [--cost 0,50,100,200]
[--asyncio] [--queued]``

Batch mode at ``--nodes 2`` on a 2-core machine runs two ``/bin/true`` at a
time on the same two cores as the manager. This script separates what the
start mechanism costs from what the manager's own work per job costs, in
alternating rounds (A B C ... A B C ...):

- ``xargs -P <cores>``: the machine's limit, the reference;
- ``server + C µs``: our fork server (``qcgpj_async/executors/_forkserver.py``,
  as the pilot starts it) driven by a stand-in manager that, for each job that
  ends, asks for the next start and then burns C µs of CPU (the engine, the
  report, journal and log lines, the next task's environment, in the real
  pilot). With ``--asyncio`` the stand-in reads the server's events in an
  asyncio reader callback, as the pilot does, instead of blocking reads;
- with ``--queued``, also ``queued + C µs``: the same stand-in and the same C,
  but it keeps 64 starts queued in the server, as the pilot does
  (``Engine.lookahead``): the server starts the next job the moment one ends
  and sends its events in batches, so the stand-in burns its C µs per job
  off the path from one job to the next, and wakes once per batch;
- ``batch mode``: ``python -m qcgpj_async --file-path F --nodes <cores>``, with
  its own CPU per job (its process only, not the server's nor the jobs').

Prints a markdown table (median wall time, jobs/s, speed relative to xargs,
manager CPU per job: for the stand-in, the µs it burns and what its process
measured in all, loop and messages included) and one JSON line. The slope of the ``server + C``
rows says what each microsecond of manager CPU per job costs in throughput,
and where the real pilot sits on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Measurement, run_cmd  # benchmarks/ is this script's folder
from _peers import ours_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER = REPO / "qcgpj_async" / "executors" / "_forkserver.py"


LOOKAHEAD = 64


def drive(
    n: int, cores: int, cost_us: float, wd: str, use_asyncio: bool = False, queued: bool = False
) -> None:
    """The stand-in manager (runs in a process of its own): n starts, ``cores`` at a time
    (and with ``queued``, up to ``LOOKAHEAD`` more queued in the server).

    Prints its own CPU (user + system) per job, in µs."""
    sys.path.insert(0, str(SERVER.parent))
    from _forkserver import Reader, pack  # type: ignore[import-not-found]

    req_r, req_w = os.pipe()
    ev_r, ev_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(SERVER), str(req_r), str(ev_w)],
        pass_fds=(req_r, ev_w),
        stdin=subprocess.DEVNULL,
    )
    os.close(req_r)
    os.close(ev_w)
    os.write(req_w, pack(("env", dict(os.environ))))
    cost = cost_us * 1e-6
    clock = time.perf_counter
    rid = 0

    ahead: dict[int, None] = {}  # queued in the server, oldest first
    out = bytearray()

    def start(ahead_of_cores: bool = False) -> None:
        nonlocal rid
        rid += 1
        out.extend(
            pack(
                (
                    "start",
                    rid,
                    f"j{rid}",
                    ["/bin/true"],
                    {"QCG_PM_STEP_ID": str(rid)},
                    [],
                    wd,
                    None,
                    None,
                    None,
                    ahead_of_cores,
                    1,
                )
            )
        )
        if ahead_of_cores:
            ahead[rid] = None

    def send() -> None:
        data = bytes(out)
        out.clear()
        while data:
            data = data[os.write(req_w, data) :]

    reader = Reader(ev_r)
    done = failed = 0

    def handle() -> None:
        nonlocal done, failed
        msgs = reader.read()
        if msgs is None:
            raise SystemExit("the fork server ended")
        for msg in msgs:
            if msg[0] == "failed":
                raise SystemExit(f"a start failed: {msg[2]}")
            if msg[0] == "exited":
                done += 1
                failed += msg[2] != 0
                if not queued:
                    if rid < n:
                        start()
                else:
                    for succ in msg[3] or ():  # they took its core
                        ahead.pop(succ, None)
                    if not msg[3]:  # a free core: the oldest queued start takes it now
                        if ahead:
                            oldest = next(iter(ahead))
                            del ahead[oldest]
                            out.extend(pack(("now", oldest)))
                        elif rid < n:
                            start()
                    while len(ahead) < LOOKAHEAD and rid < n:
                        start(ahead_of_cores=True)
                t = clock()
                while clock() - t < cost:  # the manager's work for the job that ended
                    pass
        send()  # the requests of one read in one write, as the pilot

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(min(cores, n)):
        start()
    while queued and len(ahead) < LOOKAHEAD and rid < n:
        start(ahead_of_cores=True)
    send()
    if use_asyncio:

        async def loop() -> None:
            ev = asyncio.get_running_loop()
            finished = ev.create_future()

            def readable() -> None:
                handle()
                if done >= n and not finished.done():
                    finished.set_result(None)

            ev.add_reader(ev_r, readable)
            await finished
            ev.remove_reader(ev_r)

        asyncio.run(loop())
    else:
        while done < n:
            handle()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    os.close(req_w)
    proc.wait()
    if failed:
        raise SystemExit(f"{failed} jobs failed")
    used = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"stand_in_cpu_us": used / n * 1e6}))


def timed(argv: list[str], env: dict[str, str] | None = None) -> Measurement:
    """One run through the harness's ``run_cmd`` (``env``: added variables); a failure
    ends the script."""
    m = run_cmd(argv, env=env)
    if not m.ok:
        raise SystemExit(f"{' '.join(argv[:3])} ...: {m.error}\n{m.stderr_tail}")
    return m


_RUSAGE = """import resource, sys
from qcgpj_async.cli import main
# main(), not the console script's run(): that leaves with os._exit, past any atexit hook
rc = main(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_SELF)
with open(sys.argv[1], "w") as f:
    f.write(str(r.ru_utime + r.ru_stime))
sys.exit(rc)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--cost", default="0,50,100,200", help="µs of manager CPU per job")
    ap.add_argument(
        "--asyncio",
        action="store_true",
        help="the stand-in reads events in an asyncio reader callback, as the pilot",
    )
    ap.add_argument(
        "--queued",
        action="store_true",
        help="also rows with the starts queued in the server, as the pilot does",
    )
    ap.add_argument("--drive", nargs=3, help=argparse.SUPPRESS)  # n cost_us wd
    args = ap.parse_args()
    if args.drive:
        drive(
            int(args.drive[0]),
            args.cores,
            float(args.drive[1]),
            args.drive[2],
            args.asyncio,
            args.queued,
        )
        return
    n, cores = args.n, args.cores
    costs = [float(c) for c in args.cost.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="pilot-cost-"))
    reqs = tmp / "reqs.json"
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
    wrapper = tmp / "rusage.py"
    wrapper.write_text(_RUSAGE)
    env = ours_env()
    variants = [("server", [])] + ([("queued", ["--queued"])] if args.queued else [])
    names = ["xargs", *(f"{v} + {c:g} µs" for v, _ in variants for c in costs), "batch mode"]
    walls: dict[str, list[float]] = {k: [] for k in names}
    cpu: list[float] = []
    stand_in_cpu: dict[str, list[float]] = {k: [] for k in names if " µs" in k}
    mode = ["--asyncio"] if args.asyncio else []
    for r in range(args.runs):
        walls["xargs"].append(
            timed(["sh", "-c", f"seq {n} | xargs -P {cores} -n 1 /bin/true"]).wall_s
        )
        for variant, flags in variants:
            for c in costs:
                key = f"{variant} + {c:g} µs"
                m = timed(
                    [
                        sys.executable,
                        __file__,
                        "--cores",
                        str(cores),
                        *mode,
                        *flags,
                        "--drive",
                        str(n),
                        str(c),
                        str(tmp),
                    ]
                )
                walls[key].append(m.wall_s)
                stand_in_cpu[key].append(m.figures["stand_in_cpu_us"])
        wd = tmp / f"batch{r}"
        out = tmp / f"cpu{r}"
        walls["batch mode"].append(
            timed(
                [
                    sys.executable,
                    str(wrapper),
                    str(out),
                    "--file-path",
                    str(reqs),
                    "--nodes",
                    str(cores),
                    "--wd",
                    str(wd),
                ],
                env,
            ).wall_s
        )
        cpu.append(float(out.read_text()))
        print(
            f"round {r + 1}/{args.runs}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()),
            file=sys.stderr,
        )
    ref = statistics.median(walls["xargs"])
    print(
        f"\n{n:,} x /bin/true, {cores} at a time, {args.runs} alternating rounds, "
        f"stand-in {'in an asyncio loop' if args.asyncio else 'with blocking reads'} "
        f"(machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})\n"
    )
    print("| variant | wall median | jobs/s | speed vs xargs | manager CPU per job |")
    print("|---|---|---|---|---|")
    rows = {}
    for k, v in walls.items():
        med = statistics.median(v)
        rows[k] = {"wall_s": med, "vs_xargs": ref / med}
        if k == "batch mode":
            per_job = f"{statistics.median(cpu) / n * 1e6:.0f} µs (whole process)"
        elif k == "xargs":
            per_job = "-"
        else:
            measured = statistics.median(stand_in_cpu[k])
            rows[k]["cpu_per_job_us"] = measured
            per_job = f"{k.split('+ ')[1]} burned, {measured:.0f} µs in all"
        print(f"| {k} | {med:.2f} s | {n / med:,.0f} | {ref / med:.2f}x | {per_job} |")
    rows["batch mode"]["cpu_per_job_us"] = statistics.median(cpu) / n * 1e6
    print("\n" + json.dumps({"n": n, "cores": cores, "asyncio": args.asyncio, "rows": rows}))


if __name__ == "__main__":
    main()
