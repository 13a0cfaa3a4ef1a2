"""Validation of the standard job format: every rule, every problem reported.

:func:`check_std` walks one raw job dict, collects a message for each problem
(``job 'a': execution.args: Execution arguments must be an array``) and returns
the normalized dict (ints wrapped as ``{"exact": n}``, args as strings, the
model lower-cased, ...) that the cattrs converter turns into a
:class:`~qcgpj_async.model.JobSpec` without further checks.
"""

from __future__ import annotations

import re
from typing import Any

from ._spec import MODELS, SCHEDULERS, parse_wall_time

__all__ = ("check_name", "check_std")

_TOP_KEYS = frozenset({"name", "execution", "resources", "iteration", "dependencies", "attributes"})
_EXEC_STR_KEYS = ("exec", "script", "wd", "stdin", "stdout", "stderr", "venv")
_EXEC_KEYS = frozenset((*_EXEC_STR_KEYS, "args", "env", "modules", "model", "model_opts"))
_RES_KEYS = frozenset({"numCores", "numNodes", "wt", "nodeCrs"})
_COUNT_KEYS = frozenset({"exact", "min", "max", "scheduler"})
_CRS_KEYS = frozenset({"gpu", "mem"})
_MODEL_OPTS = {"mpirun": str, "mpirun_args": list, "srun_args": list}
_BAD_NAME = re.compile(r"[${}()'\"\s:]")
_DEP = re.compile(r"([^:]+)(?::(\d+|\$?\$\{it\}))?")


def check_name(name: object) -> str | None:
    """The problem with a job name, or None if it is a valid one."""
    if not isinstance(name, str):
        return f"name: must be a string, not {type(name).__name__}"
    if not name:
        return "name: must not be empty"
    if _BAD_NAME.search(name):
        # The original's phrase first: tools match on it.
        return (
            f"name: Invalid job name {name}: {name!r} contains a forbidden character "
            "($ { } ( ) ' \" : or whitespace)"
        )
    return None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tname(v: object) -> str:
    return type(v).__name__


