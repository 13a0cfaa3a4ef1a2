"""Launch agents: the handshake, the fork server's protocol over TCP, and strangers refused."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from qcgpj_async.executors import _agent
from qcgpj_async.executors._agent_wire import AgentGate, new_secret
from qcgpj_async.executors._agents import agents_argv, slurm_version
from qcgpj_async.executors._forkserver import Reader, pack

pytestmark = pytest.mark.anyio
AGENT = Path(_agent.__file__)
T = 20


def spawn_agent(port: int, secret: bytes | None, node: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != _agent.SECRET_VAR}
    env["SLURMD_NODENAME"] = node
    if secret is not None:
        env[_agent.SECRET_VAR] = secret.hex()
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(AGENT), "127.0.0.1", str(port), "5"],
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def events(sock: socket.socket, until: int) -> list[tuple[object, ...]]:
    """Read events (blocking, bounded) until ``until`` have come."""
    sock.setblocking(False)
    reader, got = Reader(sock.fileno()), []
    while len(got) < until:
        assert select.select([sock], [], [], T)[0], f"no event within {T} s after {got}"
        msgs = reader.read()
        assert msgs is not None, f"the agent closed the connection after {got}"
        got += msgs
    return got


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.02)
    return False


def sigmask(pid: int, field: str) -> int:
    """A signal mask of ``pid`` (``SigCgt``, ``SigIgn``...) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} for {pid}")


def pid_in(path: Path) -> int:
    """The pid a job writes to ``path`` (waits for the whole line)."""
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            text = path.read_text()
            if text.endswith("\n"):
                return int(text)
        time.sleep(0.02)  # a file the job writes
    raise AssertionError(f"{path} not written within {T} s")


# A job that leaves a daemon behind (a session of its own: outside the job's group,
# reparented when the job ends) and ends; and a job that runs long, with a child in a
# session of its own.
DAEMON = (
    "setsid sh -c 'echo $$ > daemon.pid; exec sleep 600' </dev/null >/dev/null 2>&1 &"
    " while [ ! -s daemon.pid ]; do sleep 0.01; done"
)
LONG = "setsid sleep 600 & echo $! > child.pid; echo $$ > job.pid; exec sleep 600"


async def test_agents_join_and_run_jobs_over_tcp(tmp_path: Path) -> None:
    secret = new_secret()
    gate = AgentGate(secret, host="127.0.0.1")
    agents = [spawn_agent(gate.port, secret, n) for n in ("n1", "n2")]
    try:
        with anyio.fail_after(T):
            got = await gate.gather({"n1", "n2"}, timeout=T)
        assert sorted(got.joined) == ["n1", "n2"]
        assert got.missing == {} and got.refused == []
        a = got.joined["n1"]
        # The hello names the serving process: a child of the process started (its keeper).
        assert ppid(a.pid) in (p.pid for p in agents)
        assert set(a.cpus) == os.sched_getaffinity(0)  # its affinity, real CPU ids
        # The gate listens only while agents join.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", gate.port), 1):
            pass
        # The fork server's protocol, as on the pilot's own node.
        out = tmp_path / "out"
        a.sock.sendall(
            pack(("env", {"PATH": os.environ["PATH"]}))
            + pack(("start", 1, "j:1", ["/bin/sh", "-c", "echo $X"], {"X": "hi"}, [], str(tmp_path),
                    None, str(out), str(out)))
        )  # fmt: skip
        evs = events(a.sock, 2)
        assert [e[0] for e in evs] == ["started", "exited"]
        assert evs[1][1:3] == (1, 0)
        assert out.read_text() == "hi\n"
        # The secret does not reach the jobs.
        a.sock.sendall(
            pack(("start", 2, "j:2", ["/bin/sh", "-c", f"env > {tmp_path}/env"], {}, [],
                  str(tmp_path), None, None, None))
        )  # fmt: skip
        assert [e[0] for e in events(a.sock, 2)] == ["started", "exited"]
        assert _agent.SECRET_VAR not in (tmp_path / "env").read_text()
    finally:
        for j in got.joined.values():
            j.sock.close()
        for p in agents:
            assert p.wait(T) == 0  # the connection closed: the agent exits


