"""qcgpj_async: an asyncio/trio-native pilot-job engine.

Run many small tasks inside one allocation (a Slurm job, or a laptop),
packed onto its cores and nodes, honouring dependencies::

    async with Pilot(nodes="4") as pilot:
        names = await pilot.submit(Jobs().add(name="a", exec="/bin/date", iteration=4))
        print(await pilot.wait4(names))
"""

from ._version import __version__
from .engine import StateChanged
from .executors import LocalExecutor, NullExecutor
from .model import (
    InvalidTransition,
    JobDescriptionError,
    JobNotFoundError,
    Jobs,
    JobSpec,
    JobState,
    PilotClosedError,
    PilotStartError,
    PilotTimeoutError,
    QcgpjError,
)
from .runtime import JobInfo, JournalError, Pilot, ResourcesInfo

__all__ = (
    "InvalidTransition",
    "JobInfo",
    "JobDescriptionError",
    "JobNotFoundError",
    "JobSpec",
    "JobState",
    "Jobs",
    "JournalError",
    "LocalExecutor",
    "NullExecutor",
    "Pilot",
    "PilotClosedError",
    "PilotStartError",
    "PilotTimeoutError",
    "QcgpjError",
    "ResourcesInfo",
    "StateChanged",
    "__version__",
)
