"""Helpers of the ZMQ tests: our service as a real process, raw sockets, the original client."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

zmq = pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'qcgpj_async[zmq]')")

START_TIMEOUT = 30.0


def require_original_client() -> Any:
    """The original client's ``Manager`` class, or skip."""
    mod = pytest.importorskip(
        "qcg.pilotjob.api.manager",
        reason="qcg-pilotjob==0.14.2 (the original client) is not installed",
    )
    return mod.Manager


class Service:
    """``python -m qcgpj_async --net ...`` running in ``wd``, service id ``sid``."""

    def __init__(self, wd: Path, *args: str, sid: str = "svc") -> None:
        self.wd = wd
        wd.mkdir(parents=True, exist_ok=True)
        self.service_dir = wd / f".qcgpjm-service-{sid}"
        cmd = [sys.executable, "-m", "qcgpj_async", "--wd", str(wd), "--id", sid, *args]
        if not any(a.startswith("--net") for a in args):
            cmd.append("--net")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=wd
        )
        self.stderr: list[str] = []
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._serving.wait(START_TIMEOUT) or "serving at" not in self.stderr_text():
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"service did not start: {self.stderr_text()}")
        # The address comes from the service directory, as a client would read it.
        self.address = (self.service_dir / "address").read_text()
        self._ctx = zmq.Context()
        self._req: Any = None

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if "serving at" in line:
                self._serving.set()
        self._serving.set()  # ended: let the waiter look

    def stderr_text(self) -> str:
        return "".join(self.stderr)

    def request(
        self, request: dict[str, Any] | bytes | list[bytes], timeout: float = 10.0
    ) -> dict[str, Any]:
        """One raw request (a dict is sent as JSON); the decoded reply."""
        if self._req is None:
            self._req = self._ctx.socket(zmq.REQ)
            self._req.setsockopt(zmq.LINGER, 0)
            self._req.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
            self._req.connect(self.address)
        if isinstance(request, dict):
            self._req.send(json.dumps(request).encode())
        elif isinstance(request, list):
            self._req.send_multipart(request)
        else:
            self._req.send(request)
        reply: dict[str, Any] = json.loads(self._req.recv())
        return reply

    def wait(self, timeout: float = 20.0) -> int:
        """The exit code, once the service has ended by itself."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        """Stop the service (``finish``) if it still runs; release the sockets."""
        if self.proc.poll() is None:
            try:
                self.request({"request": "finish"}, timeout=5)
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self._req is not None:
            self._req.close(0)
        self._ctx.term()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class OriginalClients:
    """Makes original ``Manager`` clients and releases them (their sockets, log handler)."""

    def __init__(self, log_dir: Path) -> None:
        self.manager_cls = require_original_client()
        self.log_dir = log_dir
        self.made: list[Any] = []

    def __call__(self, address: str | None = None) -> Any:
        n = len(self.made)
        m = self.manager_cls(address, {"log_file": str(self.log_dir / f"api{n}.log")})
        # One INFO line per event costs more than the service's work.
        logging.getLogger("qcg.pilotjob.api").setLevel(logging.WARNING)
        self.made.append(m)
        # Its SUB socket connected in the constructor; its subscriptions reach the service
        # a moment later (ZMQ's slow joiner). Its wait4 reads the status once, then only
        # events: one missed while it joins would make a test wait for its timeout.
        time.sleep(0.2)
        return m

    def close(self) -> None:
        for m in self.made:
            m.cleanup()
            for sock in (m._zmq_socket, m._zmq_status_socket):
                if sock is not None:
                    sock.close(0)
            m._zmq_ctx.term()
        self.made.clear()


def job_script(tmp: Path, name: str, code: str) -> list[str]:
    """exec + args running a Python snippet with this interpreter."""
    path = tmp / f"{name}.py"
    path.write_text(code)
    return [sys.executable, str(path)]