async def test_pilot_gone_kills_the_agents_jobs(tmp_path: Path) -> None:
    secret = new_secret()
    gate = AgentGate(secret, host="127.0.0.1")
    agent = spawn_agent(gate.port, secret, "n1")
    with anyio.fail_after(T):
        got = await gate.gather({"n1"}, timeout=T)
    sock = got.joined["n1"].sock
    sock.sendall(
        pack(("env", {"PATH": os.environ["PATH"]}))
        + pack(("start", 1, "j:1", ["/bin/sleep", "60"], {}, [], str(tmp_path), None, None, None))
        + pack(("start", 2, "d:1", ["/bin/sh", "-c", DAEMON], {}, [], str(tmp_path), None,
                None, None))
    )  # fmt: skip
    evs = events(sock, 3)
    pid = next(e[2] for e in evs if e[:2] == ("started", 1))
    assert isinstance(pid, int) and running(pid)
    assert ("exited", 2, 0) in [e[:3] for e in evs]
    daemon = pid_in(tmp_path / "daemon.pid")  # left by a job that ended
    try:
        assert running(daemon)
        sock.close()  # as when the pilot dies: the kernel closes its end
        assert agent.wait(T) == 0
        assert wait_gone(pid), "the job outlived its pilot's connection"
        assert wait_gone(daemon), "what a job left outlived its agent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)  # only where the agent failed to


async def test_strangers_are_refused_and_start_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = new_secret()
    gate = AgentGate(secret, host="127.0.0.1", log=logging.getLogger("test.agents"))
    marker = tmp_path / "pwned"
    wrong = spawn_agent(gate.port, new_secret(), "n1")  # an agent of another run
    nosecret = spawn_agent(gate.port, None, "n1")

    def stranger() -> None:
        # Sends what a fork server would obey, without any handshake.
        req = pack(("start", 1, "x", ["/bin/touch", str(marker)], {}, [], "/", None, None, None))
        with socket.create_connection(("127.0.0.1", gate.port), T) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" + req * 10)
            s.settimeout(T)
            try:
                while s.recv(4096):
                    pass  # until the gate closes it
            except ConnectionResetError:  # closed with our request unread: a reset
                pass

    with caplog.at_level(logging.WARNING, "test.agents"), anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, stranger)
            got = await gate.gather({"n1"}, timeout=3)
    assert got.joined == {}
    assert got.missing == {"n1": "no agent joined within 3 s"}
    lines = got.refused
    assert any("did not prove the run's secret" in line for line in lines), lines
    assert any("does not speak the agents' protocol" in line for line in lines), lines
    assert all(line in caplog.text for line in lines)
    assert wrong.wait(T) == 1
    assert b"cannot join the pilot" in wrong.stderr.read()  # type: ignore[union-attr]
    assert nosecret.wait(T) == 2
    assert b"no QCGPJ_AGENT_SECRET" in nosecret.stderr.read()  # type: ignore[union-attr]
    assert not marker.exists()


async def test_duplicate_and_foreign_nodes_are_refused() -> None:
    secret = new_secret()
    gate = AgentGate(secret, host="127.0.0.1")
    first = spawn_agent(gate.port, secret, "n1")
    with anyio.fail_after(T):
        got = await gate.gather({"n1", "n2"}, timeout=1.5)
    assert list(got.joined) == ["n1"] and list(got.missing) == ["n2"]
    got.joined["n1"].sock.close()
    assert first.wait(T) == 0

    gate = AgentGate(secret, host="127.0.0.1")
    agents = [spawn_agent(gate.port, secret, n) for n in ("n1", "n1", "n9")]
    with anyio.fail_after(T):
        got = await gate.gather({"n1", "n2"}, timeout=2)
    assert list(got.joined) == ["n1"]
    assert any("node 'n1' has an agent already" in line for line in got.refused)
    assert any("node 'n9' is not one of the allocation's" in line for line in got.refused)
    got.joined["n1"].sock.close()
    for p in agents:
        assert p.wait(T) == 0  # refused after the handshake: the end of its connection


def fake_srun(tmp_path: Path, says: str, code: int = 0) -> str:
    path = tmp_path / "srun"
    path.write_text(f"#!/bin/sh\necho '{says}'\nexit {code}\n")
    path.chmod(0o755)
    return str(path)


