"""The fork server's heartbeat (ping/pong) and pinning of a start to CPUs."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from qcgpj_async.executors import ForkServer

pytestmark = pytest.mark.anyio
T = 20


def allowed(text: str) -> set[int]:
    out: set[int] = set()
    for item in text.strip().split(","):
        lo, _, hi = item.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


async def test_a_start_with_cpus_is_pinned_and_the_next_is_not(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server = ForkServer()
    env = dict(os.environ)
    show = [
        "/bin/sh",
        "-c",
        "grep Cpus_allowed_list: /proc/self/status | cut -f2 > $0",
    ]
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        with anyio.fail_after(T):
            one = server.request("a", [*show, "a"], env, str(tmp_path), None, None, None,
                                 cpus=[cpus[-1]])  # fmt: skip
            assert await (await one.result()).wait() == 0
            two = server.request("b", [*show, "b"], env, str(tmp_path), None, None, None)
            assert await (await two.result()).wait() == 0
            assert server.ping(7)
            while server.pong != 7:
                await anyio.sleep(0.01)  # answered at once: the next read has it
        await server.aclose()
    assert allowed((tmp_path / "a").read_text()) == {cpus[-1]}
    assert allowed((tmp_path / "b").read_text()) == set(cpus)  # the server's was restored
