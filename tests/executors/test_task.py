"""Task preparation (argv, environment, paths, variables) and the local argv: pure, no processes."""

from __future__ import annotations

import pytest

from qcgpj_async import Jobs
from qcgpj_async.engine import Allocation, Launch, NodePart
from qcgpj_async.executors import local_argv, prepare_task, qcg_environment

ALLOC = Allocation((NodePart("n1", (0, 1), None, 0), NodePart("n2", (3,), None, 1)))


def launch(index: int | None = None, **kw: object) -> Launch:
    (spec,) = Jobs().add(name="j", **kw).jobs()
    return Launch(7, "j", index, spec, ALLOC)


def prep(index: int | None = None, submit_vars: dict[str, str] | None = None, **kw: object):
    return prepare_task(
        launch(index, **kw),
        root_wd="/root/wd",
        base_env={"PATH": "/bin", "KEEP": "1"},
        step_id="pilot.7",
        submit_vars=submit_vars,
    )


def test_exec_and_args_start_directly_with_variables() -> None:
    t = prep(
        2,
        exec="/bin/echo",
        args=[
            "${it}",
            "${itval}",
            "${ncores}",
            "${nnodes}",
            "${nlist}",
            "${root_wd}",
            "${jname}",
            "${x}",
            "$$",
        ],
        iteration=["a", "b", "c"],
    )
    assert t.argv == ("/bin/echo", "2", "c", "3", "2", "n1,n2", "/root/wd", "j", "${x}", "$$")
    assert t.label == "j:2"


def test_script_runs_under_bash_c_not_a_login_shell() -> None:
    t = prep(1, script="echo ${it} $$ $HOME", iteration=3)
    assert t.argv == ("bash", "-c", "echo 1 $$ $HOME")
    assert prep(script="echo ${it}.").argv[2] == "echo ."  # a plain job: ${it} is empty


def test_modules_and_venv_source_profile_then_load_then_activate() -> None:
    t = prep(exec="python3", args=["-c", "print(1)"], modules=["gcc/12", "mpi"], venv="/opt/v")
    assert t.argv[:2] == ("bash", "-c")
    lines = t.argv[2].splitlines()
    assert lines[0].startswith("source /etc/profile")
    assert lines[1] == "module load gcc/12 mpi"
    assert lines[2] == "source /opt/v/bin/activate"
    assert lines[3] == "exec python3 -c 'print(1)'"


def test_environment_has_the_qcg_set_and_the_job_env() -> None:
    t = prep(exec="x", env={"A": "${ncores}", "KEEP": "2"})
    env = t.env
    assert env["QCG_PM_NNODES"] == "2"
    assert env["QCG_PM_NODELIST"] == "n1,n2"
    assert env["QCG_PM_NPROCS"] == env["QCG_PM_NTASKS"] == "3"
    assert env["QCG_PM_TASKS_PER_NODE"] == "2,1"
    assert env["QCG_PM_STEP_ID"] == "pilot.7"
    assert (env["A"], env["KEEP"], env["PATH"]) == ("3", "2", "/bin")
    assert "OMP_NUM_THREADS" not in env


def test_threads_model_sets_omp_num_threads() -> None:
    assert prep(exec="x", model="threads").env["OMP_NUM_THREADS"] == "3"


def test_paths_are_relative_to_wd_which_is_relative_to_root() -> None:
    t = prep(
        1, exec="x", wd="runs/${it}", stdin="in", stdout="out.${it}", stderr="/abs/err", iteration=2
    )
    assert t.cwd == "/root/wd/runs/1"
    assert (t.stdin, t.stdout, t.stderr) == (
        "/root/wd/runs/1/in",
        "/root/wd/runs/1/out.1",
        "/abs/err",
    )
    t = prep(exec="x")
    assert (t.cwd, t.stdin, t.stdout, t.stderr) == ("/root/wd", None, None, None)


