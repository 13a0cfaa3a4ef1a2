"""cattrs converters between the wire formats and the job models.

One private converter per format (never cattrs' global one):

* the standard JSON dict (``{"name": ..., "execution": {...}, "resources":
  {"numCores": {"exact": 4}}}``) <-> :class:`JobSpec`, an exact round trip of
  the normalized form (defaults and empty values are left out);
* the simple keyword format of the original client's ``Jobs.add(**kw)`` ->
  the standard dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import JobDescriptionError
from ._spec import Iteration, JobSpec, Resources
from ._validate import check_std

__all__ = (
    "SIMPLE_KEYS",
    "job_from_std",
    "job_to_std",
    "jobs_from_std",
    "std_from_simple",
)


def _make_std_converter() -> cattrs.Converter:
    conv = cattrs.Converter(
        omit_if_default=True,
        unstruct_collection_overrides={Sequence: list, tuple: list, Mapping: dict},
    )
    cores, nodes, crs = (override(rename=n) for n in ("numCores", "numNodes", "nodeCrs"))
    conv.register_unstructure_hook(
        Resources,
        make_dict_unstructure_fn(
            Resources,
            conv,
            _cattrs_omit_if_default=True,
            num_cores=cores,
            num_nodes=nodes,
            node_crs=crs,
        ),
    )
    conv.register_structure_hook(
        Resources,
        make_dict_structure_fn(Resources, conv, num_cores=cores, num_nodes=nodes, node_crs=crs),
    )
    conv.register_unstructure_hook(Iteration, _unstructure_iteration)
    conv.register_structure_hook(Iteration, _structure_iteration)
    # Values of iterations and free-form mappings are plain JSON: keep them as they are.
    conv.register_structure_hook(Any, lambda v, _: v)
    return conv


def _unstructure_iteration(it: Iteration) -> dict[str, Any]:
    if it.values is not None:
        return {"values": list(it.values)}
    return {"start": it.start, "stop": it.stop}


def _structure_iteration(d: Mapping[str, Any], _: object) -> Iteration:
    if "values" in d:
        return Iteration(0, len(d["values"]), tuple(d["values"]))
    return Iteration(d.get("start", 0), d["stop"])


_STD = _make_std_converter()


def job_from_std(raw: object, index: int = 0) -> JobSpec:
    """Validate one standard-format job description and build its model.

    Raises:
        JobDescriptionError: listing every problem found.
    """
    norm, problems = check_std(raw, index)
    if norm is None:
        raise JobDescriptionError(problems)
    return _STD.structure(norm, JobSpec)


def jobs_from_std(
    raws: Iterable[object], stds: list[dict[str, Any]] | None = None
) -> list[JobSpec]:
    """Validate a batch; every problem of every job is reported at once.

    Duplicate names inside the batch are a problem too. ``stds``, when given,
    receives each job's normalized standard dict (what :func:`job_to_std` of
    its model would give, as far as :func:`job_from_std` can tell): the
    journal records those instead of converting each model back.

    Raises:
        JobDescriptionError: when any job is invalid (the whole batch is rejected).
    """
    specs: list[JobSpec] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(raws):
        norm, found = check_std(raw, i)
        if norm is None:
            problems.extend(found)
            continue
        name = norm["name"]
        if name in seen:
            problems.append(f"job {name!r}: name: Job {name} already exist (twice in this batch)")
            continue
        seen.add(name)
        specs.append(_STD.structure(norm, JobSpec))
        if stds is not None:
            stds.append(norm)
    if problems:
        raise JobDescriptionError(problems)
    return specs


def job_to_std(spec: JobSpec) -> dict[str, Any]:
    """The standard-format dict of a job model."""
    out: dict[str, Any] = _STD.unstructure(spec)
    return out


#: Keywords of ``Jobs.add`` going under ``execution``.
_SIMPLE_EXEC = (
    "exec",
    "script",
    "args",
    "env",
    "stdin",
    "stdout",
    "stderr",
    "wd",
    "modules",
    "venv",
    "model",
    "model_opts",
)
#: Keywords of ``Jobs.add`` going under ``resources``.
_SIMPLE_RES = ("numCores", "numNodes", "wt", "nodeCrs")
SIMPLE_KEYS = frozenset(
    (*_SIMPLE_EXEC, *_SIMPLE_RES, "gpus", "name", "iteration", "after", "attributes")
)


def std_from_simple(kw: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the original client's ``Jobs.add(**kw)`` keywords to a standard dict.

    ``numCores``/``numNodes`` take an int or a dict, ``iteration`` an int n
    (``0..n-1``), a list (values) or a dict, ``after`` a name or a list; a
    missing name becomes a uuid4; ``gpus=N`` is ``nodeCrs: {"gpu": N}`` (N
    GPUs on each of the job's nodes). The result is not validated yet.

    Raises:
        JobDescriptionError: on an unknown keyword.
    """
    unknown = sorted(set(kw) - SIMPLE_KEYS)
    name = kw.get("name") or str(uuid.uuid4())
    if unknown:
        raise JobDescriptionError(
            [f"job {name!r}: {k}: unknown argument of Jobs.add" for k in unknown]
        )
    job: dict[str, Any] = {"name": name}
    execution = {k: kw[k] for k in _SIMPLE_EXEC if kw.get(k) is not None}
    job["execution"] = execution
    resources: dict[str, Any] = {}
    for key in _SIMPLE_RES:
        v = kw.get(key)
        if v is not None:
            resources[key] = {"exact": v} if isinstance(v, int) and not isinstance(v, bool) else v
    gpus = kw.get("gpus")
    crs = resources.get("nodeCrs")
    if gpus is not None and gpus != 0 and (crs is None or isinstance(crs, dict)):
        if isinstance(crs, dict) and "gpu" in crs and crs["gpu"] != gpus:
            raise JobDescriptionError(
                [f"job {name!r}: gpus: {gpus!r} disagrees with nodeCrs.gpu {crs['gpu']!r}"]
            )
        resources["nodeCrs"] = {**(crs or {}), "gpu": gpus}
    if resources:
        job["resources"] = resources
    it = kw.get("iteration")
    if it is not None:
        if isinstance(it, int) and not isinstance(it, bool):
            job["iteration"] = {"start": 0, "stop": it}
        elif isinstance(it, list):
            job["iteration"] = {"values": it}
        else:
            job["iteration"] = it
    after = kw.get("after")
    if after is not None:
        job["dependencies"] = {"after": [after] if isinstance(after, str) else after}
    if kw.get("attributes") is not None:
        job["attributes"] = kw["attributes"]
    return job
