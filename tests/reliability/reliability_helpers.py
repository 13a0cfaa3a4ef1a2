"""Helpers of the reliability tests: processes by pid, the service as a subprocess, journals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from procfs import alive

T = 30  # seconds: a generous bound for what should take milliseconds


def until(check: Callable[[], Any], what: str, timeout: float = T) -> Any:
    """Poll ``check`` (a file another process writes, a pid) until it is truthy; fail loudly."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout} s) waiting for {what}")
        time.sleep(0.01)  # another process's doing: nothing to wait on


def all_gone(pids: Iterable[int], timeout: float = T) -> list[int]:
    """The pids still alive after a bounded wait (SIGKILL is delivered asynchronously)."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    return [p for p in pids if alive(p)]


def kill_leftovers(pids: Iterable[int]) -> None:
    """Test cleanup: nothing a failed test started may outlive it."""
    for p in pids:
        if alive(p):
            try:
                os.killpg(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


def stop_all(procs: Iterable[subprocess.Popen[str]], pids: Iterable[int]) -> None:
    """Test cleanup: kill and reap the service processes still running, then ``pids``' groups."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    kill_leftovers(pids)


def requests_file(path: Path, requests: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps(requests))
    return str(path)


def submit(*jobs: dict[str, Any]) -> dict[str, Any]:
    return {"request": "submit", "jobs": list(jobs)}


def job(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "execution": {"script": script}, **extra}


def service(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """The service (python -m qcgpj_async) as a subprocess."""
    return subprocess.Popen(
        [sys.executable, "-m", "qcgpj_async", *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def run_service(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcgpj_async", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def service_dirs(wd: Path) -> list[Path]:
    """Service directories, oldest first (by the time their journal was opened)."""
    dirs = list(wd.glob(".qcgpjm-service-*"))
    return sorted(
        dirs,
        key=lambda d: journal(d)[0]["time"] if (d / "journal.jsonl").exists() else float("inf"),
    )


def journal(d: Path) -> list[dict[str, Any]]:
    """Every complete record of a service directory's journal."""
    text = (d / "journal.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def ended(records: list[dict[str, Any]]) -> dict[str, str]:
    """``job`` / ``job:it`` -> final state, from journal records."""
    return {
        r["job"] if r["it"] is None else f"{r['job']}:{r['it']}": r["state"]
        for r in records
        if r["t"] == "end"
    }


def report(d: Path) -> dict[str, dict[str, Any]]:
    lines = (d / "jobs.report").read_text().splitlines()
    return {e["name"]: e for e in map(json.loads, lines)}


def rss_kb(pid: int | None = None) -> int:
    """Resident set size now (not the peak), from /proc."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
