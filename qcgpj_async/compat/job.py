"""The original's ``Jobs`` builder (``qcg.pilotjob.api.job``): job descriptions as plain dicts.

``Jobs().add(**simple)`` turns the simple format into the standard one (as
the original: ``numCores``/``numNodes``/``wt`` under ``resources``, the rest
under ``execution``, ``after`` under ``dependencies``) after the original's
light checks; ``add_std(**standard)`` takes the standard format as it is. The
full check is the manager's, at submit: it names the job and the field.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from .errors import FileError, InvalidJobDescriptionError, JobNotDefinedError, QCGPJMAError

__all__ = ("ITERATE_ATTRS", "JOB_RES_ATTRS", "JOB_TOP_ATTRS", "MAX_ITERATIONS", "Jobs")

_Attrs = dict[str, dict[str, Any]]

#: The simple format's keys: required or not, and the types each may have.
JOB_TOP_ATTRS: _Attrs = {
    "name": {"req": True, "types": [str]},
    "exec": {"req": False, "types": [str]},
    "script": {"req": False, "types": [str]},
    "args": {"req": False, "types": [list, str]},
    "stdin": {"req": False, "types": [str]},
    "stdout": {"req": False, "types": [str]},
    "stderr": {"req": False, "types": [str]},
    "wd": {"req": False, "types": [str]},
    "modules": {"req": False, "types": [list, str]},
    "venv": {"req": False, "types": [str]},
    "model": {"req": False, "types": [str]},
    "model_opts": {"req": False, "types": [dict]},
    "numNodes": {"req": False, "types": [int, dict]},
    "numCores": {"req": False, "types": [int, dict]},
    "wt": {"req": False, "types": [str]},
    "iteration": {"req": False, "types": [int, list, dict]},
    "after": {"req": False, "types": [list, str]},
}
#: Keys of ``numCores`` / ``numNodes`` given as a dict.
JOB_RES_ATTRS: _Attrs = {
    "min": {"req": False, "types": [int]},
    "max": {"req": False, "types": [int]},
    "exact": {"req": False, "types": [int]},
    "scheduler": {"req": False, "types": [str]},
}
#: Keys of ``iteration`` given as a dict.
ITERATE_ATTRS: _Attrs = {
    "start": {"req": False, "types": [int]},
    "stop": {"req": False, "types": [int]},
    "values": {"req": False, "types": [list]},
}
#: The most iterations a simple job may have (the original's limit).
MAX_ITERATIONS = 64 * 1024

_EXECUTION_KEYS = ("args", "stdin", "stdout", "stderr", "wd", "modules", "venv", "model")
_RESOURCE_KEYS = ("numCores", "numNodes", "wt")


def _type_ok(value: Any, types: list[type]) -> bool:
    # bool is an int to isinstance, as in the original: numCores=True passes here
    # and is refused by the manager's own check.
    return any(isinstance(value, t) for t in types)


def _check_element(name: str, element: Any, spec: _Attrs) -> None:
    if not isinstance(element, dict):
        return
    for key, value in element.items():
        if key not in spec:
            raise InvalidJobDescriptionError(f"Unknown {name} attribute {key}")
        if not _type_ok(value, spec[key]["types"]):
            raise InvalidJobDescriptionError(f"Invalid {name} attribute {key} type {type(value)}")


def _merged(job_attrs: dict[str, Any] | None, kw_attrs: dict[str, Any]) -> dict[str, Any]:
    # A copy: the caller's dict is not changed (the original filled in a name in it).
    return {**(job_attrs or {}), **kw_attrs}


class Jobs:
    """A group of job descriptions to submit, in the order they were added.

    ::

        jobs = Jobs().add(name="a", exec="/bin/date", iteration=4).add(script="echo b", after="a")
        manager.submit(jobs)
    """

    def __init__(self) -> None:
        self._list: dict[str, dict[str, Any]] = {}
        self._job_idx = 0

    def add(self, job_attrs: dict[str, Any] | None = None, **kw_attrs: Any) -> Jobs:
        """Add a job in the simple format (``job_attrs`` and keywords merged).

        Keys: ``name`` (default: a uuid4), ``exec`` or ``script``, ``args``,
        ``stdin``, ``stdout``, ``stderr``, ``wd``, ``modules``, ``venv``,
        ``model``, ``model_opts``, ``numCores``/``numNodes`` (an int or
        ``{exact|min|max|scheduler}``), ``wt``, ``iteration`` (an int n, a list
        of values, or ``{start, stop}``), ``after`` (a name or a list).

        Returns:
            This group (calls chain).

        Raises:
            InvalidJobDescriptionError: a name already in the group, an unknown
                key, a value of the wrong type, or neither/both of exec and script.
        """
        data = _merged(job_attrs, kw_attrs)
        self._check_simple(data)
        self._append_job(data["name"], self._simple_to_std(data))
        return self

    def add_std(self, job_attrs: dict[str, Any] | None = None, **kw_attrs: Any) -> Jobs:
        """Add a job in the standard format (the request files' form).

        Returns:
            This group (calls chain).

        Raises:
            InvalidJobDescriptionError: no ``execution.exec``/``script``, or a
                name already in the group.
        """
        data = _merged(job_attrs, kw_attrs)
        self._check_std(data)
        self._append_job(data["name"], data)
        return self

    def remove(self, name: str) -> None:
        """Remove a job from the group.

        Raises:
            JobNotDefinedError: no job of that name in the group.
        """
        if name not in self._list:
            raise JobNotDefinedError(name)
        del self._list[name]

    def clear(self) -> int:
        """Remove every job; returns how many there were."""
        count = len(self._list)
        self._list.clear()
        return count

    def job_names(self) -> list[str]:
        """The names of the jobs in the group."""
        return list(self._list)

    def ordered_job_names(self) -> list[str]:
        """The names, in the order the jobs were added."""
        return [n for n, _ in sorted(self._list.items(), key=lambda kv: kv[1]["idx"])]

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs in the standard format."""
        return [entry["data"] for entry in self._list.values()]

    def ordered_jobs(self) -> list[dict[str, Any]]:
        """The jobs in the standard format, in the order they were added (what is submitted)."""
        return [e["data"] for e in sorted(self._list.values(), key=lambda e: e["idx"])]

    def load_from_file(self, file_path: str | os.PathLike[str]) -> None:
        """Add the jobs of a JSON file (a list of standard-format jobs).

        Raises:
            InvalidJobDescriptionError: a job without execution, or a name already here.
            FileError: the file cannot be read or is not JSON.
        """
        try:
            with open(file_path) as f:
                loaded = json.load(f)
            for job in loaded:
                self._check_std(job)
                self._append_job(job["name"], job)
        except QCGPJMAError:
            raise
        except Exception as e:
            raise FileError(f'File to open/write file "{file_path}": {e}') from e

    def save_to_file(self, file_path: str | os.PathLike[str]) -> None:
        """Write the jobs, in order, to a JSON file (``load_from_file`` reads it back).

        Raises:
            FileError: the file cannot be written.
        """
        try:
            with open(file_path, "w") as f:
                f.write(json.dumps(self.ordered_jobs(), indent=2))
        except Exception as e:
            raise FileError(f'File to open/write file "{file_path}": {e}') from e

    def __len__(self) -> int:
        return len(self._list)

    # -- the original's checks ----------------------------------------------------

    def _append_job(self, name: str, std: dict[str, Any]) -> None:
        self._list[name] = {"idx": self._job_idx, "data": std}
        self._job_idx += 1

    def _check_std(self, std: dict[str, Any]) -> None:
        std.setdefault("name", str(uuid.uuid4()))
        execution = std.get("execution")
        if not isinstance(execution, dict) or not ("exec" in execution or "script" in execution):
            raise InvalidJobDescriptionError('Missing "execution/exec" key')
        if std["name"] in self._list:
            raise InvalidJobDescriptionError(f"Job {std['name']} already in list")

    def _check_simple(self, attrs: dict[str, Any]) -> None:
        attrs.setdefault("name", str(uuid.uuid4()))
        if attrs["name"] in self._list:
            raise InvalidJobDescriptionError(f"Job {attrs['name']} already in list")
        for key, value in attrs.items():
            if key not in JOB_TOP_ATTRS:
                raise InvalidJobDescriptionError(f"Unknown attribute {key}")
            if not _type_ok(value, JOB_TOP_ATTRS[key]["types"]):
                raise InvalidJobDescriptionError(f"Invalid attribute {key} type {type(value)}")
        if isinstance(attrs.get("after"), str):
            attrs["after"] = [attrs["after"]]
        if "exec" not in attrs and "script" not in attrs:
            raise InvalidJobDescriptionError("No 'exec' nor 'script' defined")
        if "exec" in attrs and "script" in attrs:
            raise InvalidJobDescriptionError("Both 'exec' and 'script' defined")
        for key in ("numCores", "numNodes"):
            if isinstance(attrs.get(key), int):
                attrs[key] = {"exact": attrs[key]}
            _check_element(key, attrs.get(key), JOB_RES_ATTRS)
        if "iteration" in attrs:
            self._check_iteration(attrs)

    @staticmethod
    def _check_iteration(attrs: dict[str, Any]) -> None:
        it = attrs["iteration"]
        if isinstance(it, int):
            it = attrs["iteration"] = {"start": 0, "stop": it}
        elif isinstance(it, list):
            it = attrs["iteration"] = {"values": it}
        _check_element("iteration", it, ITERATE_ATTRS)
        if "stop" not in it and "values" not in it:
            raise InvalidJobDescriptionError(
                "Required attribute stop of element iteration not defined"
            )
        if "stop" in it and "values" in it:
            raise InvalidJobDescriptionError("Stop and values iteration attribute are excluding")
        count = len(it["values"]) if "values" in it else it["stop"] - it.get("start", 0)
        if count < 0 or count > MAX_ITERATIONS:
            raise InvalidJobDescriptionError(
                f"Wrong number of iterations - outside range (0, {MAX_ITERATIONS})"
            )

    @staticmethod
    def _simple_to_std(simple: dict[str, Any]) -> dict[str, Any]:
        execution: dict[str, Any] = {}
        if "exec" in simple:
            execution["exec"] = simple["exec"]
        else:
            execution["script"] = simple["script"]
        for key in (*_EXECUTION_KEYS, "model_opts"):
            if key in simple:
                execution[key] = simple[key]
        std: dict[str, Any] = {"name": simple["name"], "execution": execution}
        resources = {k: simple[k] for k in _RESOURCE_KEYS if k in simple}
        if resources:
            std["resources"] = resources
        if "iteration" in simple:
            std["iteration"] = simple["iteration"]
        if "after" in simple:
            std["dependencies"] = {"after": simple["after"]}
        return std
