"""The benchmark suite: qcgpj_async side by side with QCG-PilotJob 0.14.2 and the machine's limit.

Usage: ``python benchmarks/run.py [--quick] [--runs R] [--only KEY[,KEY]] [--commit REV]``

Run it with the interpreter that has our dependencies (``.venv/bin/python``):
our CLI and API scripts run with that same interpreter, the checkout first on
``PYTHONPATH``, so an uninstalled checkout is measured as it is. The peers set
themselves up: the original in its own cached venv (created on first use,
reused after), ``xargs`` and ``make`` from the system.

Every workload runs its tools interleaved (A B C A B C ...), ``R`` rounds; each
run is verified (every job SUCCEED), so a fast failure never looks fast. The
table gives the median (min-max) and, per pair of runs of the same round, the
speed ratio to the original and to the machine's limit (xargs, or make for
the DAG). ``--quick`` (under 2 minutes) uses N <= 1,000; the full run (under
15 minutes) writes ``benchmarks/RESULTS.md``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _harness import (
    WORK_DIR,
    Measurement,
    alternate,
    format_machine_info,
    machine_info,
    run_cmd,
    run_in_fresh_wd,
)
from _peers import (
    batch_verifier,
    checkout_version,
    ensure_original_venv,
    make_cmd,
    original_api_cmd,
    original_batch_cmd,
    original_latency_cmd,
    ours_api_cmd,
    ours_batch_cmd,
    ours_env,
    ours_latency_cmd,
    ours_null_cmd,
    snapshot_ours,
    write_dag,
    write_dag_makefile,
    write_iteration_job,
    write_script_jobs,
    write_sleep_jobs,
    write_true_jobs,
    xargs_cmd,
)

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
ORIG, OURS = "original 0.14.2", "qcgpj_async"

# == configuration ==============================================================


@dataclass(frozen=True)
class Config:
    """Sizes and rounds of one suite run."""

    quick: bool
    runs: int  # rounds of most workloads
    runs_light: int  # rounds of the cheap ones (1 job, latency)
    runs_big: int  # rounds of the N = big workloads and the API throughput (the targets)
    big: int  # the "5,000 jobs" size
    small: int
    script_n: int
    dag_n: int
    sleep_n: int
    latency_samples: int
    api_n: int
    null_sizes: tuple[int, ...]
    null_runs: dict[int, int]


FULL = Config(
    quick=False,
    runs=3,
    runs_light=5,
    runs_big=4,
    big=5000,
    small=1000,
    script_n=50,
    dag_n=1000,
    sleep_n=2000,
    latency_samples=200,
    api_n=5000,
    null_sizes=(1_000, 10_000, 100_000, 1_000_000),
    null_runs={1_000: 3, 10_000: 3, 100_000: 3, 1_000_000: 1},
)
QUICK = Config(
    quick=True,
    runs=2,
    runs_light=2,
    runs_big=2,
    big=1000,
    small=1000,
    script_n=10,
    dag_n=1000,
    sleep_n=640,
    latency_samples=100,
    api_n=1000,
    null_sizes=(1_000, 10_000, 100_000),
    null_runs={1_000: 2, 10_000: 2, 100_000: 1},
)


# == measuring ==================================================================


def _verify_figures(m: Measurement, jobs: int, keys: Sequence[str]) -> Measurement:
    """API runs: the script exits non-zero unless every job SUCCEED; check its figures too."""
    if m.ok:
        missing = [k for k in keys if k not in m.figures]
        if missing or m.figures.get("jobs") != jobs:
            m.error = f"bad figures (missing {missing}, jobs {m.figures.get('jobs')}): {m.stdout[-300:]!r}"
    return m


def _derive(m: Measurement) -> Measurement:
    """Figures computed from others: ``open_close_s`` of the original (LocalManager start+finish)."""
    f = m.figures
    if "open_close_s" not in f and "start_s" in f and "finish_s" in f:
        f["open_close_s"] = f["start_s"] + f["finish_s"]
    return m


def _cli(
    tool: str, file: Path, nodes: str, jobs: int, iterations: int | None, venv: Path, root: Path
) -> Callable[[], Measurement]:
    verify = batch_verifier(jobs, iterations)
    if tool == ORIG:
        return lambda: run_in_fresh_wd(
            lambda wd: original_batch_cmd(file, nodes, wd, venv), verify=verify, tag="orig"
        )
    env = ours_env(root)
    return lambda: run_in_fresh_wd(
        lambda wd: ours_batch_cmd(file, nodes, wd), verify=verify, tag="ours", env=env
    )


def _plain(cmd: list[str]) -> Callable[[], Measurement]:
    """A peer command with nothing to verify but its exit code (xargs: 123 if any failed)."""
    return lambda: run_cmd(cmd)


def _api(
    make: Callable[[Path], list[str]],
    jobs: int,
    keys: Sequence[str],
    env: dict[str, str] | None,
    tag: str,
    timeout: float = 600.0,
) -> Callable[[], Measurement]:
    def run() -> Measurement:
        m = run_in_fresh_wd(make, tag=tag, env=env, timeout=timeout)
        return _derive(_verify_figures(m, jobs, keys))

    return run


# == workloads ==================================================================


@dataclass
class Group:
    """Tools measured interleaved on one workload (``optional``: skipped when short of time)."""

    key: str
    runs: int
    variants: dict[str, Callable[[], Measurement]]
    optional: bool = False


def run_group(
    g: Group, min_runs: int, t0: float, soft_limit: float
) -> dict[str, list[Measurement]]:
    """``alternate`` the variants; rounds beyond ``min_runs`` only while ``soft_limit`` s
    since ``t0`` are not spent."""
    results: dict[str, list[Measurement]] = {name: [] for name in g.variants}
    for i in range(g.runs):
        if i >= min_runs and time.perf_counter() - t0 > soft_limit:
            print(f"  time budget: {i} rounds", file=sys.stderr, flush=True)
            break
        for name, ms in alternate(g.variants, 1, progress=False, first_round=i).items():
            m = ms[0]
            results[name].append(m)
            rss = f"{m.peak_rss_mb:.1f} MB" if m.peak_rss_mb is not None else "? MB"
            status = "ok" if m.ok else f"FAILED: {m.error}"
            print(
                f"  [{i + 1}/{g.runs}] {name}: {m.wall_s:.3f} s, {rss}, {status}",
                file=sys.stderr,
                flush=True,
            )
    return results


@dataclass
class View:
    """A section of the table: rows from one group, each with its metric.

    ``rows`` are ``(row label, variant, figure key or None for wall time)``;
    ``refs`` maps ``"original"``/``"limit"`` to the row label of the reference.
    """

    key: str
    group: str
    workload: str
    jobs: int | None
    rows: list[tuple[str, str, str | None]]
    refs: dict[str, str] = field(default_factory=dict)
    note: Callable[[str, float], str] | None = None


def build(cfg: Config, venv: Path, root: Path) -> tuple[list[Group], list[View]]:
    """Every workload of the suite as groups (what runs) and views (what is tabled)."""
    groups: list[Group] = []
    views: list[View] = []

    def batch(
        key: str,
        title: str,
        file: Path,
        nodes: str,
        n: int,
        jobs: int,
        iterations: int | None,
        limit: tuple[str, list[str]] | None,
        runs: int,
        note: Callable[[str, float], str] | None = None,
    ) -> None:
        variants = {
            ORIG: _cli(ORIG, file, nodes, jobs, iterations, venv, root),
            OURS: _cli(OURS, file, nodes, jobs, iterations, venv, root),
        }
        rows = [(ORIG, ORIG, None), (OURS, OURS, None)]
        refs = {"original": ORIG}
        if limit is not None:
            variants[limit[0]] = _plain(limit[1])
            rows.append((limit[0], limit[0], None))
            refs["limit"] = limit[0]
        groups.append(Group(key, runs, variants))
        views.append(View(key, key, title, n, rows, refs, note))

    # -- batch mode: whole-process wall time ------------------------------------
    batch(
        "one-n2",
        "batch: 1 x /bin/true, --nodes 2",
        write_true_jobs(1),
        "2",
        1,
        1,
        None,
        ("xargs -P 2", xargs_cmd(1, 2)),
        cfg.runs_light,
    )
    sizes = sorted({cfg.small, cfg.big})
    for n in sizes:
        rounds = cfg.runs_big if n == cfg.big else cfg.runs
        for nodes in ("2", "64"):
            batch(
                f"sep-{n}-n{nodes}",
                f"batch: {n:,} separate /bin/true, --nodes {nodes}",
                write_true_jobs(n),
                nodes,
                n,
                n,
                None,
                (f"xargs -P {nodes}", xargs_cmd(n, int(nodes))),
                rounds,
            )
            batch(
                f"iter-{n}-n{nodes}",
                f"batch: one /bin/true job of {n:,} iterations, --nodes {nodes}",
                write_iteration_job(n),
                nodes,
                n,
                1,
                n,
                (f"xargs -P {nodes}", xargs_cmd(n, int(nodes))),
                rounds,
            )
    # One slot on this 2-vCPU machine: a core is left for the pilot. Beside --nodes 2
    # (every core a job slot) it shows what the manager's CPU costs there.
    n = cfg.big
    batch(
        f"sep-{n}-n1",
        f"batch: {n:,} separate /bin/true, --nodes 1",
        write_true_jobs(n),
        "1",
        n,
        n,
        None,
        ("xargs -P 1", xargs_cmd(n, 1)),
        cfg.runs_big,
    )
    n = cfg.script_n
    batch(
        f"script-{n}-n2",
        f'batch: {n} x script "true", --nodes 2',
        write_script_jobs(n),
        "2",
        n,
        n,
        None,
        ("xargs -P 2 bash -c true", xargs_cmd(n, 2, ["bash", "-c", "true"])),
        cfg.runs,
    )
    n = cfg.dag_n
    batch(
        f"dag-{n}-n64",
        f"batch: DAG of {n:,} /bin/true (10 chains of 10 + fan-in per block), --nodes 64",
        write_dag(n),
        "64",
        n,
        n,
        None,
        ("make -j 64", make_cmd(write_dag_makefile(n), 64)),
        cfg.runs,
    )
    n = cfg.sleep_n
    ideal = n * 0.1 / 64

    def utilization(_tool: str, value: float) -> str:
        return f"utilization {ideal / value:.0%} (ideal {ideal:.2f} s)"

    batch(
        f"sleep-{n}-n64",
        f"batch: {n:,} x sleep 0.1 on 64 virtual cores",
        write_sleep_jobs(n),
        "64",
        n,
        n,
        None,
        ("xargs -P 64 sleep 0.1", xargs_cmd(n, 64, ["/bin/sleep", "0.1"])),
        cfg.runs,
        utilization,
    )

    # -- API ---------------------------------------------------------------------
    env = ours_env(root)
    s = cfg.latency_samples
    lat_keys = ("latency_median_ms", "start_s", "finish_s")
    groups.append(
        Group(
            "api-latency",
            cfg.runs_light,
            {
                ORIG: _api(
                    lambda wd, s=s: original_latency_cmd(s, "2", wd, venv),
                    s,
                    lat_keys,
                    None,
                    "orig-lat",
                ),
                OURS: _api(
                    lambda wd, s=s: ours_latency_cmd(s, "2", wd),
                    s,
                    (*lat_keys, "open_close_s"),
                    env,
                    "ours-lat",
                ),
            },
        )
    )
    views.append(
        View(
            "latency",
            "api-latency",
            f"API: one /bin/true submit -> wait4, median of {s} (nodes=2)",
            None,
            [(ORIG, ORIG, "latency_median_ms"), (OURS, OURS, "latency_median_ms")],
            {"original": ORIG},
        )
    )
    views.append(
        View(
            "open-close",
            "api-latency",
            "API: empty pilot open+close (original: LocalManager start + finish; "
            "ours: median of 20 `async with Pilot()`)",
            None,
            [(ORIG, ORIG, "open_close_s"), (OURS, OURS, "open_close_s")],
            {"original": ORIG},
        )
    )
    n = cfg.api_n
    thr_keys = ("submit_wait4all_s", "start_s", "finish_s")
    groups.append(
        Group(
            "api-throughput",
            cfg.runs_big,
            {
                ORIG: _api(
                    lambda wd, n=n: original_api_cmd(n, "64", wd, venv),
                    n,
                    thr_keys,
                    None,
                    "orig-api",
                ),
                OURS: _api(lambda wd, n=n: ours_api_cmd(n, "64", wd), n, thr_keys, env, "ours-api"),
                "xargs -P 64": _plain(xargs_cmd(n, 64)),
            },
        )
    )
    views.append(
        View(
            "api-throughput",
            "api-throughput",
            f"API: {n:,} /bin/true, nodes=64, submit + wait4all",
            n,
            [
                (ORIG, ORIG, "submit_wait4all_s"),
                (OURS, OURS, "submit_wait4all_s"),
                ("xargs -P 64", "xargs -P 64", None),
            ],
            {"original": ORIG, "limit": "xargs -P 64"},
        )
    )
    views.append(
        View(
            "api-throughput-process",
            "api-throughput",
            f"API: {n:,} /bin/true, nodes=64, whole process (start, submit, wait4all, finish)",
            n,
            [(ORIG, ORIG, None), (OURS, OURS, None), ("xargs -P 64", "xargs -P 64", None)],
            {"original": ORIG, "limit": "xargs -P 64"},
        )
    )

    # -- engine only: NullExecutor through the Pilot ------------------------------
    for n in cfg.null_sizes:
        key = f"null-{n}"
        groups.append(
            Group(
                key,
                cfg.null_runs[n],
                {
                    OURS: _api(
                        lambda wd, n=n: ours_null_cmd(n, "64", wd),
                        n,
                        ("submit_wait4all_s", "us_per_job"),
                        env,
                        "ours-null",
                        timeout=900.0,
                    ),
                },
                optional=n > 100_000,
            )
        )

        def per_job(_tool: str, value: float, n: int = n) -> str:
            return f"{value / n * 1e6:.1f} us/job"

        views.append(
            View(
                key,
                key,
                f"engine: {n:,} jobs, NullExecutor through the Pilot (submit + wait4all), nodes=64",
                n,
                [(OURS, OURS, "submit_wait4all_s")],
                note=per_job,
            )
        )
    return groups, views


# == statistics =================================================================


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-200:] if lines else "(no stderr)"


def _value(m: Measurement, key: str | None) -> float | None:
    if not m.ok:
        return None
    if key is None:
        return m.wall_s
    v = m.figures.get(key)
    if v is None:
        return None
    return v / 1e3 if key.endswith("_ms") else v  # everything in seconds


@dataclass
class Stat:
    """median (min-max) of a series."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> Stat | None:
        """None for an empty series."""
        if not xs:
            return None
        return cls(statistics.median(xs), min(xs), max(xs), len(xs))


