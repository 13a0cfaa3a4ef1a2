"""serve_zmq and our async Client, in one process, on asyncio and trio (real pyzmq, real jobs)."""

from __future__ import annotations

import importlib
import json
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

zmq = pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'qcgpj_async[zmq]')")

from qcgpj_async import (  # noqa: E402
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    Jobs,
    JobState,
    Pilot,
    PilotClosedError,
    PilotTimeoutError,
)
from qcgpj_async.adapters import _zmq_io  # noqa: E402
from qcgpj_async.adapters.zmq import (  # noqa: E402
    ADDRESS_ENV,
    Client,
    ZmqBindError,
    ZmqServer,
    serve_zmq,
)

T = 30  # seconds: a loud bound for what should take milliseconds
S = JobState.SUCCEED


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Pilot, ZmqServer]]:
    async with Pilot(nodes="n0:2,n1:2", wd=tmp_path, kill_grace=1) as pilot:
        async with serve_zmq(pilot) as server:
            yield pilot, server
        left = [n for n, j in pilot._engine.jobs.items() if not j.state.is_final]
        if left:
            await pilot.cancel(left)


@pytest.fixture
async def client(served: tuple[Pilot, ZmqServer]) -> AsyncIterator[Client]:
    async with Client(served[1].address) as c:
        yield c


@pytest.mark.anyio
async def test_calls_of_the_pilot(served: tuple[Pilot, ZmqServer], client: Client) -> None:
    server = served[1]
    assert server.address.startswith("tcp://127.0.0.1:")
    assert client.publisher == server.publisher
    with anyio.fail_after(T):
        names = await client.submit(
            Jobs()
            .add(name="a", exec="/bin/true")
            .add(name="it", exec="/bin/true", iteration=3, after="a")
        )
        assert names == ["a", "it"]
        assert await client.wait4(["it:2", "a"]) == {"it:2": S, "a": S}
        assert await client.wait4(names) == {"a": S, "it": S}
        assert await client.status(["a", "it:0"]) == {"a": S, "it:0": S}
        info = await client.info("it", with_childs=True)
        assert info["it"]["iterations"]["finished"] == 3
        assert [c["state"] for c in info["it"]["childs"]] == ["SUCCEED"] * 3
        assert await client.list() == {"a": S, "it": S}
        assert (await client.resources()).total_cores == 4
        assert await client.wait4_any(["a", "it"]) == ("a", S)
        await client.wait4all()
        assert await client.remove("a") == 1
        assert list(await client.list()) == ["it"]
        status = await client.service_status()
        assert status["System"]["Zmqaddress"] == server.address
        assert status["JobStats"]["TotalJobs"] == 1
        # Std dicts and models are accepted too.
        assert await client.submit({"name": "d", "execution": {"exec": "/bin/true"}}) == ["d"]
        assert await client.wait4("d") == {"d": S}


@pytest.mark.anyio
async def test_waits_are_event_driven(client: Client) -> None:
    # The safety poll is an hour away: only events can end these waits in time.
    client.poll_interval = 3600
    with anyio.fail_after(T):
        await client.submit(Jobs().add(name="s", exec="/bin/sleep", args=["0.2"]))
        assert await client.wait4("s") == {"s": S}
        await client.submit(Jobs().add(name="s2", exec="/bin/sleep", args=["0.2"]))
        await client.wait4all()  # NOJ of the first wait is long gone: this waits for s2
        assert await client.status("s2") == {"s2": S}
        await client.submit(
            Jobs()
            .add(name="s3", exec="/bin/sleep", args=["0.2"])
            .add(name="s4", exec="/bin/sleep", args=["10"])
        )
        assert await client.wait4_any(["s3", "s4"]) == ("s3", S)
        await client.cancel("s4")
        assert await client.wait4("s4") == {"s4": JobState.CANCELED}


@pytest.mark.anyio
async def test_concurrent_waits_on_one_client(client: Client) -> None:
    jobs = Jobs()
    for i in range(8):
        jobs.add(name=f"j{i}", exec="/bin/sleep", args=[str(0.05 * (i % 3))])
    results: dict[str, dict[str, JobState]] = {}

    async def wait(name: str) -> None:
        results[name] = await client.wait4(name)

    with anyio.fail_after(T):
        await client.submit(jobs)
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(wait, f"j{i}")
            tg.start_soon(client.wait4all)
    assert results == {f"j{i}": {f"j{i}": S} for i in range(8)}


