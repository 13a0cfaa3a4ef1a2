"""Every call of the original's client API, once, results printed as JSON.

Run as it is, it uses the ORIGINAL (qcg-pilotjob 0.14.2); run with
``python -m qcgpj_async.compat api_scenario.py WD`` the same file uses ours.
tests/compat/test_reference.py compares the two outputs' shapes.
"""

import json
import sys

from qcg.pilotjob.api import errors
from qcg.pilotjob.api.job import Jobs
from qcg.pilotjob.api.manager import LocalManager

out = {}


def error_of(call):
    try:
        call()
    except Exception as e:  # the class and the message are what is compared
        return {"class": type(e).__name__, "message": str(e)}
    return None


manager = LocalManager(["--wd", sys.argv[1], "--nodes", "2"], {"poll_delay": 0.2})
try:
    out["module"] = LocalManager.__module__
    out["resources"] = manager.resources()
    jobs = (
        Jobs()
        .add(name="it", exec="/bin/echo", args=["${it}"], stdout="it.${it}", iteration=3)
        .add(name="plain", script="echo plain", stdout="plain.out")
        .add(name="bad", exec="/bin/false")
        .add(name="dep", exec="/bin/true", after="bad")
        .add_std(
            {
                "name": "std",
                "execution": {"exec": "/bin/true"},
                "resources": {"numCores": {"exact": 1}},
            }
        )
    )
    out["submit"] = manager.submit(jobs)
    out["wait4"] = manager.wait4(out["submit"], timeout=60)
    out["status"] = manager.status(["plain", "it", "it:1"])
    out["info"] = manager.info(["plain", "it", "bad"])
    out["info_childs"] = manager.info("it", withChilds=True)
    parsed = manager.info_parsed(["plain", "it"], withChilds=True)
    out["info_parsed"] = {
        n: {k: repr(type(getattr(i, k)).__name__) for k in sorted(vars(i))}
        for n, i in parsed.items()
    }
    out["info_parsed_childs"] = [c.name for c in parsed["it"].childs]
    out["list"] = manager.list()
    out["system_status"] = manager.system_status()
    out["send_request"] = manager.send_request({"request": "resourcesInfo"})
    out["submit_sleeper"] = manager.submit(
        Jobs().add(name="sleeper", exec="/bin/sleep", args=["30"])
    )
    out["wait4_timeout"] = error_of(lambda: manager.wait4("sleeper", timeout=0.5))
    out["wait4all_timeout"] = error_of(lambda: manager.wait4all(timeout_secs=0.5))
    out["cancel"] = manager.cancel("sleeper")
    out["wait4_cancelled"] = manager.wait4("sleeper", timeout=30)
    seen = []
    while True:  # every end so far, each once
        try:
            seen.append(manager.wait4_any_job_finish(2))
        except errors.TimeoutElapsed:
            break
    out["wait4_any_job_finish"] = sorted(seen)
    out["remove"] = manager.remove(["plain"])
    out["status_unknown"] = error_of(lambda: manager.status("plain"))
    out["wait4_unknown"] = error_of(lambda: manager.wait4("nope"))
    out["submit_invalid"] = error_of(
        lambda: manager.submit(Jobs().add(name="x:y", exec="/bin/true"))
    )
    out["jobs_duplicate"] = error_of(lambda: Jobs().add(name="a", exec="x").add(name="a", exec="y"))
    out["remove_running"] = manager.submit(Jobs().add(name="later", exec="/bin/sleep", args=["30"]))
    out["remove_not_finished"] = error_of(lambda: manager.remove("later"))
    out["wait4all"] = error_of(lambda: manager.wait4all(timeout_secs=0.5))
    out["is_status_finished"] = [manager.is_status_finished(s) for s in ("SUCCEED", "EXECUTING")]
finally:
    manager.finish()
out["after_finish"] = error_of(lambda: manager.resources())
print(json.dumps(out))
