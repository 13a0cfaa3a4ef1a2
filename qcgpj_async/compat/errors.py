"""The errors of the original's client API (``qcg.pilotjob.api.errors``), same names, same tree.

Every error the compatibility API raises on purpose derives from
:class:`QCGPJMAError`, but for :class:`TimeoutElapsed`, which the original
derives from :class:`Exception` directly (code catching ``QCGPJMAError``
around a wait must not catch a timeout: we keep that).
"""

from __future__ import annotations

__all__ = (
    "ConnectionError",
    "FileError",
    "InternalError",
    "InvalidJobDescriptionError",
    "JobNotDefinedError",
    "QCGPJMAError",
    "ServiceError",
    "TimeoutElapsed",
    "WrongArgumentsError",
)


class QCGPJMAError(Exception):
    """The root of the client API's errors."""


class InternalError(QCGPJMAError):
    """A reply of an unexpected form."""


class InvalidJobDescriptionError(QCGPJMAError):
    """A job description that :class:`~qcgpj_async.compat.job.Jobs` cannot take."""


class JobNotDefinedError(QCGPJMAError):
    """A name that is not in a :class:`~qcgpj_async.compat.job.Jobs` group."""


class ConnectionError(QCGPJMAError):
    """The manager answered a request with an error, or cannot be reached.

    The message of a rejected request is ``Request failed - <the manager's message>``.
    """


class WrongArgumentsError(QCGPJMAError):
    """Arguments the API cannot take (e.g. an unsupported server argument)."""


class FileError(QCGPJMAError):
    """A job file that cannot be read or written."""


class ServiceError(QCGPJMAError):
    """The manager could not be started, or cannot do what was asked."""


class TimeoutElapsed(Exception):
    """A wait ran past its timeout."""
