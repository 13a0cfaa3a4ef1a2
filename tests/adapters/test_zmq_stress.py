"""Ten original clients at once, each submitting and awaiting 500 jobs: nothing is lost."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from zmq_helpers import OriginalClients, Service, require_original_client

require_original_client()

from qcg.pilotjob.api.job import Jobs  # noqa: E402

CLIENTS = 10
JOBS = 500
BATCH = 50


def test_ten_clients_each_submit_and_await_500_jobs(tmp_path: Path) -> None:
    svc = Service(tmp_path, "--nodes", "64", "--report-format", "none", "--log", "warning")
    clients = OriginalClients(tmp_path)
    managers = [clients(svc.address) for _ in range(CLIENTS)]
    submitted: dict[int, list[str]] = {}
    results: dict[int, dict[str, str]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def client(k: int, m: Any) -> None:
        try:
            start.wait(30)
            names: list[str] = []
            for b in range(0, JOBS, BATCH):
                jobs = Jobs()
                for i in range(b, b + BATCH):
                    jobs.add(name=f"c{k}-{i}", exec="/bin/true")
                names += m.submit(jobs)
            submitted[k] = names
            results[k] = m.wait4(names, timeout=120)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=client, args=(k, m)) for k, m in enumerate(managers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        assert not any(t.is_alive() for t in threads), "a client hangs"
        assert failures == []
        for k in range(CLIENTS):
            expected = [f"c{k}-{i}" for i in range(JOBS)]
            assert submitted[k] == expected  # every submit reply arrived, in order
            assert results[k] == dict.fromkeys(expected, "SUCCEED")
        stats = managers[0].system_status()["JobStats"]
        assert stats["TotalJobs"] == stats["FinishedJobs"] == CLIENTS * JOBS
        assert len(managers[0].list()) == CLIENTS * JOBS
    finally:
        clients.close()
        svc.close()
    assert svc.proc.returncode == 0, svc.stderr_text()
