"""The start queue seam: the fork server's protocol over any byte stream, not only pipes.

The launch agents of other nodes will be start queues over a connection; here
the local fork server runs over a socket pair instead of its two pipes, and
everything works as over the pipes (queued starts, batched events, the end).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import anyio
import pytest

from qcgpj_async import Jobs, JobState, Pilot
from qcgpj_async.executors import (
    ByteLink,
    ForkServer,
    LocalExecutor,
    StartQueue,
    _forkserver_link,
    local_argv,
)

pytestmark = pytest.mark.anyio
T = 30


class SocketLink:
    """A fork server reached through one socket (as a TCP connection would be)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        # Two descriptors per side: the server's selector takes each once.
        t_in, t_out = theirs.fileno(), os.dup(theirs.fileno())
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _forkserver_link._SCRIPT, str(t_in), str(t_out)],
                pass_fds=(t_in, t_out),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(t_out)
            theirs.close()
        self._sock = ours
        self.rfd, self.wfd = ours.fileno(), os.dup(ours.fileno())
        self.opened = True

    def close_requests(self) -> None:
        if self.wfd >= 0:
            self._sock.shutdown(socket.SHUT_WR)  # the server reads its end
            os.close(self.wfd)
            self.wfd = -1

    async def wait_closed(self) -> None:
        await anyio.to_thread.run_sync(self._proc.wait)
        self._sock.close()
        self.rfd = -1

    def abort(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()

    def kill_orphans(self, pids: Collection[int]) -> None:
        pass  # "a remote node": its server kills its own


def links_made(made: list[SocketLink]) -> SocketLink:
    link = SocketLink()
    made.append(link)
    return link


async def test_a_fork_server_over_a_socket_starts_queues_and_ends(tmp_path: Path) -> None:
    made: list[SocketLink] = []
    server = ForkServer(lambda: links_made(made))
    queue: StartQueue = server  # the declared seam (mypy checks the protocol)
    link: ByteLink
    env = dict(os.environ)
    async with anyio.create_task_group() as tg:
        await tg.start(queue.serve)
        assert queue.accepting
        first = server.request("a", ["/bin/sh", "-c", "exit 3"], env, str(tmp_path), None,
                               None, None, slot=1)  # fmt: skip
        queued = server.request("b", ["/bin/sh", "-c", "echo $$ > b"], env, str(tmp_path),
                                None, None, None, queued=True, slot=1, key=7)  # fmt: skip
        with anyio.fail_after(T):
            proc = await first.result()
            assert await proc.wait() == 3
            assert proc.successor == [7]  # b took its core, with no round trip
            second = await queued.result()
            assert await second.wait() == 0
        assert (tmp_path / "b").read_text().strip() == str(second.pid)
        await server.aclose()
    (link,) = made
    assert link.rfd == -1 and link.wfd == -1  # closed, server reaped
    assert made[0]._proc.returncode == 0


async def test_a_pilot_runs_its_jobs_through_a_start_queue_over_a_socket(tmp_path: Path) -> None:
    made: list[SocketLink] = []
    ex = LocalExecutor()
    ex._server = ForkServer(  # what a launch agent's node would be: another link
        lambda: links_made(made), argv=local_argv, left_out=("openmpi", "intelmpi")
    )
    async with Pilot(nodes="2", wd=tmp_path, executor=ex) as pilot:
        await pilot.submit(
            Jobs()
            .add(name="it", script="echo $PPID > ppid.${it}", iteration=20)
            .add(name="bad", exec="/no/such/program")
        )
        got = await pilot.wait4(["it", "bad"], timeout=T)
    assert got == {"it": JobState.SUCCEED, "bad": JobState.FAILED}
    (link,) = made
    server_pid = link._proc.pid
    assert {int((tmp_path / f"ppid.{i}").read_text()) for i in range(20)} == {server_pid}
    assert link._proc.returncode is not None  # gone with the pilot


async def test_a_batch_sends_its_starts_in_one_write_then_calls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ForkServer()
    writes: list[bytes] = []
    write = server._write
    monkeypatch.setattr(server, "_write", lambda data: (writes.append(bytes(data)), write(data)))
    ends: list[tuple[int, bool]] = []
    server.on_batch_end(lambda: ends.append((len(writes), server.batching)))
    env = dict(os.environ)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        with server.batch():
            assert server.batching
            with server.batch():  # within a batch: part of it
                argvs = [["/bin/sh", "-c", f"exit {i}"] for i in range(3)]
                cwd = str(tmp_path)
                starts = [server.request("j", a, env, cwd, None, None, None) for a in argvs]
            assert writes == []  # nothing sent before the end
        assert len(writes) == 1 and ends[0] == (1, False)
        with anyio.fail_after(T):
            codes = [await (await s.result()).wait() for s in starts]
        assert codes == [0, 1, 2]
        await server.aclose()
    assert len(ends) >= 2  # and after each read of events (their callbacks run)
