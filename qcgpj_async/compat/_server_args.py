"""The original service's command line (``server_args`` of ``LocalManager``) as Pilot arguments.

Every flag of the original's service is known here, in one of three kinds:
mapped to a :class:`~qcgpj_async.Pilot` argument (``--wd``, ``--nodes``,
...), accepted with a note because it changes nothing here (``--disable-nl``,
``--tags``, ...), or refused with one line naming it, because we do not have
the feature (``--governor``, ...). A flag the original does not have is refused too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .errors import WrongArgumentsError

__all__ = ("ServerArgs", "parse_server_args")

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "notset")


@attrs.define
class ServerArgs:
    """What a list of server arguments asks for.

    Attributes:
        pilot: keyword arguments of :class:`~qcgpj_async.Pilot`.
        net: whether to serve the ZMQ interface too (``--net`` and its port flags).
        net_opts: keyword arguments of ``serve_zmq`` (ports).
        notes: one line per flag accepted that changes nothing here (for the log).
    """

    pilot: dict[str, Any] = attrs.Factory(dict)
    net: bool = False
    net_opts: dict[str, Any] = attrs.Factory(dict)
    notes: list[str] = attrs.Factory(list)


def _int(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise WrongArgumentsError(f"server argument {flag}: not a number: {text!r}") from None


def _seconds(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise WrongArgumentsError(f"server argument {flag}: not a number of seconds: {text!r}")
    return value


def _choice(flag: str, text: str, choices: Sequence[str]) -> str:
    if text.lower() not in choices:
        raise WrongArgumentsError(
            f"server argument {flag}: {text!r} is not one of {', '.join(choices)}"
        )
    return text.lower()


def _pilot(key: str, convert: Callable[[str, str], Any] | None = None) -> Any:
    def apply(out: ServerArgs, flag: str, value: str) -> None:
        out.pilot[key] = convert(flag, value) if convert else value

    return apply


def _net(key: str | None) -> Any:
    def apply(out: ServerArgs, flag: str, value: str) -> None:
        out.net = True
        if key is not None:
            out.net_opts[key] = _int(flag, value)

    return apply


def _note(why: str) -> Any:
    def apply(out: ServerArgs, flag: str, value: str) -> None:
        out.notes.append(f"server argument {flag} accepted: {why}")

    return apply


#: flag -> (takes a value, what it does, or the line that refuses it)
_FLAGS: dict[str, tuple[bool, Any]] = {
    "--net": (False, _net(None)),
    "--net-port": (True, _net("port")),
    "--net-pub-port": (True, _net("pub_port")),
    "--net-port-min": (True, _net("port_min")),
    "--net-port-max": (True, _net("port_max")),
    "--wd": (True, _pilot("wd")),
    "--nodes": (True, _pilot("nodes")),
    "--resources": (
        True,
        _pilot("resources", lambda f, v: _choice(f, v, ("auto", "local", "slurm"))),
    ),
    "--report-format": (
        True,
        _pilot("report_format", lambda f, v: _choice(f, v, ("json", "text", "none"))),
    ),
    "--report-file": (True, _pilot("report_file")),
    "--log": (True, _pilot("log_level", lambda f, v: _choice(f, v, LOG_LEVELS))),
    "--system-core": (False, lambda out, f, v: out.pilot.__setitem__("system_core", True)),
    "--id": (True, _pilot("instance_id")),
    "--resume": (True, _pilot("resume")),
    "--kill-grace": (True, _pilot("kill_grace", lambda f, v: _seconds(f, v))),
    "--envschema": (
        True,
        _note("jobs always get the QCG_PM_* variables, and SLURM_* under Slurm"),
    ),
    "--disable-nl": (False, _note("jobs start without node launchers here")),
    "--nl-init-timeout": (True, _note("there are no node launchers here")),
    "--nl-ready-threshold": (True, _note("there are no node launchers here")),
    "--nl-start-method": (True, _note("there are no node launchers here")),
    "--tags": (True, _note("manager tags are used by the governor mode only")),
    "--show-progress": (False, _note("an in-process manager prints no progress line")),
    "--enable-proc-stats": (False, _note("no process statistics are gathered")),
    "--enable-rt-stats": (False, _note("jobs.report has each run's start, end and runtime")),
    "--wrapper-rt-stats": (True, _note("no wrapper is used to time jobs")),
    "--disable-pub": (False, _note("the publisher is only part of --net")),
    "--governor": (False, "the governor mode is not supported: run one manager per allocation"),
    "--parent": (True, "the governor mode is not supported: run one manager per allocation"),
    "--slurm-partition-nodes": (
        True,
        "partitioning an allocation is not supported: run one manager per allocation",
    ),
    "--slurm-limit-nodes-range-begin": (
        True,
        "limiting the allocation's nodes is not supported: give the nodes with --nodes",
    ),
    "--slurm-limit-nodes-range-end": (
        True,
        "limiting the allocation's nodes is not supported: give the nodes with --nodes",
    ),
    "--slurm-resources-file": (
        True,
        "a Slurm resources file is not supported: give the nodes with --nodes",
    ),
    "--file": (
        False,
        "a LocalManager takes its requests through its methods: "
        "run a request file with `qcgpj-async --file-path FILE`",
    ),
    "--file-path": (
        True,
        "a LocalManager takes its requests through its methods: "
        "run a request file with `qcgpj-async --file-path FILE`",
    ),
}


def parse_server_args(args: Sequence[object] | None) -> ServerArgs:
    """Read the original's server arguments (each flag and value a separate item).

    ``--flag=value`` is taken too. Values are turned into strings first, as the
    original does.

    Raises:
        WrongArgumentsError: an unknown flag, a flag of a feature we do not have
            (one line naming it and what to do instead), or a bad value.
    """
    out = ServerArgs()
    items = [str(a) for a in args or ()]
    i = 0
    while i < len(items):
        flag, eq, value = items[i].partition("=")
        i += 1
        entry = _FLAGS.get(flag)
        if entry is None:
            raise WrongArgumentsError(f"unsupported server argument {flag}")
        takes_value, action = entry
        if isinstance(action, str):
            raise WrongArgumentsError(f"unsupported server argument {flag}: {action}")
        if takes_value and not eq:
            if i >= len(items):
                raise WrongArgumentsError(f"server argument {flag} needs a value")
            value = items[i]
            i += 1
        elif not takes_value and eq:
            raise WrongArgumentsError(f"server argument {flag} takes no value")
        action(out, flag, value)
    return out
