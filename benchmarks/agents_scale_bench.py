"""The pilot with many launch agents, simulated: what it costs per task at 16..1,024 nodes.

Usage: ``python benchmarks/agents_scale_bench.py [--nodes 16,128,1024] [--cores 128]
[--tasks-per-core 2] [--max-tasks 200000] [--profile PREFIX]``

No Slurm needed. One local process (``NULL_AGENTS`` below) opens one
connection per simulated node to the pilot's agent gate, proves the run's
secret as a real agent does, and then answers every start at once with
``started`` and ``exited`` (exit 0), spawning nothing: a null mode of the
agents. The pilot is the real one (``Pilot`` with an ``AgentExecutor``, one
``ForkServer`` per node over TCP, the heartbeat on). For each size it runs
one iteration job of ``tasks-per-core`` x cores one-core ``/bin/true``
iterations and reports:

- the pilot's CPU per task (``time.process_time()`` of this process, from
  the submit to the end of the last task, divided by the tasks);
- tasks/s (the same interval, wall clock);
- the agents' start-up (the gate open to the last node joined).

The null agents' own CPU is not the pilot's and is not counted; on a small
machine they compete with the pilot for the cores, which lowers tasks/s but
not the pilot's CPU per task.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The tree whose pilot runs (``QCGPJ_BENCH_REPO``: another checkout, for an A/B).
REPO = Path(os.environ.get("QCGPJ_BENCH_REPO") or HERE.parent).resolve()
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _harness import WORK_DIR, format_machine_info  # noqa: E402

NULL_AGENTS = r"""
import os, selectors, socket, sys, time
sys.path.insert(0, sys.argv[4])
from qcgpj_async.executors import _agent
from qcgpj_async.executors._forkserver import Reader, pack

host, port, nodes, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
secret = bytes.fromhex(os.environ.pop(_agent.SECRET_VAR))
sel = selectors.DefaultSelector()
for i in range(nodes):
    sock = _agent.connect(host, port, 60)
    info = {"node": f"n{i}", "host": "sim", "pid": os.getpid(), "cpus": list(range(cores))}
    _agent.handshake(sock, secret, info)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sel.register(sock, selectors.EVENT_READ, Reader(sock.fileno()))
left, pid = nodes, 1000
queues = {}  # each node's queued starts (rids), as a real agent keeps them
running = {}  # each node's runs started, which end at its next turn: (rid, slot)
while left:
    turn = {}  # what each node sends this turn
    for key, _ in sel.select(0 if any(running.values()) else None):
        msgs = key.data.read()
        if msgs is None:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            running.pop(key.fileobj, None)
            left -= 1
            continue
        out = turn.setdefault(key.fileobj, bytearray())
        queue = queues.setdefault(key.fileobj, [])
        runs = running.setdefault(key.fileobj, [])
        t = time.time()
        for m in msgs:
            if m[0] == "start" and len(m) > 10 and m[10]:
                queue.append(m[1])
            elif m[0] == "start":
                pid += 1
                out += pack(("started", m[1], pid, t))
                runs.append((m[1], m[11] if len(m) > 11 else 1))
            elif m[0] in ("now", "drop") and m[1] in queue:
                queue.remove(m[1])
                if m[0] == "now":
                    pid += 1
                    out += pack(("started", m[1], pid, t))
                    runs.append((m[1], 1))
                else:
                    out += pack(("failed", m[1], "stopped before it started", None))
            elif m[0] == "ping":
                out += pack(("pong", m[1]))
    t = time.time()
    for sock, runs in running.items():  # what ran since the last turn ends now
        if not runs:
            continue
        out = turn.setdefault(sock, bytearray())
        queue = queues[sock]
        ended, runs[:] = runs[:], []
        for rid, slot in ended:  # the queued runs start in its cores, at once
            taken, queue[:slot] = queue[:slot], []
            out += pack(("exited", rid, 0, taken or None, t))
            for r in taken:
                pid += 1
                out += pack(("started", r, pid, t))
                runs.append((r, 1))
    for sock, out in turn.items():
        if out:
            sock.sendall(out)
"""


def run_size(nodes: int, cores: int, tasks: int, profile: str | None = None) -> dict[str, float]:
    """One size: the pilot with ``nodes`` null agents of ``cores`` cores, ``tasks`` tasks
    (``profile``: a file for cProfile's statistics of the submit..end interval)."""
    import cProfile

    import anyio

    from qcgpj_async import Jobs, JobState, Pilot
    from qcgpj_async.executors.agents import AgentExecutor

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    wd = tempfile.mkdtemp(prefix="agents-scale-", dir=WORK_DIR)
    layout = {f"n{i}": cores for i in range(nodes)}

    def step_argv(n: int, host: str, port: int) -> list[str]:
        del host
        return [sys.executable, "-c", NULL_AGENTS, "127.0.0.1", str(port), str(n), str(REPO),
                str(cores)]  # fmt: skip

    out: dict[str, float] = {}

    async def main() -> None:
        ex = AgentExecutor(wd, nodes=layout, step_argv=step_argv, join_timeout=120, pin=False)
        async with Pilot(nodes=list(layout.items()), wd=wd, executor=ex,
                         report_format="none") as pilot:  # fmt: skip
            assert len(ex.agents.nodes) == nodes, ex.agents.lost
            prof = cProfile.Profile() if profile else None
            c0, t0 = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.enable()
            await pilot.submit(Jobs().add(name="t", exec="/bin/true", iteration=tasks))
            state = (await pilot.wait4("t"))["t"]
            if prof is not None:
                prof.disable()
            c1, t1 = time.process_time(), time.perf_counter()
            if prof is not None and profile:
                prof.dump_stats(profile)
            assert state is JobState.SUCCEED, state
        out.update(
            nodes=nodes,
            cores=nodes * cores,
            tasks=tasks,
            pilot_cpu_us_per_task=round((c1 - c0) / tasks * 1e6, 1),
            tasks_per_s=round(tasks / (t1 - t0)),
            agents_startup_s=round(ex.agents.startup or 0.0, 3),
        )

    anyio.run(main)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run each size once; print a table and one JSON line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--nodes", default="16,128,1024")
    p.add_argument("--cores", type=int, default=128)
    p.add_argument("--tasks-per-core", type=float, default=2.0)
    p.add_argument("--max-tasks", type=int, default=200_000)
    p.add_argument(
        "--profile",
        metavar="PREFIX",
        help="write cProfile statistics of each size to PREFIX-<nodes>.prof (slows the pilot)",
    )
    args = p.parse_args(argv)
    # Two descriptors per agent here, one in the null agents (inherit the limit).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = []
    for n in (int(x) for x in args.nodes.split(",")):
        tasks = min(args.max_tasks, int(n * args.cores * args.tasks_per_core))
        profile = f"{args.profile}-{n}.prof" if args.profile else None
        rows.append(run_size(n, args.cores, tasks, profile))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print("\n| nodes x cores | tasks | pilot CPU us/task | tasks/s | agents start-up s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['nodes']:.0f} x {args.cores} | {r['tasks']:.0f} |"
            f" {r['pilot_cpu_us_per_task']} | {r['tasks_per_s']:.0f} | {r['agents_startup_s']} |"
        )
    base = rows[0]["pilot_cpu_us_per_task"]
    print(f"\nCPU per task at the largest size / at the smallest: "
          f"{rows[-1]['pilot_cpu_us_per_task'] / base:.2f}\n")  # fmt: skip
    print(format_machine_info())
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
