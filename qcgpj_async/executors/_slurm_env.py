"""Discover the nodes and cores of the Slurm allocation we run in.

A pilot started inside a Slurm allocation (``salloc``, ``sbatch``, or a step
of either) learns its resources from the environment Slurm sets:

- ``SLURM_JOB_NODELIST`` (older name ``SLURM_NODELIST``): the allocated nodes
  as a compressed host list, e.g. ``n[1-3,7],gpu01``;
- ``SLURM_JOB_CPUS_PER_NODE``: the CPUs allocated on each of those nodes, in
  order, run-length encoded, e.g. ``4(x2),2`` for 4, 4, 2.

Both are job-level: a step started with ``srun -w n2`` still sees the whole
allocation there, so a pilot may run as a step too.

Host lists are expanded by ``scontrol show hostnames``, Slurm's own parser,
rather than by a parser of ours: the syntax has corner cases (zero padding,
several bracket groups, ``rack[1-2]-n[1-2]``) and differs between Slurm
versions (22.05 rejects a suffix after brackets, ``a[01-02]b``). Two traps of
``scontrol`` are handled here: it exits 0 even when it rejects a list (it
prints ``Invalid hostlist`` on stderr and nothing on stdout), and without a
readable slurm.conf it retries for a minute before failing, hence a timeout.

Everything here is synchronous and pure apart from the one injectable
``runner`` that executes ``scontrol``, so tests pass a fake one. Errors are
:class:`SlurmEnvironmentError` and name the variable and value at fault.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from ..model._errors import QcgpjError

__all__ = (
    "CPUS_PER_NODE_VARIABLE",
    "NODELIST_VARIABLES",
    "SCONTROL_TIMEOUT",
    "Runner",
    "SlurmEnvironmentError",
    "discover",
    "expand_hostlist",
    "in_allocation",
    "parse_cpus_per_node",
    "run_command",
)

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
"""Runs an argv and returns its completed process (text mode, both streams captured).

It may raise :class:`FileNotFoundError` (no such program),
:class:`subprocess.TimeoutExpired` or another :class:`OSError`.
"""

SCONTROL_TIMEOUT = 20.0
"""Seconds granted to ``scontrol show hostnames``.

Expanding a list takes milliseconds, but ``scontrol`` without a usable
slurm.conf retries for about 60 s before giving up.
"""

NODELIST_VARIABLES = ("SLURM_JOB_NODELIST", "SLURM_NODELIST")
"""Where the node list is read from, in order of preference."""

CPUS_PER_NODE_VARIABLE = "SLURM_JOB_CPUS_PER_NODE"

# One item of SLURM_JOB_CPUS_PER_NODE: "<cpus>" or "<cpus>(x<repeat>)".
_CPUS_ITEM = re.compile(r"(?P<cpus>[0-9]+)(?:\(x(?P<repeat>[0-9]+)\))?")
# What no expanded host name may contain: a leftover of the compressed syntax.
_NOT_IN_HOSTNAME = re.compile(r"[\[\],\s]")


class SlurmEnvironmentError(QcgpjError, ValueError):
    """The Slurm environment is missing, malformed or inconsistent."""


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The default :data:`Runner`: run ``argv`` with a timeout, capturing text output.

    Args:
        argv: program and arguments.

    Returns:
        The completed process; a non-zero exit is not an error here.
    """
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=SCONTROL_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def expand_hostlist(
    nodelist: str, *, runner: Runner = run_command, variable: str = "nodelist"
) -> list[str]:
    """Expand a compressed Slurm host list with ``scontrol show hostnames``.

    Args:
        nodelist: a host list such as ``n[1-3,7],gpu01``.
        runner: runs the ``scontrol`` argv (injectable for tests).
        variable: the name the list came from, for error messages.

    Returns:
        The host names in Slurm's order (duplicates kept, as Slurm keeps them).

    Raises:
        SlurmEnvironmentError: the list is empty, ``scontrol`` is missing,
            times out or fails, or it rejects the list.
    """
    where = f"{variable}={nodelist!r}"
    if not nodelist.strip():
        raise SlurmEnvironmentError(f"{where}: empty host list")
    argv = ("scontrol", "show", "hostnames", nodelist)
    try:
        done = runner(argv)
    except FileNotFoundError as exc:
        raise SlurmEnvironmentError(
            f"{where}: cannot expand the host list, scontrol not found (is Slurm installed?)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmEnvironmentError(
            f"{where}: 'scontrol show hostnames' timed out after {exc.timeout:g} s"
            " (no readable slurm.conf? check SLURM_CONF)"
        ) from exc
    except OSError as exc:
        raise SlurmEnvironmentError(f"{where}: cannot run scontrol: {exc}") from exc

    stderr = done.stderr.strip()
    hosts = done.stdout.split()
    # scontrol exits 0 on a list it rejects: its only sign is stderr.
    if done.returncode != 0 or "Invalid hostlist" in stderr or not hosts:
        detail = stderr or f"exit status {done.returncode}, no output"
        raise SlurmEnvironmentError(
            f"{where}: 'scontrol show hostnames' cannot expand it: {detail}"
        )
    # Malformed lists can come back half-parsed ("n[1-" gives "n]").
    bad = [h for h in hosts if _NOT_IN_HOSTNAME.search(h)]
    if bad:
        raise SlurmEnvironmentError(
            f"{where}: malformed host list, scontrol returned {', '.join(bad)}"
        )
    return hosts


