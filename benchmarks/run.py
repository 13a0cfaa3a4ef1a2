"""The benchmark suite: qcgpj_async side by side with QCG-PilotJob 0.14.2 and the machine's limit.

Usage: ``python benchmarks/run.py [--quick] [--runs R] [--only KEY[,KEY]]
[--commit REV | --ab REV_A,REV_B | --compare REV]``

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
15 minutes) writes ``benchmarks/RESULTS.md``. ``--ab``/``--compare`` run our code
at two revisions instead, alternated, and print B/A per workload (``_ab``). See
``benchmarks/README.md``.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _ab import A, ABRow, B, ab_rows, ab_table, pair_variants, parse_revs
from _harness import (
    WORK_DIR,
    Measurement,
    alternate,
    format_machine_info,
    machine_info,
)
from _peers import checkout_version, ensure_original_venv, ours_env, snapshot_ours
from _workloads import FULL, ORIG, OURS, QUICK, Config, Group, View, build

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"

# == running ===================================================================


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


def _only(groups: list[Group], only: str | None) -> list[Group]:
    """The groups whose key contains one of the comma-separated substrings (all: None)."""
    if not only:
        return groups
    wanted = only.split(",")
    return [g for g in groups if any(w in g.key for w in wanted)]


def _budget_s(args: argparse.Namespace, cfg: Config) -> float:
    return (args.budget if args.budget is not None else 1.8 if cfg.quick else 14.0) * 60


def run_groups(
    groups: list[Group], cfg: Config, budget: float, t0: float
) -> tuple[dict[str, dict[str, list[Measurement]]], dict[str, str]]:
    """Run every group (``run_group``) within ``budget`` s since ``t0``; the results by
    group key, and what was cut short, by group key."""
    results: dict[str, dict[str, list[Measurement]]] = {}
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
    return results, cut


def ab_groups(groups_a: list[Group], groups_b: list[Group]) -> list[Group]:
    """The workloads of A/B mode: our variant of each tree (``_ab.pair_variants``), no peers.

    ``groups_a`` and ``groups_b`` are ``build``'s groups for the two trees (same keys,
    same order)."""
    out = []
    for g, h in zip(groups_a, groups_b, strict=True):
        assert g.key == h.key, (g.key, h.key)
        pair = pair_variants(g.variants, h.variants, OURS)
        if pair is not None:
            out.append(Group(g.key, g.runs, pair, g.optional))
    return out


def ab_result_rows(
    views: list[View], results: dict[str, dict[str, list[Measurement]]]
) -> list[ABRow]:
    """One A/B row per view that has our row: its figure (or wall time) of A and of B."""
    specs = []
    for v in views:
        ours_keys = [k for label, _var, k in v.rows if label == OURS]
        if not ours_keys:
            continue
        key = ours_keys[0]

        def series(side: str, group: str = v.group, key: str | None = key) -> list[float | None]:
            return [_value(m, key) for m in results[group][side]]

        specs.append((v.workload, v.group, series))
    return ab_rows(specs, list(results))


def run_ab(args: argparse.Namespace, cfg: Config) -> int:
    """``--ab``/``--compare``: our code at two revisions, alternated; print the B/A table."""
    try:
        revs = parse_revs(args.ab, args.compare)
    except ValueError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    roots, names = [], []
    for side, rev in zip((A, B), revs, strict=True):
        try:
            root = snapshot_ours(WORK_DIR / f"snapshot-{side.lower()}", commit=rev)
        except subprocess.CalledProcessError as e:
            why = (e.stderr or b"").decode(errors="replace").strip()
            print(f"run.py: cannot take {rev!r} ({side}): {why}", file=sys.stderr)
            return 2
        problem = _check_ours(root)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        roots.append(root)
        names.append(checkout_version(rev) if rev else "working tree: " + checkout_version())
        print(f"{side}: qcgpj_async {names[-1]}, snapshot in {root}", file=sys.stderr)
    # The peers do not run here: their commands are built but never called.
    no_venv = WORK_DIR / "no-original-venv"
    groups_a, views = build(cfg, no_venv, roots[0])
    groups_b, _ = build(cfg, no_venv, roots[1])
    groups = _only(ab_groups(groups_a, groups_b), args.only)
    t0 = time.perf_counter()
    results, cut = run_groups(groups, cfg, _budget_s(args, cfg), t0)
    short = [n.split(" ")[0] if rev else "working tree" for n, rev in zip(names, revs, strict=True)]
    table = ab_table(ab_result_rows(views, results), short[0], short[1])
    text = "\n".join(
        [
            f"# A/B: {names[0]} (A) vs {names[1]} (B)",
            "",
            f"{format_machine_info()}; {(time.perf_counter() - t0) / 60:.1f} min.",
            "",
            "Times are medians (min-max) over rounds, A and B alternated (A B, B A, ...). "
            "B/A < 1: B is faster.",
            "",
            table,
            "",
            *(
                ["Cut short (`--budget`): " + "; ".join(f"`{k}` {v}" for k, v in cut.items())]
                if cut
                else []
            ),
        ]
    )
    print(text)
    if args.output is not None and not args.no_write:
        args.output.write_text(text)
        print(f"written: {args.output}", file=sys.stderr)
    failed = sum(1 for res in results.values() for ms in res.values() for m in ms if not m.ok)
    if failed:
        print(f"{failed} run(s) FAILED", file=sys.stderr)
    return 1 if failed else 0


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
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--commit",
        help="measure this commit of the checkout (git archive) instead of its working tree",
    )
    which.add_argument(
        "--ab",
        metavar="REV_A,REV_B",
        help="A/B mode: our code at two commits, alternated round by round, no peers; "
        "prints each workload's medians and B/A",
    )
    which.add_argument(
        "--compare",
        metavar="REV",
        help="A/B mode with REV as A and the working tree as B",
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

    if args.ab is not None or args.compare is not None:
        return run_ab(args, cfg)
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
    groups = _only(groups, args.only)
    results, cut = run_groups(groups, cfg, _budget_s(args, cfg), t0)
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