@dataclass
class RowResult:
    """One line of the table."""

    view: View
    label: str
    time: Stat | None
    failed: int
    runs: int
    errors: list[str]
    rss_mb: float | None
    cpu_s: float | None
    ratios: dict[str, Stat | None]
    note: str


def evaluate(
    views: list[View], results: dict[str, dict[str, list[Measurement]]]
) -> list[RowResult]:
    """Rows with medians and per-round (paired) speed ratios."""
    out = []
    for v in views:
        res = results.get(v.group)
        if res is None:
            continue
        series = {label: [_value(m, key) for m in res[var]] for label, var, key in v.rows}
        for label, var, _key in v.rows:
            ms = res[var]
            mine = series[label]
            ratios: dict[str, Stat | None] = {}
            for ref_name, ref_label in v.refs.items():
                pairs = [
                    r / x
                    for x, r in zip(mine, series[ref_label], strict=True)
                    if x is not None and r is not None and x > 0
                ]
                ratios[ref_name] = Stat.of(pairs)
            t = Stat.of([x for x in mine if x is not None])
            good = [m for m in ms if m.ok]
            rss = [m.peak_rss_mb for m in good if m.peak_rss_mb is not None]
            cpu = [m.cpu_s for m in good if m.cpu_s is not None]
            errors = [f"{m.error}: {_last_line(m.stderr_tail)}" for m in ms if m.error]
            note = v.note(label, t.median) if v.note and t else ""
            out.append(
                RowResult(
                    v,
                    label,
                    t,
                    len(errors),
                    len(ms),
                    errors,
                    max(rss) if rss else None,
                    statistics.median(cpu) if cpu else None,
                    ratios,
                    note,
                )
            )
    return out


