"""``qcgpj-async status ADDRESS``: a service seen through its ZMQ interface.

For a service started with ``--net`` (ours or the original's) whose files are
out of reach (another host, another user's directory). Three requests of the
original's protocol: ``status`` (counts, resources, uptime), ``listJobs`` (every
job's state and messages) and ``jobInfo`` of the running jobs (where and since
when). pyzmq (the ``[zmq]`` extra) is imported only here.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import Any, TextIO

from ._load import ReportError
from ._text import format_duration

__all__ = ("is_address", "remote_status", "watch_remote")

#: Seconds a request may take before the service is taken as unreachable.
TIMEOUT = 5.0


def is_address(target: str) -> bool:
    """Whether ``target`` names a ZMQ address rather than a directory."""
    return target.startswith(("tcp://", "ipc://"))


def _zmq() -> Any:
    try:
        import zmq
    except ImportError:
        raise ReportError(
            "status of an address needs pyzmq: pip install 'qcgpj_async[zmq]'"
        ) from None
    return zmq


class _Service:
    def __init__(self, address: str, timeout: float) -> None:
        self._zmq = zmq = _zmq()
        self.address = address
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.REQ)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        self._sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self._sock.connect(address)

    def ask(self, request: dict[str, Any]) -> Any:
        try:
            self._sock.send_json(request)
            reply = self._sock.recv_json()
        except self._zmq.Again:
            raise ReportError(f"{self.address}: no answer within {TIMEOUT:g} s") from None
        if not isinstance(reply, dict) or reply.get("code") != 0:
            msg = reply.get("message") if isinstance(reply, dict) else reply
            raise ReportError(f"{self.address}: {request['request']} failed: {msg}")
        return reply.get("data")

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


def _since(history: str, state: str) -> float | None:
    """When ``state`` was entered, from the original's history string."""
    for line in history.splitlines():
        when, _, st = line.rpartition(": ")
        if st == state and when:
            try:
                return _dt.datetime.fromisoformat(when.strip()).timestamp()
            except ValueError:
                return None
    return None


def remote_status(address: str, running: int = 10, failures: int = 5) -> tuple[str, bool]:
    """The status text of the service at ``address``, and whether it has work left.

    Raises:
        ReportError: no pyzmq, no answer, or a request refused.
    """
    svc = _Service(address, TIMEOUT)
    try:
        st = svc.ask({"request": "status"})
        jobs: dict[str, Any] = svc.ask({"request": "listJobs"})["jobs"]
        busy = [n for n, j in jobs.items() if j.get("status") == "EXECUTING"]
        info = svc.ask({"request": "jobInfo", "jobNames": busy[:running]})["jobs"] if busy else {}
    finally:
        svc.close()
    system, res = st.get("System", {}), st.get("Resources", {})
    js, its = st.get("JobStats", {}), st.get("IterationStats", {})
    total = js.get("TotalJobs", len(jobs))
    left = js.get("InScheduleJobs", 0) + js.get("ExecutingJobs", 0)
    out = [
        f"pilot {system.get('InstanceId', '?')} at {address}; up "
        f"{system.get('Uptime', '?')}; {res.get('UsedCores', '?')}/"
        f"{res.get('TotalCores', '?')} cores used on {res.get('TotalNodes', '?')} nodes",
        f"  {total} jobs: {js.get('FinishedJobs', 0)} finished, {js.get('FailedJobs', 0)} "
        f"failed, {js.get('ExecutingJobs', 0)} executing, {js.get('InScheduleJobs', 0)} queued",
        f"  {its.get('TotalIterations', 0)} iterations: "
        f"{its.get('FinishedIterations', 0)} finished, {its.get('FailedIterations', 0)} failed, "
        f"{its.get('ExecutingIterations', 0)} executing, "
        f"{its.get('InScheduleIterations', 0)} queued",
    ]
    if busy:
        now = time.time()
        out.append(f"running ({len(busy)}):")
        w = min(max(len(n) for n in busy[:running]), 40)
        for name in busy[:running]:
            data = (info.get(name) or {}).get("data") or {}
            start = _since(str(data.get("history", "")), "EXECUTING")
            rt = format_duration(now - start) if start is not None else "-"
            alloc = (data.get("runtime") or {}).get("allocation") or "-"
            out.append(f"  {name:{w}}  {rt:>9}  {alloc}")
        if len(busy) > running:
            out.append(f"  ... {len(busy) - running} more")
    bad = [(n, j) for n, j in jobs.items() if j.get("status") in ("FAILED", "OMITTED", "CANCELED")]
    if bad:
        out.append(f"not succeeded so far: {len(bad)}")
        w = min(max(len(n) for n, _ in bad[:failures]), 40)
        for name, j in bad[:failures]:
            why = str(j.get("messages") or "").replace("\n", "; ")
            out.append(f"  {j['status']:9}{name:{w}}  {why}")
    return "\n".join(out), bool(left)


def watch_remote(
    address: str, interval: float, out: TextIO = sys.stdout, once: bool = False
) -> int:
    """Print the status every ``interval`` s until no job is left; 0, or 1 when the
    service stops answering.

    Raises:
        ReportError: pyzmq is missing.
    """
    _zmq()
    tty = out.isatty()
    while True:
        try:
            text, left = remote_status(address)
        except ReportError as e:
            print(f"qcgpj-async status: {e}", file=sys.stderr)
            return 1
        if tty:
            out.write("\x1b[H\x1b[2J")
        out.write(text + "\n")
        out.flush()
        if once or not left:
            return 0
        time.sleep(interval)
