"""GPU flags of the command line: ``--gpus``, GPU parts of ``--nodes``, ``--gpu-vendor``."""

from __future__ import annotations

import json
from pathlib import Path

from test_batch import batch, job, lines, qcgpj, service_dir

SEE = 'echo "${CUDA_VISIBLE_DEVICES-unset}/${ROCR_VISIBLE_DEVICES-unset}" > {name}.out'


def gpu_job(name: str, gpus: int) -> dict[str, object]:
    return job(name, SEE.replace("{name}", name), resources={"nodeCrs": {"gpu": gpus}})


def test_gpus_flag_gives_each_job_its_devices(tmp_path: Path) -> None:
    f = batch(
        tmp_path / "r.json", gpu_job("a", 2), gpu_job("b", 1), job("c", SEE.replace("{name}", "c"))
    )
    proc = qcgpj(
        "--file-path", f, "--nodes", "4", "--gpus", "0,1,2", "--wd", str(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    seen = {n: (tmp_path / f"{n}.out").read_text().strip() for n in "abc"}
    assert seen == {"a": "0,1/unset", "b": "2/unset", "c": "/unset"}
    status = json.loads((service_dir(tmp_path) / "final_status.json").read_text())
    assert (status["Resources"]["TotalGpus"], status["Resources"]["FreeGpus"]) == (3, 3)
    assert (
        "4 cores, 3 GPUs (declared, nvidia; n0: 0,1,2), wd"
        in (service_dir(tmp_path) / "service.log").read_text()
    )


def test_gpus_per_node_and_amd_and_too_many(tmp_path: Path) -> None:
    f = batch(tmp_path / "r.json", gpu_job("a", 2), gpu_job("big", 3))
    proc = qcgpj(
        "--file-path",
        f,
        "--nodes",
        "n1:2:gpu=4+6",
        "--gpu-vendor",
        "amd",
        "--wd",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert (tmp_path / "a.out").read_text().strip() == "0,1/4,6"
    assert (
        "qcgpj-async:   FAILED big: Not enough resources for job big: needs 1 core with 3 GPUs"
        in (proc.stderr)
    ), lines(proc)
