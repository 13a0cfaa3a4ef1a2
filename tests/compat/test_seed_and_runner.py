"""The seed's "Example API application": with the import changed, and unchanged under
``python -m qcgpj_async.compat``; the runner's aliases and arguments."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SEED = HERE / "seed_example.py"
T = 60


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=T, env=env
    )


def _check_seed_output(out: str, wd: Path) -> None:
    """What the seed shows: the four lines, then the files job.out.0..3."""
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [
        "available resources",
        "submited jobs",
        "job status",
        "job detailed information",
    ]
    cores = len(os.sched_getaffinity(0))
    res = ast.literal_eval(lines[0].partition(": ")[2].strip())
    assert res == {"total_nodes": 1, "total_cores": cores, "used_cores": 0, "free_cores": cores}
    (name,) = ast.literal_eval(lines[1].partition(": ")[2].strip())
    status = ast.literal_eval(lines[2].partition(": ")[2].strip())
    assert status["jobs"][name]["status"] == 0
    assert status["jobs"][name]["data"]["jobName"] == name
    info = ast.literal_eval(lines[3].partition(": ")[2].strip())["jobs"][name]["data"]
    assert info["status"] == "SUCCEED"
    assert info["iterations"] == {"start": 0, "stop": 4, "total": 4, "finished": 4, "failed": 0}
    for i in range(4):
        text = (wd / f"job.out.{i}").read_text()
        assert re.match(rf"^job {i} executed at .+ @ \S+\n$", text), text
    assert len(list(wd.glob(".qcgpjm-service-*"))) == 1


def test_seed_example_with_the_import_changed(tmp_path: Path) -> None:
    source = SEED.read_text()
    changed = source.replace("from qcg.pilotjob.api.", "from qcgpj_async.compat.")
    differ = [b for a, b in zip(source.splitlines(), changed.splitlines(), strict=True) if a != b]
    assert differ == [
        "from qcgpj_async.compat.manager import LocalManager",
        "from qcgpj_async.compat.job import Jobs",
    ]
    script = tmp_path / "example.py"
    script.write_text(changed)
    run = _run([str(script)], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    _check_seed_output(run.stdout, tmp_path)


def test_seed_example_unchanged_under_the_runner(tmp_path: Path) -> None:
    run = _run(["-m", "qcgpj_async.compat", str(SEED)], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    _check_seed_output(run.stdout, tmp_path)


PROBE = """
import sys
import qcg.pilotjob.api.manager as manager
from qcg.pilotjob.api import errors
from qcg.pilotjob.api.job import Jobs
from qcg.pilotjob.api.jobinfo import JobInfo
from qcg.pilotjob.executor_api.qcgpj_executor import QCGPJExecutor
from qcg.pilotjob.executor_api.qcgpj_future import QCGPJFuture
from qcg.pilotjob.executor_api.templates.basic_template import BasicTemplate
from qcg.pilotjob.executor_api.templates.qcgpj_template import QCGPJTemplate
import qcg.pilotjob.executor_api
mods = [manager.LocalManager, errors.TimeoutElapsed, Jobs, JobInfo, QCGPJExecutor,
        QCGPJFuture, BasicTemplate, QCGPJTemplate]
print(sorted({m.__module__ for m in mods}))
print(qcg.pilotjob.executor_api.__version__, sys.argv[1:], __name__)
import qcg.pilotjob.service  # the rest of the original is left alone
print(qcg.pilotjob.service.__file__.endswith("qcg/pilotjob/service.py"))
sys.exit(3)
"""


def test_runner_aliases_even_with_the_original_installed(tmp_path: Path) -> None:
    pytest.importorskip("qcg.pilotjob.api.manager", reason="the original is not installed")
    (tmp_path / "probe.py").write_text(PROBE)
    run = _run(["-m", "qcgpj_async.compat", "probe.py", "a", "--b"], tmp_path)
    assert run.returncode == 3, run.stderr
    assert run.stdout.splitlines() == [
        "['qcgpj_async.compat.errors', 'qcgpj_async.compat.executor', "
        "'qcgpj_async.compat.job', 'qcgpj_async.compat.jobinfo', 'qcgpj_async.compat.manager']",
        "0.14.2 ['a', '--b'] __main__",
        "True",
    ]
    # Without the runner, the same process kind gets the original: nothing is installed.
    plain = _run(["-c", "import qcg.pilotjob.api.manager as m; print(m.__file__)"], tmp_path)
    assert "site-packages" in plain.stdout


def test_runner_module_form(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(
        "import sys\nfrom qcg.pilotjob.api.manager import LocalManager\n"
        "print(LocalManager.__module__, sys.argv[1:], __name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = _run(["-m", "qcgpj_async.compat", "-m", "mypkg.tool", "x"], tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "qcgpj_async.compat.manager ['x'] __main__\n"


def test_runner_without_any_qcg_package(tmp_path: Path) -> None:
    # As on a machine without the original: qcg and qcg.pilotjob are made empty.
    code = (
        "import sys\n"
        "from qcgpj_async.compat import _alias\n"
        "_alias.AliasFinder._installed = lambda self, name, path: False\n"
        "_alias.install()\n"
        "from qcg.pilotjob.api.manager import LocalManager\n"
        "import qcg, qcg.pilotjob\n"
        "print(qcg.__path__, qcg.pilotjob.__path__, LocalManager.__module__)\n"
    )
    run = _run(["-c", code], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "[] [] qcgpj_async.compat.manager\n"


def test_runner_usage(tmp_path: Path) -> None:
    run = _run(["-m", "qcgpj_async.compat"], tmp_path)
    assert run.returncode == 2 and "usage: python -m qcgpj_async.compat SCRIPT" in run.stderr