@pytest.mark.anyio
async def test_errors(served: tuple[Pilot, ZmqServer], client: Client) -> None:
    with anyio.fail_after(T):
        with pytest.raises(JobNotFoundError, match="Job 'nope' doesn't exist"):
            await client.status("nope")
        with pytest.raises(JobNotFoundError):
            await client.wait4(["nope"])
        with pytest.raises(JobNotFoundError):
            await client.info("nope")
        with pytest.raises(JobNotFoundError):
            await client.cancel("nope")
        with pytest.raises(JobNotFoundError):
            await client.remove("nope")
        with pytest.raises(JobDescriptionError) as e:
            await client.submit([{"name": "x"}])
        assert "not defined" in str(e.value)
        await client.submit(Jobs().add(name="long", exec="/bin/sleep", args=["10"]))
        with pytest.raises(InvalidTransition):
            await client.remove("long")
        with pytest.raises(PilotTimeoutError):
            await client.wait4("long", timeout=0.2)
        with pytest.raises(PilotTimeoutError):
            await client.wait4all(timeout=0.2)
        with pytest.raises(PilotTimeoutError):
            await client.wait4_any(["long"], timeout=0.2)
        # A cancelled call leaves the client usable.
        with anyio.move_on_after(0.05):
            await client.wait4("long")
        assert await client.cancel("long") == 1
        assert await client.wait4("long") == {"long": JobState.CANCELED}
        await client.finish()
        assert served[1].protocol.finish.is_set()
        with pytest.raises(PilotClosedError):
            await client.submit(Jobs().add(name="late", exec="/bin/true"))


@pytest.mark.anyio
async def test_address_file_and_job_environment(
    served: tuple[Pilot, ZmqServer], client: Client, tmp_path: Path
) -> None:
    pilot, server = served
    assert pilot.service_path is not None
    assert (Path(pilot.service_path) / "address").read_text() == server.address
    with anyio.fail_after(T):
        await client.submit(
            Jobs().add(
                name="env", exec="/bin/sh", stdout="env.out", args=["-c", f"echo ${ADDRESS_ENV}"]
            )
        )
        assert await client.wait4("env") == {"env": S}
    assert (tmp_path / "env.out").read_text().strip() == server.address


@pytest.mark.anyio
async def test_environment_and_subscription_released_after_serving(tmp_path: Path) -> None:
    async with Pilot(nodes="1", wd=tmp_path) as pilot:
        before = len(pilot._recorder.subscribers)
        async with serve_zmq(pilot) as server:
            assert pilot.env[ADDRESS_ENV] == server.address
            assert len(pilot._recorder.subscribers) == before + 1
        assert ADDRESS_ENV not in pilot.env
        assert len(pilot._recorder.subscribers) == before  # the pilot goes on without feeding it


@pytest.mark.anyio
async def test_bind_errors(served: tuple[Pilot, ZmqServer], tmp_path: Path) -> None:
    port = int(served[1].address.rsplit(":", 1)[1])
    async with Pilot(nodes="1", wd=tmp_path / "other") as pilot:
        with pytest.raises(ZmqBindError, match="cannot bind"):
            async with serve_zmq(pilot, port=port):
                pass
        with pytest.raises(ZmqBindError):
            async with serve_zmq(pilot, host="192.0.2.1"):  # TEST-NET: not an address here
                pass


def _raw_requests(address: str, frames: list[Any]) -> list[dict[str, Any]]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, T * 1000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        out = []
        for f in frames:
            if isinstance(f, list):
                sock.send_multipart(f)
            else:
                sock.send(f)
            out.append(json.loads(sock.recv()))
        return out
    finally:
        sock.close()
        ctx.term()


