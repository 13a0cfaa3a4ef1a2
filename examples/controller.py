"""An application controller: a parameter search that decides its next jobs from results.

Run from the repository root (any number of cores; a few seconds)::

    python examples/controller.py run/controller

It looks for the ``x`` that minimises a bumpy function ``f``. Each round is
one iteration job: one iteration per candidate ``x`` (``${itval}``), each a
small Python process that evaluates ``f(x)`` and prints it to
``round<r>/f.<i>``. The controller waits for the round (``wait4``), reads the
outputs, and submits the next round on a finer grid around the best point so
far. At the end one more job, depending on every round, writes a summary.

The first argument is the working directory (default ``run/controller``).
"""

from __future__ import annotations

import json
import sys

import anyio

from qcgpj_async import Jobs, JobState, Pilot

#: what every evaluation runs: f(x) = (x - 1.234)^2 + 0.3 (1 - cos(4 (x - 1.234)))
EVALUATE = (
    "import math, sys\n"
    "x = float(sys.argv[1])\n"
    "d = x - 1.234\n"
    "print(repr(d * d + 0.3 * (1 - math.cos(4 * d))))\n"
)
POINTS = 8  # candidates per round
ROUNDS = 5


def grid(centre: float, half_width: float) -> list[float]:
    """``POINTS`` evenly spaced points over ``centre +- half_width``."""
    step = 2 * half_width / (POINTS - 1)
    return [round(centre - half_width + i * step, 6) for i in range(POINTS)]


async def main(wd: str) -> int:
    out = anyio.Path(wd)  # file I/O that does not block the event loop
    async with Pilot(wd=wd) as pilot:
        print("resources:", (await pilot.resources()).to_dict())
        best_x, best_f = 0.0, float("inf")
        centre, half_width = 0.0, 10.0
        history = []
        for r in range(ROUNDS):
            xs = grid(centre, half_width)
            jobs = Jobs().add(
                name=f"round{r}",
                exec=sys.executable,
                args=["-c", EVALUATE, "${itval}"],
                stdout=f"round{r}/f.${{it}}",
                iteration=xs,
            )
            names = await pilot.submit(jobs)
            states = await pilot.wait4(names)
            if states[names[0]] is not JobState.SUCCEED:
                info = (await pilot.info(names))[names[0]]
                print(f"round {r} failed: {info.messages}", file=sys.stderr)
                return 1
            # the results decide what runs next
            fs = [float(await (out / f"round{r}" / f"f.{i}").read_text()) for i in range(POINTS)]
            i_best = min(range(POINTS), key=fs.__getitem__)
            if fs[i_best] < best_f:
                best_x, best_f = xs[i_best], fs[i_best]
            history.append({"round": r, "x": xs, "f": fs, "best_x": best_x, "best_f": best_f})
            print(
                f"round {r}: {POINTS} points over [{xs[0]:g}, {xs[-1]:g}], "
                f"best so far f({best_x:g}) = {best_f:.6g}"
            )
            centre, half_width = best_x, 2 * half_width / (POINTS - 1)  # one grid step

        await (out / "search.json").write_text(json.dumps(history, indent=1))
        # a follow-up job after every round: the summary, by a job rather than by us
        summary = Jobs().add(
            name="summary",
            script=f'echo "best x = {best_x:g}, f = {best_f:.6g}"',
            stdout="summary.txt",
            after=[f"round{r}" for r in range(ROUNDS)],
        )
        await pilot.wait4(await pilot.submit(summary))
        info = (await pilot.info("round0", with_childs=True))["round0"]
        print(
            "round0 per iteration:",
            ", ".join(f"{c.iteration}:{c.state.value}" for c in info.childs or ()),
        )
        print("all jobs:", {n: s.value for n, s in (await pilot.list()).items()})
    print((await (out / "summary.txt").read_text()).strip())
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "run/controller"))
