"""Launch agents: the handshake, the fork server's protocol over TCP, and strangers refused."""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from qcgpj_async.executors import _agent
from qcgpj_async.executors._agent_wire import AgentGate, new_secret
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


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.02)
    return False


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
        assert a.pid in (p.pid for p in agents)
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
    )
    started = events(sock, 1)[0]
    pid = started[2]
    assert isinstance(pid, int) and running(pid)
    sock.close()  # as when the pilot dies: the kernel closes its end
    assert agent.wait(T) == 0
    assert wait_gone(pid), "the job outlived its pilot's connection"


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
    from qcgpj_async.executors._agents import agents_argv, slurm_version

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
