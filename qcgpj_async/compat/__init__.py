"""The original's synchronous API on qcgpj_async: move over with one import line.

::

    from qcgpj_async.compat import LocalManager, Jobs     # was: from qcg.pilotjob.api...

    manager = LocalManager(["--nodes", "4"])
    names = manager.submit(Jobs().add(script="echo ${it}", stdout="job.out.${it}", iteration=4))
    print(manager.wait4(names))                           # {'<name>': 'SUCCEED'}
    manager.finish()

The modules mirror the original's: :mod:`.manager` (``LocalManager``,
``Manager``), :mod:`.job` (``Jobs``), :mod:`.jobinfo` (``JobInfo``),
:mod:`.errors`, and :mod:`.executor` (``qcg-pilotjob-executor-api``'s
``QCGPJExecutor``). ``python -m qcgpj_async.compat script.py`` runs an
unchanged script with ``qcg.pilotjob.api`` resolving to these.
"""

from . import errors
from .errors import (
    ConnectionError,
    FileError,
    InternalError,
    InvalidJobDescriptionError,
    JobNotDefinedError,
    QCGPJMAError,
    ServiceError,
    TimeoutElapsed,
    WrongArgumentsError,
)
from .job import Jobs
from .jobinfo import JobInfo
from .manager import LocalManager, Manager

__all__ = (
    "ConnectionError",
    "FileError",
    "InternalError",
    "InvalidJobDescriptionError",
    "JobInfo",
    "JobNotDefinedError",
    "Jobs",
    "LocalManager",
    "Manager",
    "QCGPJMAError",
    "ServiceError",
    "TimeoutElapsed",
    "WrongArgumentsError",
    "errors",
)
