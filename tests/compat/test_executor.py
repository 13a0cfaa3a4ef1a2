"""QCGPJExecutor's futures (done without a round trip, result with a timeout, cancel),
and the plain concurrent.futures executor."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qcgpj_async import JobDescriptionError, JobState
from qcgpj_async.compat import errors
from qcgpj_async.compat.executor import (
    BasicTemplate,
    JobFailedError,
    PilotExecutor,
    QCGPJExecutor,
    ResultTimeout,
)

T = 60


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[QCGPJExecutor]:
    with QCGPJExecutor(wd=str(tmp_path), resources="2") as ex:
        yield ex


def _count_requests(ex: QCGPJExecutor) -> list[dict[str, Any]]:
    """Record every request the manager sends from now on."""
    link = ex.qcgpj_manager._link
    sent: list[dict[str, Any]] = []
    request = link.request

    def counting(req: dict[str, Any]) -> dict[str, Any]:
        sent.append(req)
        return request(req)

    link.request = counting  # type: ignore[method-assign]
    return sent


def test_template_submit_and_result(executor: QCGPJExecutor, tmp_path: Path) -> None:
    f = executor.submit(BasicTemplate.template, {"name": "a", "exec": "/bin/echo"}, args=["x", "y"])
    assert f.result(T) == {"a": "SUCCEED"}
    assert (tmp_path / "stdout").read_text() == "x y\n"

    # *args dicts in order, then kwargs win; the job knows its name.
    def tmpl() -> tuple[str, dict[str, Any]]:
        text = "{'name': '$name', 'execution': {'exec': '/bin/sh', 'args': ['-c', $cmd]}}"
        return text, {"cmd": "'echo $$QCG_PM_EXEC_API_JOB_ID > $out'"}

    cmd = "'echo $QCG_PM_EXEC_API_JOB_ID > id.out'"  # values are not substituted again
    g = executor.submit(tmpl, {"name": "b", "cmd": "'no'"}, {"cmd": "'no2'"}, cmd=cmd)
    assert g.result(T) == {"b": "SUCCEED"}
    assert (tmp_path / "id.out").read_text() == "b\n"
    assert (tmp_path / "executor_api.log").read_text().startswith("Starting QCG-PJ Manager")
    with pytest.raises(KeyError):
        executor.submit(BasicTemplate.template, name="c")  # no exec
    with pytest.raises(errors.ConnectionError, match="^Request failed - "):
        executor.submit(BasicTemplate.template, name="d:1", exec="/bin/true")


def test_done_costs_no_round_trip(executor: QCGPJExecutor) -> None:
    sleeper = executor.submit(BasicTemplate.template, name="s", exec="/bin/sleep", args=["60"])
    quick = executor.submit(BasicTemplate.template, name="q", exec="/bin/true")
    executor.qcgpj_manager.wait4("q", timeout=T)
    sent = _count_requests(executor)
    assert quick.done() and not quick.running()
    assert not sleeper.done() and sleeper.running()
    assert quick.result() == {"q": "SUCCEED"}  # known: no request either
    assert sent == []
    assert sleeper.cancel() and sleeper.cancelled()
    assert sleeper.result(T) == {"s": "CANCELED"}
    assert sleeper.done()


def test_result_waits_on_events_not_requests(executor: QCGPJExecutor) -> None:
    f = executor.submit(BasicTemplate.template, name="w", exec="/bin/sh", args=["-c", "sleep 0.3"])
    sent = _count_requests(executor)
    link = executor.qcgpj_manager._link
    waits: list[list[str]] = []
    wait4 = link.wait4

    def counting_wait4(names: list[str], timeout: float | None) -> dict[str, str]:
        waits.append(names)
        return wait4(names, timeout)

    link.wait4 = counting_wait4  # type: ignore[method-assign]
    assert f.result(T) == {"w": "SUCCEED"}  # woken by the job's end event
    assert sent == [] and waits == []
    assert f.done()


def test_result_honours_its_timeout(executor: QCGPJExecutor) -> None:
    f = executor.submit(BasicTemplate.template, name="s", exec="/bin/sleep", args=["60"])
    with pytest.raises(ResultTimeout) as e:
        f.result(timeout=0.2)
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, errors.TimeoutElapsed)
    assert not f.done()
    f.cancel()
    assert f.result(T) == {"s": "CANCELED"}


def test_shutdown_twice_is_nothing(tmp_path: Path) -> None:
    ex = QCGPJExecutor(wd=str(tmp_path / "new"), resources="1", log_level="bogus")
    ex.shutdown()
    ex.shutdown()
    assert ex.finished


# -- PilotExecutor ----------------------------------------------------------------


def test_pilot_executor_futures(tmp_path: Path) -> None:
    with PilotExecutor(nodes=2, wd=str(tmp_path)) as ex:
        good = [ex.submit(exec="/bin/true") for _ in range(10)]
        bad = ex.submit({"name": "bad", "execution": {"exec": "/bin/false"}})
        omitted = ex.submit(name="after-bad", exec="/bin/true", after="bad")
        done = set(cf.as_completed([*good, bad, omitted], timeout=T))
        assert len(done) == 12
        assert {f.result() for f in good} == {JobState.SUCCEED}
        err = bad.exception()
        assert isinstance(err, JobFailedError) and (err.name, err.state) == ("bad", JobState.FAILED)
        assert isinstance(omitted.exception(), JobFailedError)
        assert omitted.exception().state is JobState.OMITTED  # type: ignore[union-attr]
        with pytest.raises(JobDescriptionError, match="numCores"):
            ex.submit(exec="/bin/true", numCores={"min": 3, "max": 2})
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(exec="/bin/true")


def test_pilot_executor_cancel(tmp_path: Path) -> None:
    with PilotExecutor(nodes=2, wd=str(tmp_path), kill_grace=5) as ex:
        running = ex.submit(name="r", exec="/bin/sleep", args=["60"])
        queued = ex.submit(name="q", exec="/bin/sleep", args=["60"])
        assert running.cancel() and running.cancelled()
        # Cancelled from a done callback, i.e. on the pilot's own thread (t runs on
        # the core r left).
        hit = threading.Event()
        trigger = ex.submit(name="t", exec="/bin/true")

        def on_done(_: Any) -> None:
            assert queued.cancel()
            hit.set()

        trigger.add_done_callback(on_done)
        assert hit.wait(T)
        assert queued.cancelled()
        with pytest.raises(cf.CancelledError):
            queued.result(T)
    # The pilot ended: both jobs were stopped (else leaving would have taken 60 s).
    report = (next(tmp_path.glob(".qcgpjm-service-*")) / "jobs.report").read_text()
    assert '"name": "r","state": "CANCELED"' in report.replace(", ", ",")
    assert '"name": "q","state": "CANCELED"' in report.replace(", ", ",")


def test_pilot_executor_shutdown_cancel_futures(tmp_path: Path) -> None:
    ex = PilotExecutor(nodes=1, wd=str(tmp_path), kill_grace=5)
    futures = [ex.submit(exec="/bin/sleep", args=["60"]) for _ in range(3)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futures)
