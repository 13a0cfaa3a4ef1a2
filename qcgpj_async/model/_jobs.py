"""The public job list builder, compatible with the original client's ``Jobs``."""

from __future__ import annotations

import json
import os
from typing import Any

from ._convert import job_from_std, job_to_std, jobs_from_std, std_from_simple
from ._errors import JobDescriptionError
from ._spec import JobSpec

__all__ = ("Jobs",)


class Jobs:
    """An ordered list of job descriptions, built call by call.

    Every ``add`` validates at once, so a mistake is reported where it was
    made::

        jobs = Jobs().add(name="a", exec="/bin/date", iteration=4)
        jobs.add(name="b", script="echo done", after="a", numCores={"min": 2})
    """

    def __init__(self) -> None:
        self._jobs: dict[str, JobSpec] = {}

    def _put(self, spec: JobSpec) -> Jobs:
        if spec.name in self._jobs:
            raise JobDescriptionError([f"job {spec.name!r}: name: Job {spec.name} already exist"])
        self._jobs[spec.name] = spec
        return self

    def add(self, **kw: Any) -> Jobs:
        """Add a job in the simple format (``name, exec, args, numCores, iteration, after, ...``).

        Returns:
            self, so calls chain.

        Raises:
            JobDescriptionError: the job is invalid or its name is taken.
        """
        return self._put(job_from_std(std_from_simple(kw), len(self._jobs)))

    def add_std(self, job: dict[str, Any] | None = None, **kw: Any) -> Jobs:
        """Add a job in the standard format (a dict, or its keys as keywords).

        Raises:
            JobDescriptionError: the job is invalid or its name is taken.
        """
        return self._put(job_from_std(job if job is not None else kw, len(self._jobs)))

    def add_spec(self, spec: JobSpec) -> Jobs:
        """Add an already built :class:`JobSpec` (checked as :meth:`add_std` checks a dict).

        Raises:
            JobDescriptionError: the job is invalid or its name is taken.
        """
        return self._put(job_from_std(job_to_std(spec), len(self._jobs)))

    def remove(self, name: str) -> Jobs:
        """Remove a job by name.

        Raises:
            JobDescriptionError: no such job in this list.
        """
        if self._jobs.pop(name, None) is None:
            raise JobDescriptionError([f"job {name!r}: not in this job list"])
        return self

    def clear(self) -> None:
        """Remove every job."""
        self._jobs.clear()

    def job_names(self) -> list[str]:
        """The names, in the order added."""
        return list(self._jobs)

    def jobs(self) -> list[JobSpec]:
        """The models, in the order added."""
        return list(self._jobs.values())

    def to_std(self) -> list[dict[str, Any]]:
        """The standard-format dicts, in the order added."""
        return [job_to_std(j) for j in self._jobs.values()]

    def load_from_file(self, path: str | os.PathLike[str]) -> Jobs:
        """Add the jobs of a JSON file holding a list of standard-format jobs.

        Raises:
            JobDescriptionError: the file is not such a list, or a job is invalid
                (nothing is added then).
            OSError: the file cannot be read.
        """
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                where = f"{os.fspath(path)}: invalid JSON at line {e.lineno} column {e.colno}"
                raise JobDescriptionError([f"{where}: {e.msg}"]) from None
        if not isinstance(data, list):
            raise JobDescriptionError([f"{os.fspath(path)}: must hold a JSON list of jobs"])
        specs = jobs_from_std(data)
        clash = [s.name for s in specs if s.name in self._jobs]
        if clash:
            raise JobDescriptionError([f"job {n!r}: name: Job {n} already exist" for n in clash])
        for s in specs:
            self._jobs[s.name] = s
        return self

    def save_to_file(self, path: str | os.PathLike[str]) -> None:
        """Write the jobs as a JSON list of standard-format jobs."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_std(), f, indent=2)

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"Jobs({self.job_names()!r})"
