"""Where each run ran: :class:`RunPlaces`, the runtime's own record of every run.

The engine's run records hold what the engine decides (allocation, states,
times, exit code); the working directory and the program name of a run are
the runtime's: set when the run is launched, read by ``info`` and the report.
"""

from __future__ import annotations

__all__ = ("RunPlaces",)

#: Slots added at once when a run id is past the end (amortizes the growth).
_GROW = 1024


class RunPlaces:
    """The working directory and program name of each run, by run id.

    Kept for every run of the pilot, ended ones too: two references per run id
    in one list (what the engine's run tables held before), the strings that
    repeat from one run to the next shared.
    """

    __slots__ = ("_last_pname", "_last_wd", "refs")

    def __init__(self) -> None:
        #: The wd of run id i at 2i, its program name at 2i + 1 (extended in place).
        self.refs: list[str | None] = []
        self._last_wd = self._last_pname = ""

    def note(self, run_id: int, wd: str, pname: str) -> None:
        """Run ``run_id`` runs in ``wd`` as program ``pname``."""
        refs, at = self.refs, 2 * run_id
        if at >= len(refs):
            refs.extend([None] * (at + 2 - len(refs) + _GROW))
        # Share the strings that repeat (memory per job).
        refs[at] = self._last_wd = wd if wd != self._last_wd else self._last_wd
        refs[at + 1] = self._last_pname = pname if pname != self._last_pname else self._last_pname

    def wd(self, run_id: int) -> str | None:
        """The working directory of run ``run_id`` (None: not launched by this pilot)."""
        at = 2 * run_id
        return self.refs[at] if at < len(self.refs) else None

    def pname(self, run_id: int) -> str | None:
        """The program name of run ``run_id`` (None: not launched by this pilot)."""
        at = 2 * run_id + 1
        return self.refs[at] if at < len(self.refs) else None
