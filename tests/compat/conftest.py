"""Managers of the compatibility API under test: in process, and a client over ZMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qcgpj_async.compat import LocalManager, Manager


def has_zmq() -> bool:
    try:
        import zmq  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(params=["local", "zmq"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A LocalManager on 2 nodes x 2 cores; or a Manager over ZMQ to one served with --net."""
    args = ["--wd", str(tmp_path), "--nodes", "n0:2,n1:2", "--id", "t"]
    if request.param == "local":
        m = LocalManager(args)
        try:
            yield m
        finally:
            if m._link.open:
                m.finish()
        return
    if not has_zmq():
        pytest.skip("pyzmq is not installed (pip install 'qcgpj_async[zmq]')")
    server = LocalManager([*args, "--net"])
    try:
        assert server.address is not None
        client = Manager(server.address, {"poll_delay": 1})
        try:
            yield client
        finally:
            if client._link.open:
                client._link.close()
    finally:
        if server._link.open:
            server.finish()