def test_submit_variables_are_substituted_at_launch() -> None:
    t = prep(
        exec="echo",
        args=["${rcnt}", "${uniq}", "${sname}"],
        submit_vars={"rcnt": "4", "uniq": "u", "sname": "local"},
    )
    assert t.argv == ("echo", "4", "u", "local")


def test_local_argv_runs_mpi_models_through_mpirun(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a machine with MPI installed (without, the program runs once: tests/compat).
    monkeypatch.setattr("qcgpj_async.executors.local.shutil.which", lambda *a, **k: "/x/mpirun")
    t = prep(
        exec="app",
        args=["-v"],
        model="openmpi",
        model_opts={"mpirun": "/opt/mpirun", "mpirun_args": ["--bind-to", "none"]},
    )
    assert local_argv(t, "/tmp/hf") == (
        "/opt/mpirun",
        "-n",
        "3",
        "--hostfile",
        "/tmp/hf",
        "--bind-to",
        "none",
        "app",
        "-v",
    )
    t = prep(exec="app", model="intelmpi")
    assert local_argv(t, "/tmp/hf") == ("mpirun", "-n", "3", "-machinefile", "/tmp/hf", "app")
    t = prep(exec="app", model="srunmpi")
    assert local_argv(t) == ("mpirun", "-n", "3", "app")
    assert local_argv(prep(exec="app")) == ("app",)


ONE = Allocation((NodePart("n2", (5,), None, 1),))


@pytest.mark.parametrize(
    "kw",
    [
        {"exec": "/bin/true"},
        {"exec": "app", "args": ["-v", "a b"], "wd": "w", "stdout": "o", "stderr": "/e"},
        {"exec": "app", "modules": ["gcc/12"], "venv": "/opt/v", "env": {"A": "1"}},
        {"script": "echo hi", "model": "threads", "model_opts": {"srun_args": ["-v"]}},
        {"exec": "app", "args": ["${it}"], "iteration": 3},
        {"exec": "app", "wd": "w.${it}", "stdin": "in", "iteration": 3},
        {"exec": "app", "env": {"A": "${ncores}", "QCG_PM_NPROCS": "9"}},
        {"script": "echo ${jname}", "modules": ["m/${rcnt}"]},
    ],
)
def test_the_cache_gives_every_iteration_the_task_made_without_it(kw: dict[str, object]) -> None:
    (spec,) = Jobs().add(name="j", **kw).jobs()
    cache: dict = {}
    for run_id, index, alloc in [(7, 0, ALLOC), (8, 1, ONE), (9, 2, ALLOC)]:
        args = {"root_wd": "/r", "base_env": {"PATH": "/bin"}, "step_id": f"p.{run_id}"}
        index = index if spec.iteration is not None else None
        one = Launch(run_id, "j", index, spec, alloc)
        made, cached = prepare_task(one, **args), prepare_task(one, **args, cache=cache)
        assert cached == made
        assert dict(cached.env) == dict(made.env) and list(cached.env) == list(made.env)
    assert next(iter(cache.values()))[0] is spec.execution


def test_the_cache_follows_the_root_wd() -> None:
    (spec,) = Jobs().add(name="j", exec="x", wd="w").jobs()
    cache: dict = {}
    for root in ("/a", "/b"):
        t = prepare_task(
            Launch(1, "j", None, spec, ONE), root_wd=root, base_env={}, step_id="p", cache=cache
        )
        assert t.cwd == f"{root}/w"


def test_one_node_jobs_get_the_qcg_variables() -> None:
    assert qcg_environment(Allocation((NodePart("n9", (1, 2), None, 0),)), "s") == {
        "QCG_PM_NNODES": "1",
        "QCG_PM_NODELIST": "n9",
        "QCG_PM_NPROCS": "2",
        "QCG_PM_NTASKS": "2",
        "QCG_PM_STEP_ID": "s",
        "QCG_PM_TASKS_PER_NODE": "2",
    }
