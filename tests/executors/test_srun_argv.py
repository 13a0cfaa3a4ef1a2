"""The srun executor without Slurm: command lines and environments (pure), then the
executor driving fake ``srun``/``squeue``/``scancel`` scripts (stop and cleanup paths)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import pytest

from qcgpj_async import Jobs
from qcgpj_async.engine import Allocation, Launch, NodePart
from qcgpj_async.executors import (
    LaunchError,
    SrunExecutor,
    prepare_task,
    slurm_environment,
    srun_argv,
)
from qcgpj_async.executors._srun_argv import (
    ENV,
    hostfile_text,
    mpirun_argv,
    mpirun_environment,
    per_node_spec,
    rankfile_text,
    srun_environment,
    step_environment,
    stream_options,
)
from qcgpj_async.executors._task import Task

UNEVEN = Allocation((NodePart("n1", (0, 1, 2), None, 0), NodePart("n2", (3,), None, 1)))
EVEN = Allocation((NodePart("n3", (2, 3), None, 2), NodePart("n4", (0, 1), None, 3)))
ONE = Allocation((NodePart("n2", (1,), None, 1),))
PILOT_ENV = {
    "PATH": "/bin",
    "SLURM_JOB_ID": "77",
    "SLURM_JOB_NAME": "alloc",
    "SLURM_NTASKS_PER_NODE": "4",  # salloc --ntasks-per-node=4: must not shape our steps
    "SLURM_HOSTFILE": "/theirs",
    "SLURM_NTASKS": "8",
}


def task(alloc: Allocation = UNEVEN, base_env: dict[str, str] | None = None, **kw: object) -> Task:
    (spec,) = Jobs().add(name="j", **kw).jobs()
    return prepare_task(
        Launch(5, "j", None, spec, alloc),
        root_wd="/wd",
        base_env=PILOT_ENV if base_env is None else base_env,
        step_id="p.5",
    )


# == pure: per-node counts, files, environments ==================================


@pytest.mark.parametrize(
    ("counts", "spec"),
    [
        ([1], "1"),
        ([4, 4, 2], "4(x2),2"),
        ([3, 3], "3(x2)"),
        ([2, 3, 2], "2,3,2"),
        ([1, 2, 2, 2], "1,2(x3)"),
    ],
)
def test_per_node_counts_use_slurms_run_length_form(counts: list[int], spec: str) -> None:
    assert per_node_spec(counts) == spec


def test_hostfile_has_one_line_per_core_and_rankfile_one_rank_per_core() -> None:
    assert hostfile_text(UNEVEN) == "n1\nn1\nn1\nn2\n"
    assert (
        rankfile_text(UNEVEN)
        == "rank 0=n1 slot=0\nrank 1=n1 slot=1\nrank 2=n1 slot=2\nrank 3=n2 slot=3\n"
    )


def test_slurm_environment_describes_the_jobs_share() -> None:
    assert slurm_environment(UNEVEN, "/s/hf") == {
        "SLURM_NNODES": "2",
        "SLURM_NODELIST": "n1,n2",
        "SLURM_NPROCS": "4",
        "SLURM_NTASKS": "4",
        "SLURM_JOB_NODELIST": "n1,n2",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_CPUS_PER_NODE": "3,1",
        "SLURM_STEP_NODELIST": "n1,n2",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_STEP_TASKS_PER_NODE": "3,1",
        "SLURM_TASKS_PER_NODE": "3,1",
        "SLURM_HOSTFILE": "/s/hf",
    }


def test_ntasks_per_node_only_when_every_node_has_the_same_count() -> None:
    # srun rejects SLURM_NTASKS_PER_NODE=3,1 ("Invalid numeric value"), so a
    # job running srun itself must not get one.
    even = slurm_environment(EVEN)
    assert even["SLURM_NTASKS_PER_NODE"] == "2"
    assert even["SLURM_TASKS_PER_NODE"] == even["SLURM_JOB_CPUS_PER_NODE"] == "2(x2)"
    assert "SLURM_HOSTFILE" not in even
    assert slurm_environment(ONE)["SLURM_NTASKS_PER_NODE"] == "1"


def test_srun_environment_drops_the_pilots_step_shape_and_names_our_hostfile() -> None:
    t = task(exec="app", env={"MINE": "1"})
    env = srun_environment(t.env, "/s/hf")
    assert env["SLURM_HOSTFILE"] == "/s/hf"
    assert "SLURM_NTASKS_PER_NODE" not in env
    assert (env["SLURM_JOB_ID"], env["SLURM_NTASKS"], env["MINE"]) == ("77", "8", "1")
    assert env["QCG_PM_NTASKS"] == "4"
    assert t.env["SLURM_HOSTFILE"] == "/theirs"  # the task is left as it was
    assert "SLURM_HOSTFILE" not in srun_environment(t.env, None)


def test_step_environment_puts_the_allocations_name_back() -> None:
    env = step_environment(task(exec="app"), "/s/hf")
    assert env["SLURM_JOB_NAME"] == "alloc"  # -J renames it inside the step
    assert env["SLURM_NTASKS"] == "4"
    assert "SLURM_JOB_NAME" not in step_environment(
        task(base_env={"SLURM_JOB_ID": "1"}, exec="a"), None
    )


# == pure: srun command lines ==================================================


def test_default_model_is_one_process_on_the_first_node_with_its_cores() -> None:
    t = task(exec="app", args=["-x", "a b"])
    assert srun_argv(t, step_name="s1", step_env={"A": "1", "B": "x=y"}) == (
        "srun",
        "--exact",
        "--quiet",
        "--job-name=s1",
        "-N1",
        "-n1",
        "--cpus-per-task=3",
        "--nodelist=n1",
        "--input=none",
        "--output=none",
        "--error=none",
        ENV,
        "A=1",
        "B=x=y",
        "app",
        "-x",
        "a b",
    )


def test_threads_model_is_one_task_with_cpus_per_task() -> None:
    t = task(ONE, exec="omp", model="threads")
    argv = srun_argv(t, step_name="s", srun="/opt/slurm/bin/srun")
    assert argv == (
        "/opt/slurm/bin/srun",
        "--exact",
        "--quiet",
        "--job-name=s",
        "-N1",
        "-n1",
        "--cpus-per-task=1",
        "--nodelist=n2",
        "--input=none",
        "--output=none",
        "--error=none",
        "omp",
    )
    assert t.env["OMP_NUM_THREADS"] == "1"


def test_srunmpi_is_one_rank_per_core_placed_by_the_hostfile() -> None:
    t = task(script="echo $SLURM_PROCID", model="srunmpi")
    assert srun_argv(t, step_name="s") == (
        "srun",
        "--exact",
        "--quiet",
        "--job-name=s",
        "-N2",
        "-n4",
        "--cpus-per-task=1",
        "--distribution=arbitrary",
        "--input=none",
        "--output=none",
        "--error=none",
        "bash",
        "-c",
        "echo $SLURM_PROCID",
    )


def test_streams_are_opened_by_slurm_with_literal_names() -> None:
    # srun would expand %j and friends; a backslash anywhere keeps the name
    # literal (and is dropped from it), so one goes before the first %.
    t = task(exec="app", stdin="in", stdout="out.%j.%t", stderr="out.%j.%t", wd="w%")
    assert stream_options(t) == [
        "--input=/wd/w\\%/in",
        "--output=/wd/w\\%/out.%j.%t",
        "--error=/wd/w\\%/out.%j.%t",
    ]
    assert stream_options(task(exec="app", stderr="e")) == [
        "--input=none",
        "--output=none",
        "--error=/wd/e",
    ]
    with pytest.raises(ValueError, match="backslash"):
        stream_options(task(exec="app", stdout="a\\b"))


def test_executor_args_then_job_srun_args_come_after_ours() -> None:
    t = task(exec="app", model_opts={"srun_args": ["--mem-per-cpu=100", "--cpus-per-task=2"]})
    argv = srun_argv(t, step_name="s", extra_args=["--overlap"], step_env={"A": "1"})
    assert argv[11:] == ("--overlap", "--mem-per-cpu=100", "--cpus-per-task=2", ENV, "A=1", "app")


def test_a_program_named_like_an_assignment_is_not_taken_for_one() -> None:
    t = attrs.evolve(task(exec="x"), argv=("./a=b", "arg"))
    argv = srun_argv(t, step_name="s", step_env={"A": "1"})
    assert argv[-7:] == (ENV, "A=1", "/bin/sh", "-c", 'exec "$0" "$@"', "./a=b", "arg")
    assert srun_argv(t, step_name="s")[-2:] == ("./a=b", "arg")  # no env, no wrapper


def test_models_srun_does_not_start() -> None:
    with pytest.raises(ValueError, match="mpirun"):
        srun_argv(task(exec="a", model="openmpi"), step_name="s")
    with pytest.raises(ValueError, match="unknown model 'pvm'"):
        srun_argv(attrs.evolve(task(exec="a"), model="pvm"), step_name="s")


# == pure: mpirun models =======================================================


def test_openmpi_runs_mpirun_with_a_rankfile() -> None:
    t = task(
        exec="app",
        args=["1"],
        model="openmpi",
        model_opts={"mpirun": "/opt/ompi/bin/mpirun", "mpirun_args": ["--bind-to", "core"]},
    )
    assert mpirun_argv(t, "/s/rf") == (
        "/opt/ompi/bin/mpirun",
        "-n",
        "4",
        "--rankfile",
        "/s/rf",
        "--bind-to",
        "core",
        "app",
        "1",
    )
    with pytest.raises(ValueError, match="rankfile"):
        mpirun_argv(t)


def test_intelmpi_runs_one_section_per_node_with_its_cores() -> None:
    t = task(exec="app", model="intelmpi", model_opts={"mpirun_args": ["-v"]})
    assert mpirun_argv(t) == (
        "mpirun",
        "-v",
        "-host",
        "n1",
        "-n",
        "3",
        "-env",
        "I_MPI_PIN_PROCESSOR_LIST",
        "0,1,2",
        "app",
        ":",
        "-host",
        "n2",
        "-n",
        "1",
        "-env",
        "I_MPI_PIN_PROCESSOR_LIST",
        "3",
        "app",
    )
    with pytest.raises(ValueError):
        mpirun_argv(task(exec="app", model="srunmpi"))


def test_mpirun_environment_shows_the_share_and_lets_daemon_steps_overlap() -> None:
    env = mpirun_environment(task(exec="app", model="openmpi"), "step-9")
    assert env["SLURM_JOB_NODELIST"] == "n1,n2"
    assert env["SLURM_TASKS_PER_NODE"] == "3,1"
    # None, not even the pilot's: with one, Open MPI 4.1's mpirun hangs.
    assert "SLURM_HOSTFILE" not in env
    assert "SLURM_NTASKS_PER_NODE" not in env  # the pilot's 4 is gone, 3,1 is not uniform
    assert env["OMPI_MCA_plm_slurm_args"] == "--overlap --job-name=step-9"
    env = mpirun_environment(task(exec="app", model="intelmpi"), "s")
    assert env["I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS"] == "--overlap --job-name=s"
    mine = task(exec="app", model="openmpi", env={"OMPI_MCA_plm_slurm_args": "--mine"})
    assert mpirun_environment(mine, "s")["OMPI_MCA_plm_slurm_args"] == "--mine"


# == the executor with fake Slurm commands =====================================

# A fake srun: records its argv and pid, lists its step beside another one
# (unless FAKE_DIR/no-step exists), then runs in the way FAKE_SRUN says.
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_DIR/srun.argv"
env > "$FAKE_DIR/srun.env"
echo $$ > "$FAKE_DIR/srun.pid"
for a in "$@"; do case "$a" in --job-name=*) name="${a#--job-name=}" ;; esac; done
[ -e "$FAKE_DIR/no-step" ] || printf '77.2 %s\\n77.3 %s\\n' "${name}9" "$name" > "$FAKE_DIR/steps"
case "$FAKE_SRUN" in
  exit3) rm -f "$FAKE_DIR/steps"; exit 3 ;;
  fail) rm -f "$FAKE_DIR/steps"; echo "srun: error: Unable to create step" >&2; exit 1 ;;
  # like srun: SIGTERM kills the tasks and srun exits 137; a TERM delivered
  # by scancel ends the tasks gracefully and srun exits 143 (see fake scancel).
  sleep) trap 'exit 137' TERM; trap 'exit 143' USR1; touch "$FAKE_DIR/ready"; sleep 60 & wait; wait ;;
  # the same, saying what ended the task as srun does
  sleepsays) trap 'echo "srun: error: n1: task 0: Killed" >&2; exit 137' TERM
    trap 'echo "srun: error: n1: task 0: Terminated" >&2; exit 143' USR1
    touch "$FAKE_DIR/ready"; sleep 60 & wait; wait ;;
  segv) rm -f "$FAKE_DIR/steps"; echo "srun: error: n2: task 0: Segmentation fault (core dumped)" >&2
    exit 139 ;;
  exit139) rm -f "$FAKE_DIR/steps"; echo "srun: error: n2: task 0: Exited with exit code 139" >&2
    exit 139 ;;
  selfkill) kill -KILL $$ ;;
esac
"""
# A fake squeue: every step listed in FAKE_DIR/steps, whatever the options say
# (the real one ignores --name with --steps).
FAKE_SQUEUE = """#!/bin/bash
echo "$@" >> "$FAKE_DIR/squeue.log"
[ -e "$FAKE_DIR/steps" ] && cat "$FAKE_DIR/steps"
exit 0
"""
# A fake scancel: records its arguments; TERM reaches the fake srun's tasks.
FAKE_SCANCEL = """#!/bin/bash
echo "$@" >> "$FAKE_DIR/scancel.log"
case "$*" in *--signal=TERM*) kill -USR1 "$(cat "$FAKE_DIR/srun.pid")" ;; esac
exit 225
"""
T = 30


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))  # squeue and scancel get the pilot's env
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("squeue", FAKE_SQUEUE), ("scancel", FAKE_SCANCEL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return tmp_path


@pytest.fixture
def executors(fake: Path) -> Iterator[list[SrunExecutor]]:
    """Executors on the fake srun; a failed test leaves no fake srun running."""
    made: list[SrunExecutor] = []
    yield made
    for ex in made:
        for proc in ex._live.values():
            proc._proc.kill()  # SIGKILL to a fake srun's group, never reaped yet: still ours


def executor(fake: Path, made: list[SrunExecutor]) -> SrunExecutor:
    ex = SrunExecutor(str(fake), srun=str(fake / "bin" / "srun"))
    made.append(ex)
    return ex


def fake_task(fake: Path, mode: str, **kw: object) -> Task:
    env = {**PILOT_ENV, "PATH": os.environ["PATH"], "FAKE_DIR": str(fake), "FAKE_SRUN": mode}
    (spec,) = Jobs().add(name="j", **kw).jobs()
    return prepare_task(
        Launch(5, "j", None, spec, UNEVEN), root_wd=str(fake / "wd"), base_env=env, step_id="p.5"
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def ready(fake: Path) -> None:
    with anyio.fail_after(T):
        while not (fake / "ready").exists():
            await anyio.sleep(0.01)  # a file another process writes


pytestmark = pytest.mark.anyio


async def test_start_runs_srun_with_the_step_environment_and_cleans_up(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "exit3", exec="app", stdout="out"))
    assert ex.running == 1
    with anyio.fail_after(T):
        assert await proc.wait() == 3
    argv = lines(fake / "srun.argv")
    step = argv[2].removeprefix("--job-name=")
    assert step.startswith(ex.prefix) and step.endswith("5")
    hostfile = str(fake / f".{step}.hostfile")
    assert argv[argv.index(ENV) + 1 :][-1] == "app"
    assert f"SLURM_HOSTFILE={hostfile}" in argv and "SLURM_TASKS_PER_NODE=3,1" in argv
    env = dict(line.split("=", 1) for line in lines(fake / "srun.env") if "=" in line)
    assert env["SLURM_HOSTFILE"] == hostfile
    assert "SLURM_NTASKS_PER_NODE" not in env
    assert (fake / "wd").is_dir() and (fake / "wd" / "out").exists()
    assert not os.path.exists(hostfile)  # removed with the process
    assert ex.running == 0
    await ex.aclose()
    assert lines(fake / "scancel.log") == []  # nothing of ours listed


async def test_srun_messages_are_kept_only_when_srun_failed_unasked(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "fail", exec="app", stderr="err"))
    with anyio.fail_after(T):
        assert await proc.wait() == 1
    (log,) = fake.glob(".qcgpj-*.srun.log")
    assert log.read_text() == "srun: error: Unable to create step\n"
    assert (fake / "wd" / "err").read_text() == ""  # not in the job's stderr
    assert [p.name for p in fake.glob(".qcgpj-*")] == [log.name]  # the hostfile is gone


