"""Where a pilot's GPUs come from: declared, the host's, the Slurm allocation's. Fake probes."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from qcgpj_async import JobDescriptionError
from qcgpj_async.engine import GpuSetup
from qcgpj_async.runtime._gpus import gpus_of, host_gpus, parse_scontrol_gres, slurm_gpus

NVIDIA_L = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0a1b)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2c3d)
"""
ROCM = """============================ ROCm System Management Interface ============================
=========================================== ID ===========================================
GPU[0]		: Device Name: 		Instinct MI250X
GPU[0]		: Device ID: 		0x740c
GPU[1]		: Device Name: 		Instinct MI250X
================================== End of ROCm SMI Log ===================================
"""
SCONTROL = """JobId=42 JobName=alloc
   NumNodes=3 NumCPUs=6 NumTasks=3 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=6,node=3,billing=6,gres/gpu=5
     Nodes=c[1-2] CPU_IDs=0-1 Mem=0 GRES=gpu:2(IDX:0-1)
     Nodes=c3 CPU_IDs=0-1 Mem=0 GRES=gpu:a100:1(IDX:3),nic:1(IDX:0)
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
"""


class Fake:
    """A runner answering by program name; records what it ran."""

    def __init__(self, **out: str) -> None:
        self.out = out
        self.ran: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.ran.append(tuple(argv))
        prog = argv[0].rsplit("/", 1)[-1].replace("-", "_")
        if prog == "scontrol" and argv[1] == "show" and argv[2] == "hostnames":
            hosts = {"c[1-2]": "c1\nc2\n", "c3": "c3\n"}[argv[3]]
            return subprocess.CompletedProcess(argv, 0, hosts, "")
        if prog not in self.out:
            raise FileNotFoundError(prog)
        return subprocess.CompletedProcess(argv, 0, self.out[prog], "")


def which_all(name: str) -> str:
    return f"/usr/bin/{name}"


def test_host_variables_win_and_empty_means_none() -> None:
    fake = Fake(nvidia_smi=NVIDIA_L)
    assert host_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, fake, which_all) == (
        ("2", "3"),
        GpuSetup(source="CUDA_VISIBLE_DEVICES"),
    )
    assert host_gpus({"CUDA_VISIBLE_DEVICES": ""}, fake, which_all) == ((), None)
    assert host_gpus({"ROCR_VISIBLE_DEVICES": "1"}, fake, which_all)[1] == GpuSetup(
        "amd", source="ROCR_VISIBLE_DEVICES"
    )
    assert fake.ran == []  # nothing probed where the environment says


def test_host_probes_nvidia_smi_then_rocm_smi_only_where_installed() -> None:
    assert host_gpus({}, Fake(nvidia_smi=NVIDIA_L), which_all) == (
        ("0", "1"),
        GpuSetup(source="nvidia-smi"),
    )
    amd = Fake(rocm_smi=ROCM)
    assert host_gpus({}, amd, which_all) == (("0", "1"), GpuSetup("amd", source="rocm-smi"))
    nothing = Fake()
    assert host_gpus({}, nothing, lambda name: None) == ((), None)
    assert nothing.ran == []


def test_host_probe_that_hangs_counts_as_none() -> None:
    def hangs(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(list(argv), 10.0)

    assert host_gpus({}, hangs, which_all) == ((), None)


def test_scontrol_gres_per_node() -> None:
    assert parse_scontrol_gres(SCONTROL, Fake()) == {
        "c1": ("0", "1"),
        "c2": ("0", "1"),
        "c3": ("3",),
    }


def test_slurm_gpus_from_scontrol_then_variables() -> None:
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "0,1"}
    found, setup = slurm_gpus(env, ["c1", "c2", "c3"], Fake(scontrol=SCONTROL))
    assert found == {"c1": ("0", "1"), "c2": ("0", "1"), "c3": ("3",)}
    assert setup == GpuSetup(gres=True, source="slurm")
    # no usable scontrol: SLURM_JOB_GPUS for every node
    found, setup = slurm_gpus(env, ["c1", "c2"], Fake())
    assert found == {"c1": ("0", "1"), "c2": ("0", "1")} and setup is not None and setup.gres
    # no GRES at all: CUDA_VISIBLE_DEVICES of the allocation, not bound by Slurm
    found, setup = slurm_gpus(
        {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0"}, ["c1"], Fake(scontrol="")
    )
    assert found == {"c1": ("0",)} and setup == GpuSetup(source="CUDA_VISIBLE_DEVICES")
    assert slurm_gpus({"SLURM_JOB_ID": "42"}, ["c1"], Fake(scontrol="")) == ({}, None)


def test_declared_gpus() -> None:
    assert gpus_of("0,1", ["a", "b"]) == ({"a": ("0", "1"), "b": ("0", "1")}, GpuSetup())
    assert gpus_of(2, ["a"])[0] == {"a": ("0", "1")}
    assert gpus_of({"b": "3"}, ["a", "b"])[0] == {"b": ("3",)}
    assert gpus_of("none", ["a"]) == ({}, None)
    assert gpus_of((), ["a"]) == ({}, None)
    # the nodes spec's, completed by gpus= for the others
    assert gpus_of("5", ["a", "b"], declared={"a": ("0",)})[0] == {"a": ("0",), "b": ("5",)}
    assert gpus_of(None, ["a"], vendor="amd", declared={"a": ("0",)})[1] == GpuSetup("amd")
    with pytest.raises(ValueError, match="gpu_vendor 'intel'"):
        gpus_of("0", ["a"], vendor="intel")
    with pytest.raises(ValueError, match="no such node: z"):
        gpus_of({"z": "0"}, ["a"])
    with pytest.raises(JobDescriptionError, match="given twice"):
        gpus_of("0,0", ["a"])


def test_nothing_declared_nothing_probed_for_nodes_given_by_hand() -> None:
    fake = Fake(nvidia_smi=NVIDIA_L)
    assert gpus_of(None, ["a"], env={"CUDA_VISIBLE_DEVICES": "0"}, runner=fake) == ({}, None)
    assert gpus_of(None, ["h"], discover="host", env={"CUDA_VISIBLE_DEVICES": "0"}) == (
        {"h": ("0",)},
        GpuSetup(source="CUDA_VISIBLE_DEVICES"),
    )
