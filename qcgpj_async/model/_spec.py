"""Job descriptions as frozen attrs classes (the original's "standard" format).

The classes only hold data that has passed validation
(:mod:`qcgpj_async.model._validate`); build them through
:func:`qcgpj_async.model.job_from_std` or :class:`qcgpj_async.Jobs` rather
than by hand when the input comes from a user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = (
    "MODELS",
    "SCHEDULERS",
    "Dependencies",
    "Execution",
    "Iteration",
    "IterationScheduler",
    "JobSpec",
    "ResourceCount",
    "Resources",
    "parse_wall_time",
)

#: Execution models the original knows.
MODELS = ("default", "threads", "openmpi", "intelmpi", "srunmpi")
#: Iteration resource schedulers.
SCHEDULERS = ("maximum-iters", "split-into")

_WT = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_wall_time(text: str) -> int | None:
    """Seconds of a wall time like ``1h30m``, ``90s`` or ``10m``.

    Returns:
        The number of seconds, or None when ``text`` is not of that form or
        is zero.
    """
    m = _WT.fullmatch(text.strip())
    if m is None or not any(m.groups()):
        return None
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    total = h * 3600 + mi * 60 + s
    return total or None


@attrs.frozen
class IterationScheduler:
    """How iterations of one job share the resources (``maximum-iters``, ``split-into``)."""

    name: str
    params: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ResourceCount:
    """A number of cores or nodes: exact, or a min/max range."""

    exact: int | None = None
    min: int | None = None
    max: int | None = None
    scheduler: IterationScheduler | None = None

    @property
    def lower(self) -> int:
        """The least acceptable amount."""
        if self.exact is not None:
            return self.exact
        return self.min if self.min is not None else 1

    @property
    def upper(self) -> int | None:
        """The most wanted amount; None when unbounded (take what is free)."""
        if self.exact is not None:
            return self.exact
        return self.max


@attrs.frozen
class Resources:
    """What one job (or each iteration) needs.

    ``num_cores`` alone: cores on any number of nodes. With ``num_nodes``:
    cores on EACH node. Neither: one core.
    """

    num_cores: ResourceCount | None = None
    num_nodes: ResourceCount | None = None
    wt: str | None = None
    node_crs: Mapping[str, int] | None = None

    @property
    def wall_time(self) -> int | None:
        """The wall time in seconds, or None when not set."""
        return parse_wall_time(self.wt) if self.wt is not None else None


@attrs.frozen
class Execution:
    """What to run and how."""

    exec: str | None = None
    script: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    wd: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    modules: tuple[str, ...] = ()
    venv: str | None = None
    model: str | None = None
    model_opts: Mapping[str, Any] | None = None


@attrs.frozen
class Iteration:
    """A loop over indexes ``start..stop-1``, or over ``values``."""

    start: int = 0
    stop: int = 0
    values: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def value(self, index: int) -> str:
        """The ``${itval}`` of iteration ``index``."""
        if self.values is not None:
            return str(self.values[index - self.start])
        return str(index)


@attrs.frozen
class Dependencies:
    """Jobs (``a``), iterations (``a:3``) or paired iterations (``a:${it}``) to wait for."""

    after: tuple[str, ...] = ()


@attrs.frozen
class JobSpec:
    """One job as the user described it."""

    name: str
    execution: Execution
    resources: Resources = Resources()
    iteration: Iteration | None = None
    dependencies: Dependencies | None = None
    attributes: Mapping[str, Any] | None = None