def parse_cpus_per_node(value: str) -> list[int]:
    """Decode ``SLURM_JOB_CPUS_PER_NODE``: ``4(x2),2`` means 4, 4 and 2 CPUs.

    Args:
        value: the variable's value.

    Returns:
        One CPU count per node, in node-list order.

    Raises:
        SlurmEnvironmentError: the value is empty or not of that form, or a
            count or repeat is zero.
    """
    where = f"{CPUS_PER_NODE_VARIABLE}={value!r}"
    text = value.strip()
    if not text:
        raise SlurmEnvironmentError(f"{where}: empty")
    counts: list[int] = []
    for item in text.split(","):
        match = _CPUS_ITEM.fullmatch(item)
        if match is None:
            raise SlurmEnvironmentError(
                f"{where}: cannot parse {item!r}, expected <cpus> or <cpus>(x<nodes>)"
            )
        cpus = int(match["cpus"])
        repeat = int(match["repeat"]) if match["repeat"] is not None else 1
        if cpus == 0 or repeat == 0:
            raise SlurmEnvironmentError(f"{where}: zero in {item!r}")
        counts.extend([cpus] * repeat)
    return counts


def in_allocation(env: Mapping[str, str]) -> bool:
    """Whether ``env`` belongs to a process inside a Slurm allocation (``SLURM_JOB_ID`` set).

    Args:
        env: an environment, usually ``os.environ``.

    Returns:
        True when ``SLURM_JOB_ID`` is set and not blank.
    """
    return bool(env.get("SLURM_JOB_ID", "").strip())


def discover(env: Mapping[str, str], *, runner: Runner = run_command) -> list[tuple[str, int]]:
    """The nodes of the current allocation with the CPUs allocated on each.

    Args:
        env: an environment, usually ``os.environ``.
        runner: runs ``scontrol`` (injectable for tests).

    Returns:
        ``(node name, cpus)`` pairs in Slurm's node order.

    Raises:
        SlurmEnvironmentError: a variable is missing or malformed, the node
            list and the CPU counts disagree in length, or a node is listed
            twice. The message names the variables and their values.
    """
    context = "" if in_allocation(env) else " (SLURM_JOB_ID is not set: not inside an allocation?)"
    variable = next((v for v in NODELIST_VARIABLES if env.get(v, "").strip()), None)
    if variable is None:
        raise SlurmEnvironmentError(f"neither {' nor '.join(NODELIST_VARIABLES)} is set{context}")
    cpus_value = env.get(CPUS_PER_NODE_VARIABLE)
    if cpus_value is None or not cpus_value.strip():
        raise SlurmEnvironmentError(f"{CPUS_PER_NODE_VARIABLE} is not set{context}")

    nodelist = env[variable]
    nodes = expand_hostlist(nodelist, runner=runner, variable=variable)
    cpus = parse_cpus_per_node(cpus_value)
    if len(nodes) != len(cpus):
        raise SlurmEnvironmentError(
            f"{variable}={nodelist!r} names {len(nodes)} node(s) but"
            f" {CPUS_PER_NODE_VARIABLE}={cpus_value!r} gives CPU counts for {len(cpus)}"
        )
    twice = [node for node, n in Counter(nodes).items() if n > 1]
    if twice:
        raise SlurmEnvironmentError(
            f"{variable}={nodelist!r} lists node(s) more than once: {', '.join(twice)}"
        )
    return list(zip(nodes, cpus, strict=True))
