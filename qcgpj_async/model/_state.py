"""Job states."""

from __future__ import annotations

import enum

__all__ = ("FINAL_STATES", "JobState")


class JobState(str, enum.Enum):
    """The state of a job or of one iteration of a job.

    A ``str`` too, so ``JobState.SUCCEED == "SUCCEED"`` and it serializes as
    the original's state names.
    """

    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    EXECUTING = "EXECUTING"
    SUCCEED = "SUCCEED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    OMITTED = "OMITTED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True for SUCCEED, FAILED, CANCELED and OMITTED."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED})
