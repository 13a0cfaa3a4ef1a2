"""A job's GPU variables and its srun step's GPU options: pure, no GPU needed."""

from __future__ import annotations

import subprocess

from qcgpj_async import Jobs
from qcgpj_async.engine import Allocation, GpuSetup, Launch, NodePart
from qcgpj_async.executors import prepare_task, srun_argv
from qcgpj_async.executors._srun_argv import (
    ENV,
    gpu_options,
    mpirun_argv,
    node_gpu_prelude,
    step_environment,
)
from qcgpj_async.executors._task import Task

GPU2 = {"gpu": 2}
TWO = Allocation((NodePart("n1", (0, 1), GPU2, 0, ("1", "3")),))
MULTI = Allocation(
    (NodePart("n1", (0,), GPU2, 0, ("0", "1")), NodePart("n2", (0,), GPU2, 1, ("2", "3")))
)
CPU = Allocation((NodePart("n1", (2,), None, 0),))


def task(alloc: Allocation, gpu: GpuSetup | None, **kw: object) -> Task:
    (spec,) = Jobs().add(name="j", exec="/bin/true", **kw).jobs()
    return prepare_task(
        Launch(5, "j", None, spec, alloc),
        root_wd="/wd",
        base_env={"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1,2,3"},
        step_id="p.5",
        gpu=gpu,
    )


def test_nvidia_job_sees_exactly_its_devices() -> None:
    t = task(TWO, GpuSetup())
    assert t.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert t.env["QCG_PM_GPUS"] == "1,3"
    assert "ROCR_VISIBLE_DEVICES" not in t.env
    assert t.env_extra is not None and t.env_extra["CUDA_VISIBLE_DEVICES"] == "1,3"


def test_cpu_job_on_a_gpu_pilot_sees_none() -> None:
    t = task(CPU, GpuSetup())
    assert t.env["CUDA_VISIBLE_DEVICES"] == "" and t.env["QCG_PM_GPUS"] == ""


def test_pilot_without_gpus_sets_nothing() -> None:
    t = task(CPU, None)
    assert t.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # the pilot's own, untouched
    assert "QCG_PM_GPUS" not in t.env


def test_amd_job_gets_rocr_ids_and_hip_ordinals() -> None:
    t = task(TWO, GpuSetup("amd"))
    assert t.env["ROCR_VISIBLE_DEVICES"] == "1,3"
    assert t.env["HIP_VISIBLE_DEVICES"] == "0,1"
    assert t.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert t.env["QCG_PM_GPUS"] == "1,3"


def test_the_jobs_own_env_comes_last() -> None:
    t = task(TWO, GpuSetup(), env={"CUDA_VISIBLE_DEVICES": "3"})
    assert t.env["CUDA_VISIBLE_DEVICES"] == "3"


def test_srun_gres_options() -> None:
    assert gpu_options(task(TWO, GpuSetup(gres=True))) == ["--gres=gpu:2"]
    assert gpu_options(task(CPU, GpuSetup(gres=True))) == ["--gres=none"]
    assert gpu_options(task(TWO, GpuSetup())) == []  # declared GPUs: not Slurm's to bind
    assert gpu_options(task(CPU, None)) == []
    t = task(MULTI, GpuSetup(gres=True), model="srunmpi")
    argv = srun_argv(t, step_name="s", step_env=step_environment(t, None))
    assert "--gres=gpu:2" in argv and argv.index("--gres=gpu:2") < argv.index(ENV)
    # Slurm set each node's devices: QCG_PM_GPUS is made to name them
    prelude = node_gpu_prelude(t)
    assert prelude is not None and argv[argv.index("/bin/sh") + 2] == prelude
    out = subprocess.run(
        ["/bin/sh", "-c", prelude, "/bin/sh", "-c", 'echo "$QCG_PM_GPUS"'],
        env={"CUDA_VISIBLE_DEVICES": "1", "QCG_PM_GPUS": "0,1", "PATH": "/bin:/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "1\n"
    # a step without GPUs: Slurm unsets the variables (--gres=none), the wrapper empties them
    cpu = task(CPU, GpuSetup(gres=True))
    argv = srun_argv(cpu, step_name="s", step_env=step_environment(cpu, None))
    env_part = argv[argv.index(ENV) :]
    assert "CUDA_VISIBLE_DEVICES=" in env_part and "QCG_PM_GPUS=" in env_part
    assert node_gpu_prelude(cpu) is None


def test_declared_gpus_of_a_multi_node_step_are_set_per_node() -> None:
    t = task(MULTI, GpuSetup(), model="srunmpi")
    prelude = node_gpu_prelude(t)
    assert prelude is not None
    argv = srun_argv(t, step_name="s", step_env=step_environment(t, None))
    i = argv.index("/bin/sh")
    assert argv[i : i + 3] == ("/bin/sh", "-c", prelude) and argv[i + 3 :] == ("/bin/true",)
    # what each node's shell exports
    for node, ids in (("n1", "0,1"), ("n2", "2,3")):
        out = subprocess.run(
            [
                "/bin/sh",
                "-c",
                prelude,
                "/bin/sh",
                "-c",
                'echo "$CUDA_VISIBLE_DEVICES $QCG_PM_GPUS"',
            ],
            env={"SLURMD_NODENAME": node, "PATH": "/bin:/usr/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.split() == [ids, ids]
    assert node_gpu_prelude(task(MULTI, GpuSetup())) is None  # default model: one node


def test_mpirun_ranks_get_the_gpus_of_their_own_node() -> None:
    # openmpi: every rank gets mpirun's environment (the first node's devices); a shell
    # in front of the job exports its own node's
    t = task(MULTI, GpuSetup(), model="openmpi")
    argv = mpirun_argv(t, "rankfile")
    i = argv.index("/bin/sh")
    assert argv[:i] == ("mpirun", "-n", "2", "--rankfile", "rankfile")
    assert argv[i + 1] == "-c" and argv[i + 3 :] == ("/bin/true",)
    for node, ids in (("n1", "0,1"), ("n2", "2,3")):
        out = subprocess.run(
            ["/bin/sh", "-c", argv[i + 2], "/bin/sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"'],
            env={"SLURMD_NODENAME": node, "CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout == f"{ids}\n"
    # the same devices on every node, or no GPU: nothing in front
    same = Allocation(
        (NodePart("n1", (0,), GPU2, 0, ("0", "1")), NodePart("n2", (0,), GPU2, 1, ("0", "1")))
    )
    assert "/bin/sh" not in mpirun_argv(task(same, GpuSetup(), model="openmpi"), "rf")
    assert "/bin/sh" not in mpirun_argv(task(MULTI, None, model="openmpi"), "rf")
    # intelmpi: each host's section sets its node's devices
    argv = mpirun_argv(task(MULTI, GpuSetup(), model="intelmpi"))
    sections = " ".join(argv).split(" : ")
    assert "-env CUDA_VISIBLE_DEVICES 0,1" in sections[0] and "-host n1" in sections[0]
    assert "-env CUDA_VISIBLE_DEVICES 2,3" in sections[1] and "-host n2" in sections[1]
    assert "-env QCG_PM_GPUS 2,3" in sections[1]
