"""Report: ``qcgpj-async report`` on a 100,000-job run: text, HTML, file size, PNG.

Usage: ``python benchmarks/report_bench.py [--jobs 100000] [--nodes 64] [--runs 3]``

Makes the run once with the API and the null executor (every job ends at
once, no process: a real journal, jobs.report and final_status.json of N
jobs in seconds), then times ``python -m qcgpj_async report DIR`` (the text
report), ``... --html FILE`` and, with matplotlib, ``... --png FILE``, each
as a whole process (start-up included), ``--runs`` times, alternating, and
prints the median and the HTML file's size; then one JSON line.

Targets (issue 25): text <= 3 s, HTML <= 10 s, HTML file <= 10 MB. With
chromium on the PATH it also times a headless Chromium opening the HTML
file until its script has drawn every chart (browser start included).

Peer (``--peer-venv DIR``: a venv with the original's ``qcg-pilotjob-cmds``,
which brings ``qcg-pm-service`` and ``qcg-pm-report``): a 2,000-job run of
the original (``/bin/true`` on 4 cores), then ``qcg-pm-report gantt WDIR
out.png`` against ``qcgpj-async report WDIR --png out.png`` and ``--html``
on that same directory (we read the original's jobs.report), alternating.
Without it the bench says so and measures ours alone. This is a
benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / ".work" / "report_bench"

MAKE_RUN = r"""
import sys, anyio
from qcgpj_async import Jobs, NullExecutor, Pilot
n, nodes, wd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
async def main():
    async with Pilot(nodes=nodes, wd=wd, executor=NullExecutor(), log_level="warning") as p:
        for start in range(0, n, 10_000):
            jobs = Jobs()
            for i in range(start, min(n, start + 10_000)):
                jobs.add(name=f"j{i}", exec="/bin/true")
            await p.submit(jobs)
        await p.wait4all()
anyio.run(main)
"""


CPU: dict[str, list[float]] = {}


def timed(cmd: list[str], key: str = "") -> float:
    """Wall seconds of ``cmd``; its CPU seconds (user + sys: what a loaded, shared
    machine disturbs least) are kept in CPU[key]."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    CPU.setdefault(key, []).append(cpu)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--nodes", default="64")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peer-venv", help="a venv with qcg-pilotjob-cmds (qcg-pm-report)")
    ap.add_argument("--peer-jobs", type=int, default=2000)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", MAKE_RUN, str(args.jobs), args.nodes, str(WORK / "wd")],
        check=True,
        env=env,
    )
    made = time.perf_counter() - t
    out: dict[str, object] = {"load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
    (sdir,) = (WORK / "wd").glob(".qcgpjm-service-*")
    report_mb = (sdir / "jobs.report").stat().st_size / 1e6
    print(
        f"run of {args.jobs} jobs (null executor) made in {made:.1f} s; jobs.report {report_mb:.1f} MB"
    )
    base = [sys.executable, "-m", "qcgpj_async", "report", str(sdir)]
    html = WORK / "report.html"
    png = WORK / "report.png"
    try:
        import matplotlib  # noqa: F401

        have_mpl = True
    except ImportError:
        have_mpl = False
    kinds = {"text": base, "html": [*base, "--html", str(html)]}
    if have_mpl:
        kinds["png"] = [*base, "--png", str(png)]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.runs):  # alternating: the machine's noise hits each alike
        for k, cmd in kinds.items():
            times[k].append(timed(cmd, k))
    out.update(jobs=args.jobs, nodes=args.nodes, make_run_s=round(made, 2))
    for k, v in times.items():
        med = statistics.median(v)
        out[f"{k}_s"] = round(med, 3)
        out[f"{k}_min_s"] = round(min(v), 3)  # the least disturbed run, on a shared machine
        out[f"{k}_cpu_s"] = round(statistics.median(CPU[k]), 3)
        print(
            f"report {k:5}: median {med:.2f} s, min {min(v):.2f} s (runs: {', '.join(f'{x:.2f}' for x in v)})"
        )
    out["html_mb"] = round(html.stat().st_size / 1e6, 2)
    print(f"HTML file: {out['html_mb']} MB")
    chromium = shutil.which("chromium")
    if chromium:  # the page opened and drawn: headless Chromium until its script has run
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.as_uri()]
        t = time.perf_counter()
        dom = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        out["browser_render_s"] = round(time.perf_counter() - t, 2)
        ok = 'data-drawn="gantt busy queue hist"' in dom
        print(
            f"HTML in headless Chromium (start, load, draw): {out['browser_render_s']} s, drawn: {ok}"
        )
    if args.peer_venv:
        out.update(peer(Path(args.peer_venv), args.peer_jobs, args.runs))
    else:
        print("peer: qcg-pm-report gantt not measured (give --peer-venv)")
    out["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(out))


def peer(venv: Path, n: int, runs: int) -> dict[str, object]:
    """The original's ``qcg-pm-report gantt`` and ours on one run of the original."""
    wd = WORK / "orig"
    wd.mkdir()
    jobs = [{"name": f"j{i}", "execution": {"exec": "/bin/true"}} for i in range(n)]
    reqs = [
        {"request": "submit", "jobs": jobs},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    (WORK / "orig.json").write_text(json.dumps(reqs))
    subprocess.run(
        [
            str(venv / "bin" / "qcg-pm-service"),
            "--file-path",
            str(WORK / "orig.json"),
            "--wd",
            str(wd),
            "--nodes",
            "4",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    theirs = [str(venv / "bin" / "qcg-pm-report"), "gantt", str(wd), str(WORK / "orig-gantt.png")]
    ours = [sys.executable, "-m", "qcgpj_async", "report", str(wd)]
    kinds = {
        "original_gantt_png": theirs,
        "ours_png": [*ours, "--png", str(WORK / "orig-ours.png")],
        "ours_html": [*ours, "--html", str(WORK / "orig-ours.html")],
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(runs):
        for k, cmd in kinds.items():
            times[k].append(timed(cmd, "peer " + k))
    out: dict[str, object] = {"peer_jobs": n}
    for k, v in times.items():
        out[f"{k}_s"] = round(statistics.median(v), 3)
        print(f"{n}-job run of the original, {k:18}: median {statistics.median(v):.2f} s")
    ratio = statistics.median(times["original_gantt_png"]) / statistics.median(times["ours_png"])
    out["gantt_png_ratio"] = round(ratio, 1)
    print(f"qcg-pm-report gantt / ours --png: {ratio:.1f}x")
    return out


if __name__ == "__main__":
    main()
