"""The package's error hierarchy.

Every error raised on purpose by qcgpj_async derives from :class:`QcgpjError`;
the leaves also derive from the matching builtin, so ``except ValueError`` or
``except KeyError`` in user code keeps working.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable

__all__ = (
    "InvalidTransition",
    "JobDescriptionError",
    "JobNotFoundError",
    "PilotClosedError",
    "PilotStartError",
    "PilotTimeoutError",
    "QcgpjError",
)


class QcgpjError(Exception):
    """Root of every error qcgpj_async raises on purpose."""


class JobDescriptionError(QcgpjError, ValueError):
    """A job description (or a batch of them) was rejected.

    Lists every problem found, not just the first, each naming the job and the
    field, e.g. ``job 'a': execution.args: Execution arguments must be an array``.

    Attributes:
        problems: one message per problem, in the order found.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        lines = [f"{len(self.problems)} problems in the job descriptions:"]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


class JobNotFoundError(QcgpjError, KeyError):
    """A job (or job iteration) name is not known to the pilot."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        self.message = message or f"Job '{name}' doesn't exist"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PilotTimeoutError(QcgpjError, builtins.TimeoutError):
    """A wait on jobs did not finish within its timeout."""


class PilotClosedError(QcgpjError, RuntimeError):
    """The pilot is closed or closing and takes no more requests."""


class PilotStartError(QcgpjError, OSError):
    """The pilot cannot start: its working directory, service directory or report file
    cannot be made (the message says which, and why)."""


class InvalidTransition(QcgpjError, RuntimeError):
    """A job state change that the state machine does not allow."""
