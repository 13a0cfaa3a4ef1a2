"""Variables in job descriptions: ``${name}`` replaced by explicit name only.

Unlike the original (string.Template over the whole JSON text), only the
listed names are touched: an unknown ``${x}`` and every ``$$`` in a script
stay exactly as written. ``$${it}`` is read as ``${it}`` (how the original's
users wrote it), only for the listed names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = (
    "EXECUTION_VARIABLES",
    "SUBMIT_VARIABLES",
    "substitute",
    "substitute_obj",
)

#: Substituted on the whole job description when it is submitted.
SUBMIT_VARIABLES = frozenset({"rcnt", "uniq", "sname", "date", "time", "dateTime", "jname"})
#: Substituted on ``execution`` when an iteration is about to start.
EXECUTION_VARIABLES = frozenset({"root_wd", "ncores", "nnodes", "nlist", "it", "itval"})

# ``$${name}`` too: the original's users escaped ``$`` that way (its string.Template
# turned ``$$`` into ``$`` at submit), so it means ``${name}`` for a listed name.
_VAR = re.compile(r"\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``${name}`` (or ``$${name}``) for each name in ``variables``; leave the rest.

    Anything else stays as written: ``${other}``, ``$${other}`` and a bare ``$$``.

    Args:
        text: the string to expand.
        variables: the values of the known names.

    Returns:
        ``text`` with the known variables replaced.
    """
    if "${" not in text:
        return text
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def substitute_obj(obj: Any, variables: Mapping[str, str]) -> Any:
    """Apply :func:`substitute` to every string inside dicts and lists.

    Dict keys are left alone; non-string leaves are returned unchanged.
    """
    if isinstance(obj, str):
        return substitute(obj, variables)
    if isinstance(obj, dict):
        return {k: substitute_obj(v, variables) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute_obj(v, variables) for v in obj]
    return obj
