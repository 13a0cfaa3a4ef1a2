"""Our ZMQ interface vs QCG-PilotJob 0.14.2's, driven by the same (original) client.

Usage: ``.venv/bin/python benchmarks/zmq_bench.py [--rounds 3] [--requests 2000]
[--latency 30] [--quick]``

Each round starts each service in turn (order alternating between rounds),
``python -m qcgpj_async --net`` and ``python -m qcg.pilotjob.service --net``
(in the original's cached venv, see ``_peers.ensure_original_venv``), reads
its address from ``<service dir>/address``, and runs one client process (the
original ``Manager`` in the original's venv, so the client is identical) that
measures:

1. requests/s: ``jobStatus`` round trips of one job, back to back;
2. submit -> wait4 latency: one ``/bin/true`` job submitted and awaited with
   ``wait4`` (the original client: one status poll, then published events),
   repeated; median and 90th percentile.

Prints a markdown table with ratios (ours / original; > 1 is better for
requests/s, < 1 is better for latency), then one JSON line with every figure.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _peers import WORK_DIR, ensure_original_venv  # noqa: E402

CLIENT = r"""
import json, logging, statistics, sys, time
from qcg.pilotjob.api.manager import Manager
from qcg.pilotjob.api.job import Jobs

address, requests, latency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = Manager(address, {"log_file": sys.argv[4]})
logging.getLogger("qcg.pilotjob.api").setLevel(logging.WARNING)
m.submit(Jobs().add(name="probe", exec="/bin/true"))
m.wait4("probe")
for _ in range(50):  # warm up
    m.status("probe")
t = time.perf_counter()
for _ in range(requests):
    m.status("probe")
rps = requests / (time.perf_counter() - t)
lat = []
for i in range(latency):
    t = time.perf_counter()
    names = m.submit(Jobs().add(name=f"l{i}", exec="/bin/true"))
    res = m.wait4(names)
    lat.append(time.perf_counter() - t)
    assert res == {f"l{i}": "SUCCEED"}, res
lat.sort()
print(json.dumps({"rps": rps, "lat_med_ms": 1000 * statistics.median(lat),
                  "lat_p90_ms": 1000 * lat[int(0.9 * (len(lat) - 1))]}))
m.finish()
"""


def start(
    cmd: list[str], wd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a service in ``wd``; wait for its address file."""
    proc = subprocess.Popen(
        cmd, cwd=wd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    path = wd / ".qcgpjm-service-bench" / "address"
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{cmd[:3]} did not start (exit {proc.poll()})")
        time.sleep(0.05)
    return proc, path.read_text().strip()


def measure(
    name: str,
    cmd: list[str],
    client_python: Path,
    requests: int,
    latency: int,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """One round of one service: start it, run the client, stop it."""
    base = WORK_DIR / "runs"
    base.mkdir(parents=True, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix=f"zmq-{name}-", dir=base))
    proc, address = start([*cmd, "--wd", str(wd)], wd, env)
    try:
        res = subprocess.run(
            [
                str(client_python),
                "-c",
                CLIENT,
                address,
                str(requests),
                str(latency),
                str(wd / "api.log"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"client against {name} failed:\n{res.stderr[-2000:]}")
        figures: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shutil.rmtree(wd, ignore_errors=True)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--latency", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="1 round, 300 requests, 10 latencies")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.requests, args.latency = 1, 300, 10
    venv = ensure_original_venv()
    orig_python = venv / "bin" / "python"
    common = ["--net", "--nodes", "4", "--id", "bench"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    services = {
        "ours": ([sys.executable, "-m", "qcgpj_async", *common, "--log", "warning"], env),
        "original": ([str(orig_python), "-m", "qcg.pilotjob.service", *common], None),
    }
    results: dict[str, list[dict[str, float]]] = {n: [] for n in services}
    for r in range(args.rounds):
        order = list(services) if r % 2 == 0 else list(reversed(services))
        for name in order:
            cmd, e = services[name]
            fig = measure(name, cmd, orig_python, args.requests, args.latency, e)
            results[name].append(fig)
            print(
                f"  [{r + 1}/{args.rounds}] {name}: {fig['rps']:.0f} req/s, submit->wait4 "
                f"{fig['lat_med_ms']:.1f} ms (p90 {fig['lat_p90_ms']:.1f})",
                file=sys.stderr,
                flush=True,
            )
    med = {n: {k: statistics.median(f[k] for f in fs) for k in fs[0]} for n, fs in results.items()}
    o, q = med["original"], med["ours"]
    print(
        f"\nZMQ interface, same client (qcg-pilotjob 0.14.2 Manager), {args.rounds} "
        f"round(s), medians; {sys.platform}, {os.cpu_count()} CPUs\n"
    )
    print("| figure | ours | original | ratio ours/original |")
    print("|---|---|---|---|")
    print(
        f"| jobStatus round trips (req/s, higher is better) | {q['rps']:.0f} | {o['rps']:.0f} "
        f"| {q['rps'] / o['rps']:.2f} |"
    )
    for key, label in (("lat_med_ms", "median"), ("lat_p90_ms", "p90")):
        print(
            f"| submit->wait4 latency {label} (ms, lower is better) | {q[key]:.1f} | "
            f"{o[key]:.1f} | {q[key] / o[key]:.2f} |"
        )
    print()
    print(
        json.dumps(
            {
                "ours": q,
                "original": o,
                "ratios": {
                    "rps": q["rps"] / o["rps"],
                    "lat_med": q["lat_med_ms"] / o["lat_med_ms"],
                    "lat_p90": q["lat_p90_ms"] / o["lat_p90_ms"],
                },
                "rounds": args.rounds,
                "requests": args.requests,
                "latency_samples": args.latency,
            }
        )
    )


if __name__ == "__main__":
    main()