async def test_outside_an_allocation_start_fails_clearly(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    t = attrs.evolve(fake_task(fake, "exit3", exec="app"), env={"PATH": "/bin"})
    with pytest.raises(LaunchError, match="SLURM_JOB_ID is not set"):
        await ex.start(t)
    with pytest.raises(LaunchError, match="not found"):
        await SrunExecutor(str(fake), srun=str(fake / "nosrun")).start(
            fake_task(fake, "x", exec="a")
        )
    with pytest.raises(LaunchError, match="cannot open stdin"):
        await ex.start(fake_task(fake, "exit3", exec="app", stdin="nothere"))
    with pytest.raises(LaunchError, match="backslash"):
        await ex.start(fake_task(fake, "exit3", exec="app", stdout="a\\b"))
    assert list(fake.glob(".qcgpj-*")) == []  # no hostfile left behind


async def test_terminate_scancels_the_step_with_term(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "sleep", exec="app"))
    await ready(fake)
    proc.terminate()
    with anyio.fail_after(T):
        assert await proc.wait() == 143
    # Only our step, not 77.2 (whose name merely starts like ours).
    assert lines(fake / "scancel.log") == ["--quiet --signal=TERM 77.3"]
    assert lines(fake / "squeue.log") == ["--noheader --steps --jobs=77 --format=%i %j"]