class _Problems:
    __slots__ = ("items", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[str] = []

    def add(self, field: str, msg: str) -> None:
        self.items.append(f"{self.prefix}: {field}: {msg}" if field else f"{self.prefix}: {msg}")


def check_std(raw: object, index: int = 0) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate one job in the standard format.

    Args:
        raw: the job description as parsed from JSON.
        index: its position in the batch, to name a job that has no valid name.

    Returns:
        ``(normalized, problems)``: the normalized dict (None when there are
        problems) and the list of messages, each naming the job and field.
    """
    if not isinstance(raw, dict):
        return None, [f"job #{index}: must be an object (dict), not {_tname(raw)}"]
    name = raw.get("name")
    name_problem = check_name(name) if "name" in raw else "name: missing (required)"
    if name_problem is None:
        prefix = f"job {name!r}"
    else:
        prefix = f"job #{index} ({name!r})" if isinstance(name, str) else f"job #{index}"
    p = _Problems(prefix)
    if name_problem is not None:
        p.add("", name_problem)
    for key in raw:
        if key not in _TOP_KEYS:
            p.add(str(key), "unknown key")
    out: dict[str, Any] = {"name": name}

    if "execution" not in raw:
        p.add("execution", "Job execution (exec or script) not defined")
    else:
        out["execution"] = _check_execution(raw["execution"], p)

    if "resources" in raw:
        out["resources"] = _check_resources(raw["resources"], p)
    if "iteration" in raw:
        out["iteration"] = _check_iteration(raw["iteration"], p)
    if "dependencies" in raw:
        out["dependencies"] = _check_dependencies(raw["dependencies"], name, p)
    if "attributes" in raw and raw["attributes"] is not None:
        if not isinstance(raw["attributes"], dict):
            p.add("attributes", f"must be an object (dict), not {_tname(raw['attributes'])}")
        else:
            out["attributes"] = raw["attributes"]
    if "iteration" not in raw and "resources" in raw and isinstance(out.get("resources"), dict):
        for key in ("numCores", "numNodes"):
            cnt = out["resources"].get(key)
            if isinstance(cnt, dict) and "scheduler" in cnt:
                p.add(f"resources.{key}.scheduler", "an iteration scheduler needs an iteration")
    if p.items:
        return None, p.items
    return {k: v for k, v in out.items() if v is not None}, []


def _check_execution(ex: object, p: _Problems) -> dict[str, Any] | None:
    if not isinstance(ex, dict):
        p.add("execution", f"must be an object (dict), not {_tname(ex)}")
        return None
    out: dict[str, Any] = {}
    for key in ex:
        if key not in _EXEC_KEYS:
            p.add(f"execution.{key}", "unknown key")
    for key in _EXEC_STR_KEYS:
        v = ex.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            p.add(f"execution.{key}", f"must be a string, not {_tname(v)}")
        elif not v and key in ("exec", "script"):
            p.add(f"execution.{key}", "must not be empty")
        else:
            out[key] = v
    has_exec, has_script = ex.get("exec") is not None, ex.get("script") is not None
    if not has_exec and not has_script:
        p.add("execution", "Job execution (exec or script) not defined")
    # Empty args/env beside a script are what the original's own to_dict() writes.
    has_args, has_env = ex.get("args") not in (None, []), ex.get("env") not in (None, {})
    if has_script and (has_exec or has_args or has_env):
        p.add("execution", "Job script and exec or args or env defined")

    args = ex.get("args")
    if args is not None:
        if not isinstance(args, list):
            p.add("execution.args", "Execution arguments must be an array")
        else:
            for i, a in enumerate(args):
                if isinstance(a, (dict, list)) or a is None:
                    p.add(f"execution.args[{i}]", f"must be a string or number, not {_tname(a)}")
            out["args"] = [str(a) for a in args]
    env = ex.get("env")
    if env is not None:
        if not isinstance(env, dict):
            p.add("execution.env", "Execution environment must be an dictionary")
        else:
            for k, v in env.items():
                if isinstance(v, (dict, list)) or v is None:
                    p.add(f"execution.env.{k}", f"must be a string or number, not {_tname(v)}")
            out["env"] = {str(k): str(v) for k, v in env.items()}
    if has_script:
        for key in ("args", "env"):
            if not out.get(key, True):
                del out[key]
    mods = ex.get("modules")
    if mods is not None:
        if isinstance(mods, str):
            out["modules"] = [mods]
        elif isinstance(mods, list) and all(isinstance(m, str) for m in mods):
            out["modules"] = list(mods)
        else:
            p.add("execution.modules", "must be a string or a list of strings")
    model = ex.get("model")
    if model is not None:
        if not isinstance(model, str) or model.lower() not in MODELS:
            p.add("execution.model", f"unknown model {model!r} (one of: {', '.join(MODELS)})")
        else:
            out["model"] = model.lower()
    opts = ex.get("model_opts")
    if opts is not None:
        if not isinstance(opts, dict):
            p.add("execution.model_opts", f"must be an object (dict), not {_tname(opts)}")
        else:
            for k, v in opts.items():
                want = _MODEL_OPTS.get(k)
                if want is None:
                    known = ", ".join(_MODEL_OPTS)
                    p.add(f"execution.model_opts.{k}", f"unknown key (one of: {known})")
                elif not isinstance(v, want):
                    p.add(f"execution.model_opts.{k}", f"must be a {want.__name__}")
            out["model_opts"] = opts
    return out


def _check_count(v: object, field: str, p: _Problems) -> dict[str, Any] | None:
    if _is_int(v):
        assert isinstance(v, int)
        if v < 1:
            p.add(field, f"must be at least 1, not {v}")
        return {"exact": v}
    if not isinstance(v, dict):
        p.add(field, f"must be a number or an object with exact/min/max, not {_tname(v)}")
        return None
    for key in v:
        if key not in _COUNT_KEYS:
            p.add(f"{field}.{key}", "unknown key")
    for key in ("exact", "min", "max"):
        x = v.get(key)
        if x is None:
            continue
        if not _is_int(x):
            p.add(f"{field}.{key}", f"must be an integer, not {_tname(x)}")
        elif x < 1:
            p.add(f"{field}.{key}", f"must be at least 1, not {x}")
    exact, lo, hi, sched = v.get("exact"), v.get("min"), v.get("max"), v.get("scheduler")
    if exact is not None and (lo is not None or hi is not None or sched is not None):
        p.add(field, "Exact number of resources defined with min/max/scheduler")
    if exact is None and lo is None and hi is None and sched is None:
        p.add(field, "No resources defined")
    if _is_int(lo) and _is_int(hi) and lo > hi:  # type: ignore[operator]
        # The original's phrase (sic) first: tools match on it.
        p.add(field, f"Maximum number greater than minimal: min ({lo}) greater than max ({hi})")
    if sched is not None:
        if hi is not None:
            p.add(f"{field}.max", "not allowed together with an iteration scheduler")
        _check_scheduler(sched, f"{field}.scheduler", p)
    return {k: v[k] for k in ("exact", "min", "max", "scheduler") if v.get(k) is not None}


def _check_scheduler(s: object, field: str, p: _Problems) -> None:
    if not isinstance(s, dict):
        p.add(field, f"must be an object with a name, not {_tname(s)}")
        return
    for key in s:
        if key not in ("name", "params"):
            p.add(f"{field}.{key}", "unknown key")
    name = s.get("name")
    if name not in SCHEDULERS:
        p.add(f"{field}.name", f"unknown scheduler {name!r} (one of: {', '.join(SCHEDULERS)})")
    params = s.get("params", {})
    if not isinstance(params, dict):
        p.add(f"{field}.params", f"must be an object (dict), not {_tname(params)}")
    elif name == "split-into" and "parts" in params:
        parts = params["parts"]
        if not _is_int(parts) or parts < 1:
            p.add(f"{field}.params.parts", f"must be an integer >= 1, not {parts!r}")


def _check_resources(res: object, p: _Problems) -> dict[str, Any] | None:
    if not isinstance(res, dict):
        p.add("resources", f"must be an object (dict), not {_tname(res)}")
        return None
    out: dict[str, Any] = {}
    for key in res:
        if key not in _RES_KEYS:
            p.add(f"resources.{key}", "unknown key")
    for key in ("numCores", "numNodes"):
        if res.get(key) is not None:
            out[key] = _check_count(res[key], f"resources.{key}", p)
    wt = res.get("wt")
    if wt is not None:
        if not isinstance(wt, str) or parse_wall_time(wt) is None:
            p.add("resources.wt", f"invalid wall time {wt!r} (e.g. '1h30m', '10m', '90s'; > 0)")
        else:
            out["wt"] = wt
    crs = res.get("nodeCrs")
    if crs is not None:
        if not isinstance(crs, dict):
            p.add("resources.nodeCrs", f"must be an object (dict), not {_tname(crs)}")
        else:
            for k, n in crs.items():
                if str(k).lower() not in _CRS_KEYS:
                    p.add(f"resources.nodeCrs.{k}", "unknown consumable resource (gpu, mem)")
                elif not _is_int(n) or n < 1:
                    p.add(f"resources.nodeCrs.{k}", f"must be an integer >= 1, not {n!r}")
            out["nodeCrs"] = {str(k).lower(): n for k, n in crs.items()}
    return out


def _check_iteration(it: object, p: _Problems) -> dict[str, Any] | None:
    if not isinstance(it, dict):
        p.add("iteration", f"must be an object with start/stop or values, not {_tname(it)}")
        return None
    for key in it:
        if key not in ("start", "stop", "values"):
            p.add(f"iteration.{key}", "unknown key")
    if "values" in it:
        values = it["values"]
        if "start" in it or "stop" in it:
            p.add("iteration", "values excludes start/stop")
        if not isinstance(values, list) or not values:
            p.add("iteration.values", "must be a non-empty list")
            return None
        return {"values": values}
    start, stop = it.get("start", 0), it.get("stop")
    ok = True
    if not _is_int(start) or start < 0:
        p.add("iteration.start", f"must be an integer >= 0, not {start!r}")
        ok = False
    if stop is None:
        p.add("iteration.stop", "missing (required without values)")
        return None
    if not _is_int(stop):
        p.add("iteration.stop", f"must be an integer, not {_tname(stop)}")
        return None
    if ok and stop <= start:
        p.add(
            "iteration",
            "Wrong format of iteration directive: "  # the original's phrase first
            f"stop ({stop}) must be greater than start ({start})",
        )
        return None
    return {"start": start, "stop": stop}


def _check_dependencies(deps: object, name: object, p: _Problems) -> dict[str, Any] | None:
    if not isinstance(deps, dict):
        p.add("dependencies", f"must be an object with 'after', not {_tname(deps)}")
        return None
    for key in deps:
        if key != "after":
            p.add(f"dependencies.{key}", "unknown key")
    after = deps.get("after", [])
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list):
        p.add("dependencies.after", f"must be a list of job names, not {_tname(after)}")
        return None
    for i, dep in enumerate(after):
        m = _DEP.fullmatch(dep) if isinstance(dep, str) else None
        if m is None or check_name(m.group(1)) is not None:
            p.add(
                f"dependencies.after[{i}]",
                f"invalid dependency {dep!r} (job, job:N or job:${{it}})",
            )
        elif m.group(1) == name:
            p.add(f"dependencies.after[{i}]", "a job cannot depend on itself")
    # ``a:$${it}`` (the original's users' escape) is ``a:${it}``.
    return {"after": [d.replace(":$${it}", ":${it}") if isinstance(d, str) else d for d in after]}
