"""The job lifecycle: the one table of allowed state changes.

Theory: a job (or one iteration of it) is QUEUED until the scheduler gives it
resources (SCHEDULED), EXECUTING once its process started, and ends in one of
four final states: SUCCEED (exit 0), FAILED (non-zero exit, launch error,
wall time exceeded), CANCELED (by the user) or OMITTED (a dependency did not
succeed, so it never runs). A queued job can also end FAILED when its
iterations were all omitted. Nothing leaves a final state. The engine
changes states only through :func:`check`, so an impossible change raises
:class:`InvalidTransition` instead of corrupting the registry.
"""

from __future__ import annotations

from ..model import InvalidTransition, JobState

__all__ = ("ALLOWED", "check")

Q, S, E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING
OK, FAIL, CANCEL, OMIT = JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED

ALLOWED: dict[JobState, frozenset[JobState]] = {
    Q: frozenset({S, OMIT, FAIL, CANCEL}),
    S: frozenset({E, FAIL, CANCEL}),
    E: frozenset({OK, FAIL, CANCEL}),
    OK: frozenset(),
    FAIL: frozenset(),
    CANCEL: frozenset(),
    OMIT: frozenset(),
}


def check(what: str, old: JobState, new: JobState) -> None:
    """Raise unless ``old -> new`` is allowed.

    Raises:
        InvalidTransition: naming ``what`` (the job or iteration) and both states.
    """
    if new not in ALLOWED[old]:
        raise InvalidTransition(f"{what}: {old.value} -> {new.value} is not allowed")
