"""The runtime: the Pilot (anyio), its service directory and its answers."""

from ._info import ChildInfo, IterationCounts, JobInfo, ResourcesInfo, RunInfo
from ._journal import JournalError
from ._pilot import JobsLike, Pilot, local_nodes

__all__ = (
    "ChildInfo",
    "IterationCounts",
    "JobInfo",
    "JobsLike",
    "JournalError",
    "Pilot",
    "ResourcesInfo",
    "RunInfo",
    "local_nodes",
)
