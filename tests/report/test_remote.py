"""``qcgpj-async status ADDRESS``: a --net service seen through its ZMQ interface."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq", reason="status of an address needs pyzmq (the [zmq] extra)")

QCGPJ = (sys.executable, "-m", "qcgpj_async")
T = 60


def test_status_of_a_running_net_service(tmp_path: Path) -> None:
    (tmp_path / "gate").touch()
    jobs = [
        {"name": "long", "execution": {"script": "while [ -e gate ]; do sleep 0.05; done"}},
        {"name": "bad", "execution": {"script": "exit 3"}},
        {"name": "it", "execution": {"script": "true"}, "iteration": {"stop": 3}},
    ]
    reqs = [
        {"request": "submit", "jobs": jobs},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    (tmp_path / "r.json").write_text(json.dumps(reqs))
    service = subprocess.Popen(
        [*QCGPJ, "--net", "--file-path", "r.json", "--wd", ".", "--nodes", "4"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + T
        while not list(tmp_path.glob(".qcgpjm-service-*/address")):
            assert service.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (addr_file,) = tmp_path.glob(".qcgpjm-service-*/address")
        address = addr_file.read_text().strip()
        while True:  # until "bad" and the iterations have ended; "long" waits on the gate
            out = subprocess.run(
                [*QCGPJ, "status", address], capture_output=True, text=True, timeout=T
            )
            assert out.returncode == 0, out.stderr
            if "1 failed, 1 executing, 0 queued" in out.stdout:
                break
            assert time.monotonic() < deadline, out.stdout
            time.sleep(0.1)
        text = out.stdout
        assert text.startswith(f"pilot {addr_file.parent.name.removeprefix('.qcgpjm-service-')} ")
        assert f"at {address}; up " in text
        assert "  3 jobs: 1 finished, 1 failed, 1 executing, 0 queued" in text
        assert "running (1):\n  long " in text
        assert "not succeeded so far: 1\n  FAILED   bad  exit code 3" in text
    finally:
        (tmp_path / "gate").unlink()
        assert service.wait(T) == 1  # a job failed
    # The service is gone: one line, exit 1, no traceback.
    from qcgpj_async.report import _remote

    gone = subprocess.run(
        [sys.executable, "-c", "import sys; from qcgpj_async.report import _remote; "
         "_remote.TIMEOUT = 0.5; sys.exit(_remote.watch_remote(sys.argv[1], 0))", address],
        capture_output=True, text=True, timeout=T,
    )  # fmt: skip
    assert gone.returncode == 1
    assert gone.stderr == f"qcgpj-async status: {address}: no answer within 0.5 s\n"
    assert _remote.is_address(address) and not _remote.is_address(str(tmp_path))


def test_status_of_an_address_without_pyzmq_says_which_extra(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import sys; sys.modules['zmq'] = None; "
        "from qcgpj_async.report import main; sys.exit(main(['status', sys.argv[1]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, f"tcp://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=T,
    )
    assert out.returncode == 2
    assert "needs pyzmq: pip install 'qcgpj_async[zmq]'" in out.stderr
