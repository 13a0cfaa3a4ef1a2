"""The peers we compare against: QCG-PilotJob 0.14.2 (in its own venv) and xargs.

Stdlib only and independent of ``_harness``. Provides:

- ``ensure_original_venv()``: a cached venv with ``qcg-pilotjob==0.14.2``;
- request-file writers (the original's batch format, which our CLI also reads);
- command builders for the original's batch service and API, our CLI, and xargs;
- ``batch_verifier(n)``: checks ``final_status.json`` after a batch run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ORIGINAL_SPEC = "qcg-pilotjob==0.14.2"
WORK_DIR = Path(__file__).resolve().parent / ".work"
"""Generated request files and scripts go here (git-ignored)."""

_IMPORT_CHECK = "import qcg.pilotjob.service, qcg.pilotjob.api.manager, zmq, psutil, click"
_checked: set[Path] = set()


def cache_dir() -> Path:
    """Base cache dir: ``$QCGPJ_BENCH_CACHE`` or ``~/.cache/qcgpj_async-bench``."""
    if os.environ.get("QCGPJ_BENCH_CACHE"):
        return Path(os.environ["QCGPJ_BENCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "qcgpj_async-bench"


def _imports_ok(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    res = subprocess.run([python, "-c", _IMPORT_CHECK], capture_output=True, check=False)
    return res.returncode == 0


def ensure_original_venv() -> Path:
    """Return a venv dir holding ``qcg-pilotjob==0.14.2``; create it on first use.

    Creation (``python -m venv`` + ``pip install``, ~6 s with a warm pip cache)
    prints one progress line to stderr and is guarded by a file lock, so
    parallel callers do not race. The venv is checked to import the service,
    the API and the original's dependencies (pyzmq, psutil, click).
    """
    venv = cache_dir() / "qcg-pilotjob-0.14.2"
    if venv in _checked:
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".qcg-pilotjob-0.14.2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _imports_ok(venv):
            print(f"creating {ORIGINAL_SPEC} venv in {venv} ...", file=sys.stderr, flush=True)
            steps = [
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", ORIGINAL_SPEC],
            ]  # fmt: skip
            for step in steps:
                res = subprocess.run(step, capture_output=True, text=True, check=False)
                if res.returncode != 0:
                    raise RuntimeError(f"{' '.join(step)} failed:\n{res.stdout}{res.stderr}")
            if not _imports_ok(venv):
                raise RuntimeError(f"{venv}: {ORIGINAL_SPEC} installed but does not import")
    _checked.add(venv)
    return venv


def original_python(venv: Path | None = None) -> Path:
    """The interpreter of the original's venv (created if needed)."""
    return (venv or ensure_original_venv()) / "bin" / "python"


# --- request files ---------------------------------------------------------