# == report =====================================================================


def fmt_t(x: float) -> str:
    """Seconds, or milliseconds below 0.1 s."""
    if math.isnan(x):
        return "nan"
    return f"{x * 1e3:.2f} ms" if x < 0.1 else f"{x:.2f} s"


def fmt_stat_t(s: Stat | None) -> str:
    """``median (min-max)`` of times."""
    if s is None:
        return "FAILED"
    if s.n == 1:
        return fmt_t(s.median)
    if s.median < 0.1:
        return f"{s.median * 1e3:.2f} ms ({s.lo * 1e3:.2f}-{s.hi * 1e3:.2f})"
    return f"{s.median:.2f} s ({s.lo:.2f}-{s.hi:.2f})"


def fmt_ratio(s: Stat | None) -> str:
    """``median (min-max)`` of ratios (no decimals from 100 up)."""
    if s is None:
        return "-"
    f = ",.0f" if s.median >= 100 else ".2f"
    if s.n == 1:
        return f"{s.median:{f}}"
    return f"{s.median:{f}} ({s.lo:{f}}-{s.hi:{f}})"


def table(rows: list[RowResult]) -> str:
    """The markdown table of every row."""
    head = [
        "workload",
        "tool",
        "time median (min-max)",
        "jobs/s",
        "peak RSS MB",
        "CPU s",
        "speed vs original",
        "speed vs limit",
        "notes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    last = None
    for r in rows:
        v = r.view
        rate = "-"
        if v.jobs and v.jobs > 1 and r.time and r.time.median > 0:
            rate = f"{v.jobs / r.time.median:,.0f}"
        notes = [r.note] if r.note else []
        if r.failed:
            notes.append(f"{r.failed}/{r.runs} runs FAILED: {r.errors[0]}")
        cells = [
            v.workload if v.key != last else "",
            r.label,
            fmt_stat_t(r.time),
            rate,
            f"{r.rss_mb:.1f}" if r.rss_mb is not None else "-",
            f"{r.cpu_s:.2f}" if r.cpu_s is not None else "-",
            *(
                "ref" if v.refs.get(k) == r.label else fmt_ratio(r.ratios.get(k))
                for k in ("original", "limit")
            ),
            "; ".join(notes).replace("|", "/").replace("\n", " "),
        ]
        last = v.key
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Target:
    """One goal of the issue and how it came out."""

    goal: str
    measured: str
    met: bool | None  # None: not measured


def _find(rows: list[RowResult], view: str, label: str) -> RowResult | None:
    return next((r for r in rows if r.view.key == view and r.label == label), None)


def targets(rows: list[RowResult], cfg: Config) -> list[Target]:
    """The issue's targets, checked against this run's medians."""
    out: list[Target] = []

    def na(goal: str) -> None:
        out.append(Target(goal, "not measured", None))

    r = _find(rows, "one-n2", OURS)
    o = _find(rows, "one-n2", ORIG)
    if r and r.time and o and o.time and not r.failed:
        out.append(
            Target(
                "batch, one /bin/true job: whole-process wall <= 0.3 s",
                f"{r.time.median:.2f} s (original {o.time.median:.2f} s)",
                r.time.median <= 0.3,
            )
        )
    else:
        na("batch, one /bin/true job: whole-process wall <= 0.3 s")
    n = cfg.big
    for kind, what in (("sep", f"{n:,} separate jobs"), ("iter", f"one {n:,}-iteration job")):
        for nodes in ("2", "64"):
            r = _find(rows, f"{kind}-{n}-n{nodes}", OURS)
            goal = f"batch, {what}, --nodes {nodes}: >= 2x original, >= 0.9x xargs"
            if not r or r.failed or not r.ratios.get("original") or not r.ratios.get("limit"):
                na(goal)
                continue
            ro, rl = r.ratios["original"], r.ratios["limit"]
            assert ro is not None and rl is not None
            out.append(
                Target(
                    goal,
                    f"{ro.median:.2f}x original, {rl.median:.2f}x xargs",
                    ro.median >= 2 and rl.median >= 0.9,
                )
            )
    r = _find(rows, "api-throughput", OURS)
    goal = f"API, {cfg.api_n:,} /bin/true, nodes=64: >= 0.9x xargs -P 64, >= 2x original API"
    if r and not r.failed and r.ratios.get("original") and r.ratios.get("limit"):
        ro, rl = r.ratios["original"], r.ratios["limit"]
        assert ro is not None and rl is not None
        out.append(
            Target(
                goal,
                f"{rl.median:.2f}x xargs, {ro.median:.2f}x original",
                ro.median >= 2 and rl.median >= 0.9,
            )
        )
    else:
        na(goal)
    r, o = _find(rows, "latency", OURS), _find(rows, "latency", ORIG)
    goal = "API, one job submit -> wait4: median <= 1.5 ms"
    if r and r.time and not r.failed:
        orig = f" (original {o.time.median * 1e3:.2f} ms)" if o and o.time else ""
        out.append(Target(goal, f"{r.time.median * 1e3:.2f} ms{orig}", r.time.median <= 1.5e-3))
    else:
        na(goal)
    r, o = _find(rows, "open-close", OURS), _find(rows, "open-close", ORIG)
    goal = "API, empty Pilot open+close <= 50 ms"
    if r and r.time and not r.failed:
        orig = f" (original start+finish {o.time.median:.2f} s)" if o and o.time else ""
        out.append(Target(goal, f"{r.time.median * 1e3:.2f} ms{orig}", r.time.median <= 0.05))
    else:
        na(goal)
    r = _find(rows, "null-100000", OURS)
    goal = "engine, NullExecutor, 100,000 jobs: >= 10,000 jobs/s"
    if r and r.time and not r.failed:
        rate = 100_000 / r.time.median
        out.append(Target(goal, f"{rate:,.0f} jobs/s", rate >= 10_000))
    else:
        na(goal)
    rss = [(r, _find(rows, r.view.key, ORIG)) for r in rows if r.label == OURS]
    pairs = [(a.rss_mb, b.rss_mb) for a, b in rss if b and a.rss_mb and b.rss_mb]
    if pairs:
        worst = max(pairs, key=lambda p: p[0] / p[1])
        out.append(
            Target(
                "peak RSS beside the original's (reported, no threshold)",
                f"ours / original {min(a / b for a, b in pairs):.2f}-"
                f"{max(a / b for a, b in pairs):.2f} over {len(pairs)} workloads "
                f"(highest ratio: {worst[0]:.1f} vs {worst[1]:.1f} MB)",
                None,
            )
        )
    return out


def _x(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:,.0f}x"


def headline(rows: list[RowResult], cfg: Config) -> list[str]:
    """A few lines: the ratios that matter most."""
    lines = []

    def speed(view: str, what: str) -> None:
        r = _find(rows, view, OURS)
        if not r or not r.time:
            return
        parts = []
        ro, rl = r.ratios.get("original"), r.ratios.get("limit")
        if ro:
            parts.append(f"**{ro.median:.2f}x** the original's speed")
        if rl:
            lim = r.view.refs["limit"].split(" ")[0]
            parts.append(f"**{rl.median:.2f}x** {lim}'s")
        lines.append(f"- {what}: {fmt_t(r.time.median)}; " + ", ".join(parts))

    o = _find(rows, "one-n2", ORIG)
    r = _find(rows, "one-n2", OURS)
    if o and r and o.time and r.time:
        lines.append(
            f"- batch, one job (fixed cost): {fmt_t(r.time.median)} vs the original's "
            f"{fmt_t(o.time.median)} (**{_x(o.time.median / r.time.median)}** faster)"
        )
    n = cfg.big
    speed(f"sep-{n}-n2", f"batch, {n:,} separate jobs, --nodes 2")
    speed(f"sep-{n}-n1", f"batch, {n:,} separate jobs, --nodes 1 (a core left for the pilot)")
    speed(f"sep-{n}-n64", f"batch, {n:,} separate jobs, --nodes 64")
    speed(f"iter-{n}-n2", f"batch, one {n:,}-iteration job, --nodes 2")
    speed(f"iter-{n}-n64", f"batch, one {n:,}-iteration job, --nodes 64")
    speed(f"dag-{cfg.dag_n}-n64", f"batch, {cfg.dag_n:,}-job DAG, --nodes 64")
    speed(f"script-{cfg.script_n}-n2", f"batch, {cfg.script_n} script jobs, --nodes 2")
    speed(f"sleep-{cfg.sleep_n}-n64", f"batch, {cfg.sleep_n:,} x sleep 0.1 on 64 cores")
    speed("api-throughput", f"API, {cfg.api_n:,} jobs, submit+wait4all")
    for view, what in (
        ("latency", "API, one job submit -> wait4"),
        ("open-close", "API, empty pilot open+close"),
    ):
        o, r = _find(rows, view, ORIG), _find(rows, view, OURS)
        if o and r and o.time and r.time:
            lines.append(
                f"- {what}: {fmt_t(r.time.median)} vs the original's "
                f"{fmt_t(o.time.median)} (**{_x(o.time.median / r.time.median)}** faster)"
            )
    r = _find(rows, "null-100000", OURS)
    if r and r.time:
        lines.append(
            f"- engine (NullExecutor through the Pilot), 100,000 jobs: "
            f"**{100_000 / r.time.median:,.0f} jobs/s** "
            f"({r.time.median / 100_000 * 1e6:.0f} us/job)"
        )
    return lines


def render(
    rows: list[RowResult],
    cfg: Config,
    info_start: dict[str, str],
    load_end: str,
    elapsed: float,
    command: str,
    version: str,
    cut: dict[str, str],
) -> str:
    """The whole RESULTS.md text."""
    tg = targets(rows, cfg)
    met = {True: "met", False: "**NOT met**", None: "-"}
    out = [
        "# Benchmark results: qcgpj_async vs QCG-PilotJob 0.14.2 vs the machine's limit",
        "",
        f"Command: `{command}`{' (quick run: N <= 1,000, indicative only)' if cfg.quick else ''}"
        f" — {elapsed / 60:.1f} min.  ",
        f"Code measured: qcgpj_async at {version} (a copy taken at the start).  ",
        format_machine_info(info_start) + f"; load at the end: {load_end}.",
        "",
        "Speed ratios are medians over rounds of (reference time / tool time), each round's "
        "tools run back to back: > 1 means faster than the reference. The machine is shared and "
        "noisy: trust ratios over absolute times. See `benchmarks/README.md`.",
        "",
        "## Headline ratios",
        "",
        *headline(rows, cfg),
        "",
        "## Targets",
        "",
        "| target | measured (median) | status |",
        "|---|---|---|",
        *[f"| {t.goal} | {t.measured} | {met[t.met]} |" for t in tg],
        "",
        "## All workloads",
        "",
        table(rows),
        "",
    ]
    if cut:
        out += [
            "Cut short to keep within the time budget (`--budget`): "
            + "; ".join(f"`{k}` {v}" for k, v in cut.items())
            + ".",
            "",
        ]
    return "\n".join(out)


# == main =======================================================================


def _check_ours(root: Path) -> str | None:
    """None if this interpreter can import our code from ``root``, else why not."""
    res = subprocess.run(
        [sys.executable, "-c", "import qcgpj_async.cli, anyio, attrs, cattrs"],
        env={**os.environ, **ours_env(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode == 0:
        return None
    return (
        f"{sys.executable} cannot import qcgpj_async from {root} "
        f"(run with the project's venv, e.g. .venv/bin/python benchmarks/run.py):\n"
        f"{res.stderr.strip()[-500:]}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the table, write RESULTS.md (full run); exit 1 if a run failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small N, fewer rounds (< 2 minutes)")
    p.add_argument("--runs", type=int, help="rounds of every workload (overrides the defaults)")
    p.add_argument("--only", help="comma-separated substrings of workload keys to run")
    p.add_argument(
        "--commit",
        help="measure this commit of the checkout (git archive) instead of its working tree",
    )
    p.add_argument(
        "--budget",
        type=float,
        help="minutes (default 14, --quick 1.8): rounds "
        "beyond the minimum stop once 60%% of it is spent, the 1M-job run is "
        "skipped past 80%%",
    )
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument(
        "--output",
        type=Path,
        help="where to write the markdown "
        "(default: benchmarks/RESULTS.md for a full run, nothing for --quick)",
    )
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.runs:
        cfg = Config(
            **{
                **cfg.__dict__,
                "runs": args.runs,
                "runs_light": args.runs,
                "runs_big": args.runs,
                "null_runs": dict.fromkeys(cfg.null_sizes, args.runs),
            }
        )

    version = checkout_version(args.commit)
    root = snapshot_ours(commit=args.commit)
    print(f"measuring qcgpj_async {version}, snapshot in {root}", file=sys.stderr)
    problem = _check_ours(root)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    venv = ensure_original_venv()
    print(f"original venv: {venv} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    info = machine_info()
    groups, views = build(cfg, venv, root)
    if args.only:
        wanted = args.only.split(",")
        groups = [g for g in groups if any(w in g.key for w in wanted)]
    results: dict[str, dict[str, list[Measurement]]] = {}
    budget = (args.budget if args.budget is not None else 1.8 if cfg.quick else 14.0) * 60
    cut: dict[str, str] = {}
    # the engine-only runs first: the 1M-job one is long, and must not be squeezed out
    for g in sorted(groups, key=lambda g: not g.key.startswith("null-")):
        spent = time.perf_counter() - t0
        if g.optional and spent > 0.8 * budget:
            cut[g.key] = f"skipped: {spent / 60:.1f} of the {budget / 60:g} min budget spent"
            print(f"== {g.key}: {cut[g.key]}", file=sys.stderr, flush=True)
            continue
        print(f"== {g.key} ({g.runs} rounds: {', '.join(g.variants)})", file=sys.stderr, flush=True)
        results[g.key] = run_group(g, min(g.runs, cfg.runs), t0, 0.6 * budget)
        done = len(next(iter(results[g.key].values())))
        if done < g.runs:
            cut[g.key] = f"{done} of {g.runs} rounds (time budget)"
    elapsed = time.perf_counter() - t0
    rows = evaluate(views, results)
    load = os.getloadavg()
    command = "python benchmarks/run.py" + (" --quick" if cfg.quick else "")
    if args.runs:
        command += f" --runs {args.runs}"
    if args.only:
        command += f" --only {args.only}"
    if args.commit:
        command += f" --commit {args.commit}"
    text = render(
        rows, cfg, info, " ".join(f"{x:.2f}" for x in load), elapsed, command, version, cut
    )
    print(text)
    out = args.output or (None if cfg.quick or args.only or args.runs else RESULTS_MD)
    if out is not None and not args.no_write:
        out.write_text(text)
        print(f"written: {out}", file=sys.stderr)
    raw = WORK_DIR / ("results-quick.json" if cfg.quick else "results.json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(
        json.dumps(
            {
                g: {
                    tool: [
                        {
                            "wall_s": m.wall_s,
                            "ok": m.ok,
                            "error": m.error,
                            "rss_mb": m.peak_rss_mb,
                            "cpu_s": m.cpu_s,
                            "figures": m.figures,
                            "stderr_tail": m.stderr_tail,
                        }
                        for m in ms
                    ]
                    for tool, ms in res.items()
                }
                for g, res in results.items()
            },
            indent=1,
        )
    )
    failed = sum(1 for res in results.values() for ms in res.values() for m in ms if not m.ok)
    if failed:
        print(f"{failed} run(s) FAILED", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