@pytest.mark.anyio
async def test_garbage_frames(served: tuple[Pilot, ZmqServer], client: Client) -> None:
    server = served[1]
    server.max_message = 1000  # the limit applies per server
    frames: list[Any] = [
        b"{not json",
        b"\xc3\x28",
        b"42",
        b"null",
        [b"{}", b"{}"],
        b"{" + b" " * 2000 + b"}",
        b'{"request": "listJobs"}',
    ]
    replies = await anyio.to_thread.run_sync(_raw_requests, server.address, frames)
    messages = [r.get("message", "") for r in replies[:-1]]
    assert all(r["code"] == 1 for r in replies[:-1])
    assert messages[0].startswith("Invalid request: not JSON")
    assert messages[1] == "Invalid request: not UTF-8 text"
    assert messages[2] == messages[3] == "Invalid request: Invalid request"
    assert messages[4] == "Invalid request: one frame per request, got 2"
    assert messages[5] == "Invalid request: 2002 bytes, more than the limit of 1000 bytes"
    assert replies[-1] == {"code": 0, "data": {"length": 0, "jobs": {}}}
    with anyio.fail_after(T):
        assert (await client.resources()).free_cores == 4


async def _subscribe_all(publisher: str, client: Client) -> Any:
    """A SUB socket on every topic, proven live by probe jobs' events."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    sub.connect(publisher)
    for i in range(100):
        await client.submit(Jobs().add(name=f"probe{i}", exec="/bin/true"))
        await client.wait4(f"probe{i}")
        with anyio.move_on_after(0.1):
            await _zmq_io.recv(sub)
            break
    else:
        raise AssertionError("subscription never became live")
    with anyio.move_on_after(0.2):  # drain the probes' events
        while True:
            await _zmq_io.recv(sub)
    return ctx, sub


@pytest.mark.anyio
async def test_published_events_are_the_originals(
    served: tuple[Pilot, ZmqServer], client: Client
) -> None:
    with anyio.fail_after(T):
        ctx, sub = await _subscribe_all(served[1].publisher, client)
        try:
            await client.submit(
                [
                    {"name": "p", "execution": {"exec": "/bin/true"}},
                    {"name": "it", "execution": {"exec": "/bin/true"}, "iteration": {"stop": 2}},
                    {"name": "f", "execution": {"exec": "/bin/false"}},
                    {
                        "name": "o",
                        "execution": {"exec": "/bin/true"},
                        "dependencies": {"after": ["f"]},
                    },
                ]
            )
            seen: dict[tuple[str, str, Any], list[str]] = defaultdict(list)
            order: list[str] = []
            while True:
                (frame,) = await _zmq_io.recv(sub)
                topic, _, body = frame.decode().partition(" ")
                data = json.loads(body)
                order.append(topic)
                if topic == "NOJ":
                    assert data == {"manager": served[0].id}
                    break
                assert data["manager"] == served[0].id
                seen[(topic, data["job"], data.get("it"))].append(data["state"])
        finally:
            sub.close()
            ctx.term()
    # What QCG-PilotJob 0.14.2 publishes for the same submit (recorded from it):
    # no QUEUED, an iteration job's own state only at its end, NOJ last.
    assert dict(seen) == {
        ("JST", "p", None): ["SCHEDULED", "EXECUTING", "SUCCEED"],
        ("JFI", "p", None): ["SUCCEED"],
        ("IST", "it", 0): ["SCHEDULED", "EXECUTING", "SUCCEED"],
        ("IFI", "it", 0): ["SUCCEED"],
        ("IST", "it", 1): ["SCHEDULED", "EXECUTING", "SUCCEED"],
        ("IFI", "it", 1): ["SUCCEED"],
        ("JST", "it", None): ["SUCCEED"],
        ("JFI", "it", None): ["SUCCEED"],
        ("JST", "f", None): ["SCHEDULED", "EXECUTING", "FAILED"],
        ("JFI", "f", None): ["FAILED"],
        ("JST", "o", None): ["OMITTED"],
        ("JFI", "o", None): ["OMITTED"],
    }
    assert order.count("NOJ") == 1


def test_missing_pyzmq_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zmq", None)  # as if pyzmq were not installed
    monkeypatch.delitem(sys.modules, "qcgpj_async.adapters.zmq")
    with pytest.raises(ImportError, match=r"pip install 'qcgpj_async\[zmq\]'"):
        importlib.import_module("qcgpj_async.adapters.zmq")
