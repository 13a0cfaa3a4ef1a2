"""What the tests read of /proc: whether a process still runs."""

from __future__ import annotations


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not reaped yet) does not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or being reaped while read (ESRCH)
        return False
