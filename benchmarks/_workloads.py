"""The workloads of ``run.py``: sizes, what each tool runs on each, and how it is tabled.

``build(cfg, venv, root)`` gives the groups (tools run interleaved on one
workload, ``run.run_group``) and the views (sections of the table) of a suite
run; ``root`` is the tree whose ``qcgpj_async/`` is measured (a snapshot).
Nothing runs here: a group's variants are callables that run one measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _harness import Measurement, run_cmd, run_in_fresh_wd
from _peers import (
    batch_verifier,
    make_cmd,
    original_api_cmd,
    original_batch_cmd,
    original_latency_cmd,
    ours_api_cmd,
    ours_batch_cmd,
    ours_env,
    ours_latency_cmd,
    ours_null_cmd,
    write_dag,
    write_dag_makefile,
    write_iteration_job,
    write_script_jobs,
    write_sleep_jobs,
    write_true_jobs,
    xargs_cmd,
)

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
