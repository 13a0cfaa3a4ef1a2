"""The data behind the plots (HTML and images alike): rows of cores, segments, bins.

Pure: a :class:`RunRecord` and its :class:`Summary` in, lists of numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._records import RunRecord, TaskRecord
from ._stats import Summary, Timeline, timeline

__all__ = ("STATE_COLOURS", "PlotData", "histogram", "plot_data")

#: Colour of each state (colour-blind safe: Okabe-Ito).
STATE_COLOURS = {
    "SUCCEED": "#009E73",
    "FAILED": "#D55E00",
    "CANCELED": "#999999",
    "OMITTED": "#CC79A7",
    "EXECUTING": "#0072B2",
    "SCHEDULED": "#56B4E9",
    "QUEUED": "#E69F00",
}
TIMELINE_BINS = 600
#: Above this many bars (a task on each of its cores) the Gantt chart shows how busy each
#: group of cores was over time (a grid of GRID_ROWS x GRID_BINS) instead of each bar.
SEG_LIMIT = 250_000
GRID_BINS = 800
GRID_ROWS = 400


@dataclass
class PlotData:
    """Times are seconds from ``t0`` (the pilot's start, or the first event)."""

    t0: float
    t1: float
    rows: list[tuple[str, int]]  # (node, core) of each Gantt row, top to bottom
    tasks: list[TaskRecord]  # those that ran (a Gantt bar on each of their cores)
    seg_row: list[int]
    seg_task: list[int]
    cores: int
    timeline: Timeline
    hist_edges: list[float]
    hist_counts: list[int]
    hist_log: bool
    grid: list[list[float]] | None = None  # busy fraction of (row group, time bin)
    grid_rows: int = 1  # cores per row group


def histogram(values: list[float], bins: int = 40) -> tuple[list[float], list[int], bool]:
    """Bin edges and counts; logarithmic bins when the values span over two decades."""
    if not values:
        return [], [], False
    lo, hi = min(values), max(values)
    log = lo > 0 and hi / lo > 100
    if log:
        a, b = math.log10(lo), math.log10(hi)
        edges = [10 ** (a + (b - a) * i / bins) for i in range(bins + 1)]
    else:
        if hi == lo:
            hi = lo + 1e-9
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    counts = [0] * bins
    for v in values:
        if log:
            i = int((math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * bins)
        else:
            i = int((v - lo) / (hi - lo) * bins)
        counts[min(max(i, 0), bins - 1)] += 1
    return edges, counts, log


def plot_data(run: RunRecord, summary: Summary) -> PlotData:
    """Everything the plots draw, for ``run``."""
    rows: list[tuple[str, int]] = [(n, c) for n, k in run.nodes.items() for c in range(k)]
    index = {r: i for i, r in enumerate(rows)}
    ran = [t for t in run.tasks if t.started is not None]
    ran.sort(key=lambda t: t.started or 0.0)
    seg_row: list[int] = []
    seg_task: list[int] = []
    for k, t in enumerate(ran):
        for node, cores in t.alloc:
            for c in cores:
                i = index.get((node, c))
                if i is None:  # a core no journal named (e.g. system core): a row of its own
                    i = index[(node, c)] = len(rows)
                    rows.append((node, c))
                seg_row.append(i)
                seg_task.append(k)
    times = [x for t in run.tasks for x in (t.queued, t.started, t.ended) if x is not None]
    t0 = run.opened if run.opened is not None else min(times, default=run.now)
    end = run.closed if run.closed is not None else (run.now if run.alive else None)
    t1 = max([*times, end or t0, t0 + 1e-6])
    runtimes = [t.ended - t.started for t in ran if t.ended is not None and t.started is not None]
    edges, counts, log = histogram(runtimes)
    grid, per = (None, 1)
    if len(seg_row) > SEG_LIMIT:
        grid, per = occupancy(ran, seg_row, seg_task, len(rows), t0, t1)
    return PlotData(
        grid=grid,
        grid_rows=per,
        t0=t0,
        t1=t1,
        rows=rows,
        tasks=ran,
        seg_row=seg_row,
        seg_task=seg_task,
        cores=summary.cores,
        timeline=timeline(run.tasks, t0, t1, TIMELINE_BINS),
        hist_edges=edges,
        hist_counts=counts,
        hist_log=log,
    )


def occupancy(
    tasks: list[TaskRecord],
    seg_row: list[int],
    seg_task: list[int],
    nrows: int,
    t0: float,
    t1: float,
) -> tuple[list[list[float]], int]:
    """How busy each group of cores was in each time bin (0..1), and cores per group."""
    per = max(1, -(-nrows // GRID_ROWS))
    groups = -(-nrows // per)
    width = (t1 - t0) / GRID_BINS
    grid = [[0.0] * GRID_BINS for _ in range(groups)]
    for row, k in zip(seg_row, seg_task, strict=True):
        t = tasks[k]
        a = (t.started or t0) - t0
        b = (t.ended if t.ended is not None else t1) - t0
        cells = grid[row // per]
        i = min(int(a / width), GRID_BINS - 1)
        while a < b and i < GRID_BINS:
            edge = (i + 1) * width
            cells[i] += min(b, edge) - a
            a = edge
            i += 1
    scale = 1.0 / (width * per)
    return [[round(min(v * scale, 1.0), 3) for v in cells] for cells in grid], per