async def test_terminate_before_the_step_exists_stops_srun(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    (fake / "no-step").touch()
    ex = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "sleep", exec="app"))
    await ready(fake)
    proc.terminate()
    with anyio.fail_after(T):
        assert await proc.wait() == 137  # SIGTERM to srun
    assert lines(fake / "scancel.log") == []


async def test_kill_sigterms_srun_and_never_needs_the_backstop(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "sleep", exec="app"))
    await ready(fake)
    async with anyio.create_task_group() as tg:
        codes: list[int] = []

        async def waiter() -> None:
            codes.append(await proc.wait())

        tg.start_soon(waiter)
        proc.kill()
    assert codes == [137]
    assert lines(fake / "scancel.log") == []


async def test_srun_killed_behind_our_back_has_its_step_cancelled(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "selfkill", exec="app"))
    with anyio.fail_after(T):
        assert await proc.wait() == -9
    assert lines(fake / "scancel.log") == ["--quiet 77.3"]


async def test_aclose_cancels_only_steps_of_this_executor(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    other = executor(fake, executors)
    proc = await ex.start(fake_task(fake, "exit3", exec="app"))
    with anyio.fail_after(T):
        await proc.wait()
    (fake / "steps").write_text(f"77.1 {ex.prefix}1\n77.2 {other.prefix}1\n77.4 interactive\n")
    await ex.aclose()
    assert lines(fake / "scancel.log") == ["--quiet 77.1"]
    await other.aclose()  # it started nothing: it asks Slurm nothing
    assert lines(fake / "scancel.log") == ["--quiet 77.1"]


async def test_a_task_killed_by_a_signal_ends_with_minus_the_signal(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    for mode, code, said in (
        ("segv", -11, "Segmentation fault (core dumped)"),
        ("exit139", 139, "Exited with exit code 139"),
    ):
        proc = await ex.start(fake_task(fake, mode, exec="app"))
        with anyio.fail_after(T):
            assert await proc.wait() == code, mode
        # Failed unasked: srun's messages are kept, the hostfile is not.
        (log,) = fake.glob(".qcgpj-*")
        assert log.name.endswith(".srun.log")
        assert log.read_text() == f"srun: error: n2: task 0: {said}\n"
        log.unlink()
    assert lines(fake / "scancel.log") == []  # srun ended by itself: nothing to cancel


async def test_terminate_and_kill_report_the_signal_that_ended_the_task(
    fake: Path, executors: list[SrunExecutor]
) -> None:
    ex = executor(fake, executors)
    codes = []
    for stop in ("terminate", "kill"):
        proc = await ex.start(fake_task(fake, "sleepsays", exec="app"))
        await ready(fake)
        (fake / "ready").unlink()
        getattr(proc, stop)()
        with anyio.fail_after(T):
            codes.append(await proc.wait())
    assert codes == [-15, -9]
    assert list(fake.glob(".qcgpj-*")) == []  # asked to stop: messages read, then removed