def write_requests(path: Path, jobs: Iterable[dict[str, Any]]) -> Path:
    """Write a batch file: one ``submit`` of ``jobs``, then ``finishAfterAllTasksDone``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    requests = [
        {"request": "submit", "jobs": list(jobs)},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    path.write_text(json.dumps(requests))
    return path


def _default(path: Path | None, name: str) -> Path:
    return path if path is not None else WORK_DIR / "requests" / name


def write_true_jobs(n: int, path: Path | None = None) -> Path:
    """N separate jobs ``/bin/true`` (1 core each)."""
    jobs = ({"name": f"j{i}", "execution": {"exec": "/bin/true"}} for i in range(n))
    return write_requests(_default(path, f"true-{n}.json"), jobs)


def write_iteration_job(n: int, path: Path | None = None) -> Path:
    """One job ``/bin/true`` with N iterations."""
    job = {"name": "it", "execution": {"exec": "/bin/true"}, "iteration": {"start": 0, "stop": n}}
    return write_requests(_default(path, f"iter-{n}.json"), [job])


def write_script_jobs(n: int, path: Path | None = None) -> Path:
    """N jobs ``script: "true"`` (the original runs them with ``bash -l -c``)."""
    jobs = ({"name": f"s{i}", "execution": {"script": "true"}} for i in range(n))
    return write_requests(_default(path, f"script-{n}.json"), jobs)


def write_sleep_jobs(n: int, seconds: float = 0.1, path: Path | None = None) -> Path:
    """N jobs ``/bin/sleep <seconds>``."""
    jobs = (
        {"name": f"z{i}", "execution": {"exec": "/bin/sleep", "args": [str(seconds)]}}
        for i in range(n)
    )
    return write_requests(_default(path, f"sleep-{n}-{seconds:g}.json"), jobs)


def dag_jobs(n: int, chain: int = 10, fan: int = 10) -> list[dict[str, Any]]:
    """N ``/bin/true`` jobs forming blocks of ``fan`` chains of ``chain`` jobs.

    Each block ends with a fan-in job ``f<b>`` that runs after the last job of
    each of its chains (block size ``fan * chain + 1``, 101 by default). When
    N is not a multiple, the last block is cut short but still ends with its
    fan-in. Critical path: ``chain + 1`` jobs; up to ``fan`` chains run in
    parallel per block, and blocks are independent.
    """
    jobs: list[dict[str, Any]] = []

    def add(name: str, after: list[str]) -> None:
        job: dict[str, Any] = {"name": name, "execution": {"exec": "/bin/true"}}
        if after:
            job["dependencies"] = {"after": after}
        jobs.append(job)

    block = 0
    while len(jobs) < n:
        tails: list[str] = []
        for c in range(fan):
            prev: str | None = None
            for i in range(chain):
                if len(jobs) >= n - 1:  # keep room for the block's fan-in
                    break
                name = f"b{block}c{c}j{i}"
                add(name, [prev] if prev else [])
                prev = name
            if prev:
                tails.append(prev)
        add(f"f{block}", tails)
        block += 1
    return jobs


def write_dag(n: int, chain: int = 10, fan: int = 10, path: Path | None = None) -> Path:
    """A DAG of N jobs, see ``dag_jobs``."""
    return write_requests(_default(path, f"dag-{n}-{chain}x{fan}.json"), dag_jobs(n, chain, fan))


def batch_verifier(jobs: int, iterations: int | None = None) -> Callable[[Path], str | None]:
    """A ``verify(wd)`` checking ``<wd>/.qcgpjm-service-*/final_status.json``.

    It expects ``jobs`` finished jobs, none failed (and ``iterations`` finished
    iterations when given). Returns an error message or None.
    """

    def verify(wd: Path) -> str | None:
        found = sorted(wd.glob(".qcgpjm-service-*/final_status.json"))
        if not found:
            return "no .qcgpjm-service-*/final_status.json in wd"
        stats = json.loads(found[-1].read_text())
        js, its = stats.get("JobStats", {}), stats.get("IterationStats", {})
        if js.get("FinishedJobs") != jobs or js.get("FailedJobs", 0) != 0:
            return f"expected {jobs} finished jobs, got JobStats {js}"
        if iterations is not None and (
            its.get("FinishedIterations") != iterations or its.get("FailedIterations", 0) != 0
        ):
            return f"expected {iterations} finished iterations, got {its}"
        return None

    return verify


# --- command builders ------------------------------------------------------


def original_batch_cmd(
    file: Path, nodes: str | int, wd: Path, venv: Path | None = None
) -> list[str]:
    """The original service in batch (file) mode on local resources.

    ``--nodes 2`` means ONE node ``n0`` with 2 cores (``"a:2,b:2"`` for two).
    ``--nodes`` alone already selects local resources; ``--resources local``
    and ``--envschema common`` also keep it off Slurm inside an allocation.
    It writes ``<wd>/.qcgpjm-service-<host>.<pid>/`` (service.log at level
    info, jobs.report, final_status.json, track.*).
    """
    return [
        str(original_python(venv)), "-m", "qcg.pilotjob.service",
        "--file-path", str(file), "--nodes", str(nodes), "--wd", str(wd),
        "--resources", "local", "--envschema", "common",
    ]  # fmt: skip


def ours_batch_cmd(
    file: Path, nodes: str | int, wd: Path, python: str | Path = sys.executable
) -> list[str]:
    """Our CLI in batch mode, wire-compatible with ``original_batch_cmd``."""
    return [
        str(python), "-m", "qcgpj_async",
        "--file-path", str(file), "--nodes", str(nodes), "--wd", str(wd),
    ]  # fmt: skip


def xargs_cmd(n: int, parallel: int, argv: Sequence[str] | None = None) -> list[str]:
    """``seq N | xargs -P P -n 1 /bin/true`` via bash: the process-spawn ceiling.

    With ``argv`` (e.g. ``["/bin/sleep", "0.1"]``) each of the N commands is
    exactly ``argv`` (``xargs -I{}``: the input number is not appended).
    """
    if argv is None:
        return ["bash", "-c", f"seq {int(n)} | xargs -P {int(parallel)} -n 1 /bin/true"]
    cmd = shlex.join(argv)
    return ["bash", "-c", f"seq {int(n)} | xargs -P {int(parallel)} -I{{}} {cmd}"]


def write_dag_makefile(n: int, chain: int = 10, fan: int = 10, path: Path | None = None) -> Path:
    """The DAG of ``dag_jobs`` as a Makefile (phony targets running ``/bin/true``).

    Target ``all`` depends on every job, so ``make -j P -f <file>`` runs the
    whole DAG honouring the dependencies: the machine's limit for a DAG.
    """
    jobs = dag_jobs(n, chain, fan)
    names = [j["name"] for j in jobs]
    lines = [".PHONY: all " + " ".join(names), "all: " + " ".join(names)]
    for j in jobs:
        after = j.get("dependencies", {}).get("after", [])
        lines += [f"{j['name']}: {' '.join(after)}".rstrip(), "\t@/bin/true"]
    out = _default(path, f"dag-{n}-{chain}x{fan}.mk")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def make_cmd(makefile: Path, parallel: int) -> list[str]:
    """``make -s -j P -f <makefile>``: run a ``write_dag_makefile`` DAG."""
    return ["make", "-s", "-j", str(int(parallel)), "-f", str(makefile)]


_API_SCRIPT = '''\
"""Drive QCG-PilotJob 0.14.2 through its API; print one JSON line of figures."""
import json, statistics, sys, time
from qcg.pilotjob.api.job import Jobs
from qcg.pilotjob.api.manager import LocalManager

mode, n, nodes, wd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {"jobs": n}
t0 = time.perf_counter()
m = LocalManager(server_args=["--nodes", nodes, "--wd", wd, "--resources", "local",
                              "--envschema", "common"], cfg={"wdir": wd})
t1 = time.perf_counter()
out["start_s"] = t1 - t0
if mode == "throughput":
    jobs = Jobs()
    for i in range(n):
        jobs.add(name=f"j{i}", exec="/bin/true")
    t2 = time.perf_counter()
    m.submit(jobs)
    t3 = time.perf_counter()
    m.wait4all()
    t4 = time.perf_counter()
    out.update(submit_s=t3 - t2, wait4all_s=t4 - t3, submit_wait4all_s=t4 - t2,
               jobs_per_s=n / (t4 - t2))
    status = m.status([f"j{i}" for i in range(n)])["jobs"]
    bad = [k for k, v in status.items() if v["data"]["status"] != "SUCCEED"]
else:  # latency: n times submit one job, then wait4 it
    lat, bad = [], []
    for i in range(n):
        t2 = time.perf_counter()
        names = m.submit(Jobs().add(name=f"l{i}", exec="/bin/true"))
        res = m.wait4(names)
        lat.append(time.perf_counter() - t2)
        bad += [k for k, v in res.items() if v != "SUCCEED"]
    out.update(latency_median_ms=statistics.median(lat) * 1e3,
               latency_min_ms=min(lat) * 1e3, latency_max_ms=max(lat) * 1e3)
t5 = time.perf_counter()
m.finish()
out["finish_s"] = time.perf_counter() - t5
if bad:
    sys.exit(f"jobs not SUCCEED: {bad[:5]}")
print(json.dumps(out))
'''


def _api_script() -> Path:
    path = WORK_DIR / "original_api_bench.py"
    if not path.exists() or path.read_text() != _API_SCRIPT:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_API_SCRIPT)
    return path


def original_api_cmd(n: int, nodes: str | int, wd: Path, venv: Path | None = None) -> list[str]:
    """The original's API: ``LocalManager``, submit N ``/bin/true``, ``wait4all``, ``finish``.

    Prints JSON figures (into ``Measurement.figures``): ``start_s``,
    ``submit_s``, ``wait4all_s``, ``submit_wait4all_s``, ``jobs_per_s``,
    ``finish_s``. Exits non-zero if a job did not succeed.
    """
    python, script = original_python(venv), _api_script()
    return [str(python), str(script), "throughput", str(n), str(nodes), str(wd)]


def original_latency_cmd(
    samples: int, nodes: str | int, wd: Path, venv: Path | None = None
) -> list[str]:
    """The original's API: ``samples`` times submit one job then ``wait4`` it.

    Prints JSON figures ``latency_median_ms``, ``latency_min_ms``,
    ``latency_max_ms`` plus ``start_s`` and ``finish_s``.
    """
    python, script = original_python(venv), _api_script()
    return [str(python), str(script), "latency", str(samples), str(nodes), str(wd)]


# --- our API (qcgpj_async from this checkout) ------------------------------

CHECKOUT = Path(__file__).resolve().parent.parent
"""The repository root: put on ``PYTHONPATH`` so an uninstalled checkout runs."""


def ours_env(root: Path = CHECKOUT) -> dict[str, str]:
    """Environment additions for running our code from ``root`` (``run_cmd(env=...)``).

    ``root`` holds the ``qcgpj_async`` package: the checkout, or a snapshot of
    it (``snapshot_ours``).
    """
    old = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(root) + (os.pathsep + old if old else "")}


def snapshot_ours(dest: Path | None = None, commit: str | None = None) -> Path:
    """Copy the ``qcgpj_async`` package to ``dest`` and return ``dest``.

    Without ``commit``: the checkout's working tree as it is now (uncommitted
    edits included); with it: that commit's tree (``git archive``).
    Benchmarks measure the copy, so edits made in the checkout while they run
    do not change the code under test half-way. Default ``dest``:
    ``WORK_DIR/snapshot`` (replaced).
    """
    dest = dest if dest is not None else WORK_DIR / "snapshot"
    if dest.exists():
        shutil.rmtree(dest)
    if commit is None:
        shutil.copytree(
            CHECKOUT / "qcgpj_async",
            dest / "qcgpj_async",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    else:
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(CHECKOUT), "archive", "--format=tar", commit, "qcgpj_async"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # byte-compile now, so that no measured run pays for it
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(dest / "qcgpj_async")],
        check=True,
        capture_output=True,
    )
    return dest


def checkout_version(commit: str | None = None) -> str:
    """``<commit> (<subject>)``; without ``commit`` (HEAD), plus how many files of
    ``qcgpj_async/`` differ from it in the working tree."""

    def git(*args: str) -> str:
        res = subprocess.run(
            ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, check=False
        )
        return res.stdout.strip() if res.returncode == 0 else ""

    rev = commit or "HEAD"
    head, subject = git("log", "-1", "--format=%h", rev), git("log", "-1", "--format=%s", rev)
    if not head:
        return f"unknown ({rev}: not found in a git checkout)"
    if len(subject) > 60:
        subject = subject[:57] + "..."
    if commit is not None:
        return f"{head} ({subject})"
    dirty = [
        line
        for line in git("status", "--porcelain", "--", "qcgpj_async").splitlines()
        if line.strip()
    ]
    return f"{head} ({subject})" + (
        f" + uncommitted changes in {len(dirty)} file(s) of qcgpj_async/" if dirty else ""
    )


_OURS_API_SCRIPT = '''\
"""Drive qcgpj_async through its API; print one JSON line of figures.