def test_the_agents_step_flags_follow_the_slurm_version(tmp_path: Path) -> None:
    assert slurm_version(fake_srun(tmp_path, "slurm 22.05.8")) == (22, 5)
    assert slurm_version(fake_srun(tmp_path, "slurm-wlm 19.05.5")) == (19, 5)
    assert slurm_version(fake_srun(tmp_path, "slurm 22.05.8", code=1)) is None
    assert slurm_version(str(tmp_path / "no-srun")) is None

    def argv(version: tuple[int, int] | None) -> list[str]:
        return agents_argv(2, "h", 1, name="s", timeout=30, version=version)

    # --overlap exists since 20.11 (steps share CPUs before, and srun refuses it there)
    assert "--overlap" in argv((22, 5)) and "--overlap" in argv((20, 11))
    assert "--overlap" not in argv((20, 2)) and "--overlap" not in argv((19, 5))
    assert "--overlap" in argv(None)  # not known: as the versions supported
    for version in ((19, 5), (22, 5)):
        assert {"--mem=0", "--cpu-bind=none", "--ntasks-per-node=1"} <= set(argv(version))


async def test_an_agent_sigkilled_takes_its_tasks_with_it(tmp_path: Path) -> None:
    secret = new_secret()
    gate = AgentGate(secret, host="127.0.0.1")
    agent = spawn_agent(gate.port, secret, "n1")
    with anyio.fail_after(T):
        got = await gate.gather({"n1"}, timeout=T)
    serving = got.joined["n1"]
    pids: list[int] = []
    try:
        serving.sock.sendall(
            pack(("env", {"PATH": os.environ["PATH"]}))
            + pack(("start", 1, "d:1", ["/bin/sh", "-c", DAEMON], {}, [], str(tmp_path),
                    None, None, None))
            + pack(("start", 2, "l:1", ["/bin/sh", "-c", LONG], {}, [], str(tmp_path),
                    None, None, None))
        )  # fmt: skip
        ends = {e[1]: e[0] for e in events(serving.sock, 3)}
        assert ends == {1: "exited", 2: "started"}
        pids = [pid_in(tmp_path / f) for f in ("daemon.pid", "job.pid", "child.pid")]
        assert all(running(p) for p in pids)
        # SIGINT and SIGTERM do not stop the agent (the pilot decides); its jobs keep
        # their defaults.
        int_term = 1 << (signal.SIGINT - 1) | 1 << (signal.SIGTERM - 1)
        for pid in (agent.pid, serving.pid):
            assert sigmask(pid, "SigCgt") & int_term == int_term
        assert (sigmask(pids[1], "SigCgt") | sigmask(pids[1], "SigIgn")) & int_term == 0
        os.kill(serving.pid, signal.SIGKILL)  # not the connection: the agent itself
        for pid in pids:
            assert wait_gone(pid), f"{pid} outlived its agent"
        assert agent.wait(T) == 1
        said = agent.stderr.read().decode()  # type: ignore[union-attr]
        assert "agent on n1" in said and "SIGKILL" in said, said
    finally:
        serving.sock.close()
        for pid in pids:  # only where the agent failed to
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            agent.kill()
        agent.wait(T)


def keeper(body: str) -> subprocess.CompletedProcess[str]:
    """``body`` run with ``python -I -S`` beside the agent's module (``_agent``)."""
    code = f"import os, sys\nsys.path.insert(0, {str(AGENT.parent)!r})\nimport _agent\n{body}"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=T
    )


def test_the_keeper_serves_in_a_child_or_where_it_cannot_here() -> None:
    # The work runs in a child of the keeper, which exits with its status.
    done = keeper(
        "me = os.getpid(); sys.exit(_agent.keep('n1', lambda: 3 if os.getppid() == me else 4))"
    )
    assert (done.returncode, done.stderr) == (3, "")
    # No subreaper: the work runs in the one process, as it did before the keeper.
    done = keeper(
        "_agent.subreaper = lambda: 'not here'\n"
        "me = os.getpid(); sys.exit(_agent.keep('n1', lambda: 5 if os.getpid() == me else 6))"
    )
    assert done.returncode == 5
    assert "qcgpj agent on n1: cannot become a subreaper (not here)" in done.stderr


def test_children_are_found_with_or_without_the_children_file() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert child.pid in _agent.children()
        assert child.pid in _agent.children_by_stat()
    finally:
        child.kill()
        child.wait()
    assert child.pid not in _agent.children_by_stat()
