"""Fixtures for tests against a real Slurm cluster.

The cluster is the one ``.ci/slurm-cluster.sh up`` starts (virtual nodes
n1..nN of 4 CPUs on this host). These fixtures never start it: when
``.ci/slurm-cluster.sh status`` fails, every test that asks for
``slurm_cluster`` is skipped with the reason.

Each test gets a fresh allocation through ``salloc`` and runs one command in
it (on the submitting host, with the allocation's SLURM_* environment, as a
pilot would run). ``salloc --immediate`` bounds the wait for nodes, a
subprocess timeout bounds the command, and the allocation is cancelled by its
unique job name whatever happens: a killed ``salloc`` would otherwise leave
the job holding the nodes (``InactiveLimit=0``). Batch scripts go through
``sbatch --wait`` instead, bounded and cancelled the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / ".ci" / "slurm-cluster.sh"

#: Seconds ``salloc --immediate`` waits for free nodes.
IMMEDIATE = 60
#: Default seconds a command may run inside its allocation.
COMMAND_TIMEOUT = 45.0


def cluster_unavailable() -> str | None:
    """Why no Slurm cluster can be used here, or None when one answers."""
    missing = [cmd for cmd in ("sinfo", "salloc", "sbatch") if shutil.which(cmd) is None]
    if missing:
        return f"{'/'.join(missing)} not found (run .ci/slurm-cluster.sh up)"
    if not CLUSTER_SCRIPT.exists():
        return f"{CLUSTER_SCRIPT} missing"
    try:
        done = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return ".ci/slurm-cluster.sh status timed out"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace("\n", "; ")
        return f".ci/slurm-cluster.sh status exited {done.returncode}: {detail}"
    return None


def allocation_env() -> dict[str, str]:
    """This process's environment without a surrounding job's SLURM_* variables.

    The repository is put first on PYTHONPATH so ``python -c`` in the
    allocation imports the package under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (salloc and its command's group)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError):
            if os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class BatchJob:
    """A batch job that ended: what ``sbatch --wait`` and the job's output files said."""

    job_id: str
    returncode: int
    """The job's exit code (as ``sbatch --wait`` exits)."""
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SlurmCluster:
    """The running test cluster, and a way to run commands in fresh allocations."""

    nodes: tuple[str, ...]
    """Every node the cluster reports, in sinfo's order."""

    def run_in_allocation(
        self,
        argv: Sequence[str],
        *,
        nodes: int = 2,
        tasks: int = 8,
        timeout: float = COMMAND_TIMEOUT,
        salloc_args: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a new allocation of ``nodes`` nodes and ``tasks`` CPUs.

        Args:
            argv: the command; it runs on this host with the allocation's
                environment (``salloc`` semantics), and may ``srun`` steps.
            nodes: ``-N``.
            tasks: ``-n`` (one CPU each).
            timeout: seconds the command may take once the nodes are granted.
            salloc_args: more ``salloc`` options.
            check: fail the test when the command exits non-zero.

        Returns:
            The completed ``salloc`` process, output captured as text.
        """
        name = f"qcgpj-test-{uuid.uuid4().hex[:12]}"
        minutes = max(1, math.ceil(timeout / 60))
        cmd = [
            "salloc",
            "--quiet",
            f"--immediate={IMMEDIATE}",
            f"--nodes={nodes}",
            f"--ntasks={tasks}",
            f"--time={minutes}",  # a backstop if everything else fails
            f"--job-name={name}",
            *salloc_args,
            "--",
            *argv,
        ]
        # salloc runs argv as a local child in a process group of its own,
        # which neither scancel nor killing salloc stops: a session of their
        # own lets a timeout find and kill both.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            env=allocation_env(),
            cwd=REPO,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=IMMEDIATE + timeout)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            stdout, stderr = proc.communicate()
            pytest.fail(
                f"{' '.join(cmd)} did not finish in {IMMEDIATE + timeout:g} s\n"
                f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
            )
        finally:
            cancel_by_name(name)  # only matters if salloc was killed; cheap, idempotent
        done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
        return done

    def run_batch(
        self,
        script: str,
        cwd: Path,
        *,
        nodes: int = 2,
        tasks: int = 8,
        timeout: float = COMMAND_TIMEOUT,
    ) -> BatchJob:
        """Submit ``script`` with ``sbatch --wait`` and wait for the job to end.

        sbatch has no ``--immediate``: the wait for nodes and the run are
        bounded together by ``IMMEDIATE + timeout`` seconds, after which the
        job is cancelled and the test fails; ``--time`` is a backstop.

        Args:
            script: the batch script (it runs on the allocation's first
                node, this host, with this process's environment as
                :func:`allocation_env` makes it).
            cwd: the job's working directory; its stdout and stderr go to
                ``cwd/batch.out`` and ``cwd/batch.err``.
            nodes: ``-N``.
            tasks: ``-n`` (one CPU each).
            timeout: seconds the job may take once the nodes are granted.

        Returns:
            The job's id, exit code (``sbatch --wait``'s) and output.
        """
        name = f"qcgpj-test-{uuid.uuid4().hex[:12]}"
        minutes = max(1, math.ceil(timeout / 60))
        path = cwd / "batch.sh"
        path.write_text(script)
        cmd = [
            "sbatch",
            "--wait",
            "--parsable",
            f"--nodes={nodes}",
            f"--ntasks={tasks}",
            f"--time={minutes}",
            f"--job-name={name}",
            f"--chdir={cwd}",
            f"--output={cwd / 'batch.out'}",
            f"--error={cwd / 'batch.err'}",
            str(path),
        ]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=IMMEDIATE + timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                env=allocation_env(),
                cwd=cwd,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(cmd)} did not finish in {IMMEDIATE + timeout:g} s")
        finally:
            # sbatch --wait only waits: a timeout would leave the job queued or running.
            cancel_by_name(name)
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout}{done.stderr}")

        def read(name: str) -> str:
            out = cwd / name
            return out.read_text() if out.exists() else ""

        return BatchJob(job_id, done.returncode, read("batch.out"), read("batch.err"))

    @contextlib.contextmanager
    def batch_job(
        self, script: str, cwd: Path, *, nodes: int = 2, tasks: int = 8, minutes: int = 2
    ) -> Iterator[str]:
        """Submit ``script`` with ``sbatch`` (no waiting); yield its id; cancel it on exit.

        Args:
            script: the batch script; output to ``cwd/batch.out``, ``cwd/batch.err``.
            cwd: the job's working directory.
            nodes: ``-N``.
            tasks: ``-n``.
            minutes: ``--time``, a backstop.

        Yields:
            The job id.
        """
        name = f"qcgpj-test-{uuid.uuid4().hex[:12]}"
        path = cwd / "batch.sh"
        path.write_text(script)
        cmd = [
            "sbatch",
            "--parsable",
            f"--nodes={nodes}",
            f"--ntasks={tasks}",
            f"--time={minutes}",
            f"--job-name={name}",
            f"--chdir={cwd}",
            f"--output={cwd / 'batch.out'}",
            f"--error={cwd / 'batch.err'}",
            str(path),
        ]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
                env=allocation_env(),
                cwd=cwd,
            )
            job_id = done.stdout.strip().split(";")[0]
            if done.returncode != 0 or not job_id.isdigit():
                pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout}{done.stderr}")
            yield job_id
        finally:
            subprocess.run(
                ["scancel", "--quiet", f"--name={name}"],
                capture_output=True,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
            )

    def job_end(self, job_id: str, timeout: float = IMMEDIATE + COMMAND_TIMEOUT) -> dict[str, str]:
        """Wait until job ``job_id`` has ended; its ``scontrol show job`` fields.

        Fails the test after ``timeout`` seconds. Slurm keeps an ended job
        listed for ``MinJobAge`` (30 s on the test cluster).
        """
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                ["scontrol", "--oneliner", "show", "job", job_id],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
            ).stdout
            fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
            if fields.get("JobState") not in (
                None,
                "PENDING",
                "CONFIGURING",
                "RUNNING",
                "COMPLETING",
                "SUSPENDED",
            ):
                return fields
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} still {fields.get('JobState')} after {timeout:g} s")
            time.sleep(0.1)  # scontrol has nothing to wait on

    def run_python(self, code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``python -c code`` (this interpreter) in a new allocation.

        Args:
            code: Python source.
            **kwargs: as for :meth:`run_in_allocation`.

        Returns:
            The completed ``salloc`` process.
        """
        return self.run_in_allocation([sys.executable, "-c", code], **kwargs)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running test cluster; skips the test when there is none."""
    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(f"Slurm cluster not running: {reason}")
    out = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%N"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return SlurmCluster(nodes=tuple(dict.fromkeys(out.split())))


@pytest.fixture
def run_in_allocation(
    slurm_cluster: SlurmCluster,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """:meth:`SlurmCluster.run_in_allocation` of the running cluster (skips without one)."""
    return slurm_cluster.run_in_allocation


def cancel_by_name(name: str) -> None:
    """``scancel`` every job named ``name`` (ours: the names are unique)."""
    subprocess.run(
        ["scancel", "--quiet", f"--name={name}"],
        capture_output=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