Same modes and figure names as the original's script (``_API_SCRIPT``), plus
``null`` (NullExecutor: no processes) and, in ``latency``, ``open_close_s``:
the median time of an empty ``async with Pilot(...)`` (``empties`` of them).
"""
import json, statistics, sys, time
import anyio
from qcgpj_async import Jobs, NullExecutor, Pilot

mode, n, nodes, wd, level = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
empties = int(sys.argv[6]) if len(sys.argv) > 6 else 0


async def main():
    out = {"jobs": n}
    bad = []
    if mode == "latency" and empties:
        oc = []
        for i in range(empties):
            t = time.perf_counter()
            async with Pilot(nodes=nodes, wd=wd, log_level=level, instance_id=f"empty{i}"):
                pass
            oc.append(time.perf_counter() - t)
        out.update(open_close_s=statistics.median(oc), open_close_first_s=oc[0],
                   open_close_min_s=min(oc), open_close_max_s=max(oc))
    kw = {"executor": NullExecutor()} if mode == "null" else {}
    jobs = Jobs()
    if mode != "latency":
        for i in range(n):
            jobs.add(name=f"j{i}", exec="/bin/true")
    t0 = time.perf_counter()
    async with Pilot(nodes=nodes, wd=wd, log_level=level, **kw) as p:
        t1 = time.perf_counter()
        out["start_s"] = t1 - t0
        if mode != "latency":
            t2 = time.perf_counter()
            await p.submit(jobs)
            t3 = time.perf_counter()
            await p.wait4all()
            t4 = time.perf_counter()
            out.update(submit_s=t3 - t2, wait4all_s=t4 - t3, submit_wait4all_s=t4 - t2,
                       jobs_per_s=n / (t4 - t2), us_per_job=(t4 - t2) / n * 1e6)
            states = await p.list()
            bad = [k for k, v in states.items() if v.value != "SUCCEED"]
            if len(states) != n:
                bad.append(f"{len(states)} jobs listed, {n} submitted")
        else:
            lat = []
            for i in range(n):
                t2 = time.perf_counter()
                names = await p.submit(Jobs().add(name=f"l{i}", exec="/bin/true"))
                res = await p.wait4(names)
                lat.append(time.perf_counter() - t2)
                bad += [k for k, v in res.items() if v.value != "SUCCEED"]
            out.update(latency_median_ms=statistics.median(lat) * 1e3,
                       latency_min_ms=min(lat) * 1e3, latency_max_ms=max(lat) * 1e3)
        t5 = time.perf_counter()
    out["finish_s"] = time.perf_counter() - t5
    if bad:
        sys.exit(f"jobs not SUCCEED: {bad[:5]}")
    print(json.dumps(out))


anyio.run(main)
'''


def _ours_api_script() -> Path:
    path = WORK_DIR / "ours_api_bench.py"
    if not path.exists() or path.read_text() != _OURS_API_SCRIPT:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_OURS_API_SCRIPT)
    return path


def ours_api_cmd(
    n: int,
    nodes: str | int,
    wd: Path,
    log_level: str = "info",
    python: str | Path = sys.executable,
) -> list[str]:
    """Our API, like ``original_api_cmd``: Pilot, submit N ``/bin/true``, ``wait4all``.

    Same figures as the original's (``start_s``, ``submit_s``, ``wait4all_s``,
    ``submit_wait4all_s``, ``jobs_per_s``, ``finish_s``) plus ``us_per_job``.
    Run it with ``env=ours_env()`` to use the checkout.
    """
    return [
        str(python),
        str(_ours_api_script()),
        "throughput",
        str(n),
        str(nodes),
        str(wd),
        log_level,
    ]


def ours_null_cmd(
    n: int,
    nodes: str | int,
    wd: Path,
    log_level: str = "warning",
    python: str | Path = sys.executable,
) -> list[str]:
    """As ``ours_api_cmd`` with ``NullExecutor``: the engine and Pilot cost per job."""
    return [str(python), str(_ours_api_script()), "null", str(n), str(nodes), str(wd), log_level]


def ours_latency_cmd(
    samples: int,
    nodes: str | int,
    wd: Path,
    empties: int = 20,
    log_level: str = "info",
    python: str | Path = sys.executable,
) -> list[str]:
    """Like ``original_latency_cmd``; first ``empties`` empty Pilot open+close.

    Figures: ``latency_median_ms`` (and ``_min_``/``_max_``), ``start_s``,
    ``finish_s``, ``open_close_s`` (median; ``open_close_first_s`` the first).
    """
    return [
        str(python),
        str(_ours_api_script()),
        "latency",
        str(samples),
        str(nodes),
        str(wd),
        log_level,
        str(empties),
    ]
