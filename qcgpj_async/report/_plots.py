"""``report --png FILE`` / ``--svg FILE``: the HTML report's charts as one image (matplotlib).

matplotlib is the ``[report]`` extra: imported here, when an image is asked for.
"""

from __future__ import annotations

from typing import Any

from ._plotdata import STATE_COLOURS, plot_data
from ._records import RunRecord
from ._stats import Summary

__all__ = ("write_image",)


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "--png/--svg need matplotlib: pip install 'qcgpj_async[report]'"
        ) from None
    matplotlib.use("Agg")  # files only: no display needed (a cluster's login node)
    import matplotlib.pyplot as plt

    return plt


def write_image(run: RunRecord, s: Summary, path: str, fmt: str) -> None:
    """Write the Gantt chart, cores busy, queue length and run-time histogram to ``path``.

    Raises:
        ImportError: matplotlib is not installed (the ``[report]`` extra).
    """
    plt = _matplotlib()
    from matplotlib.collections import PolyCollection

    p = plot_data(run, s)
    fig, axes = plt.subplots(
        4, 1, figsize=(10, 11), gridspec_kw={"height_ratios": [3, 1.2, 1.2, 1.2]}
    )
    gantt, busy, queue, hist = axes
    t0 = p.t0
    verts = []
    colours = []
    for row, k in zip(p.seg_row, p.seg_task, strict=True):
        if p.grid is not None:
            break
        t = p.tasks[k]
        a = (t.started or t0) - t0
        b = (t.ended if t.ended is not None else p.t1) - t0
        verts.append(((a, row), (b, row), (b, row + 0.9), (a, row + 0.9)))
        colours.append(STATE_COLOURS.get(t.state, "#000000"))
    if p.grid is not None:  # too many bars: how busy each group of cores was
        verts.clear()
        gantt.imshow(
            p.grid,
            aspect="auto",
            cmap="Greens",
            vmin=0,
            vmax=1,
            interpolation="nearest",
            extent=(0, p.t1 - t0, len(p.rows), 0),
        )
    gantt.add_collection(PolyCollection(verts, facecolors=colours, edgecolors="none"))
    gantt.set_xlim(0, p.t1 - t0)
    gantt.set_ylim(len(p.rows), 0)
    gantt.set_ylabel("core")
    gantt.set_title(f"Tasks on cores ({len(p.tasks)} tasks, {len(p.rows)} cores)")
    ticks = [i for i, (_, c) in enumerate(p.rows) if c == 0]
    if len(ticks) <= 32:
        gantt.set_yticks(ticks, [p.rows[i][0] for i in ticks])
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=c)
        for st, c in STATE_COLOURS.items()
        if any(t.state == st for t in p.tasks)
    ]
    labels = [st for st in STATE_COLOURS if any(t.state == st for t in p.tasks)]
    if handles:
        gantt.legend(handles, labels, loc="upper right", fontsize="small")
    tl = p.timeline
    xs = [i * tl.width for i in range(len(tl.busy) + 1)]
    busy.stairs(tl.busy, xs, fill=True, color="#0072B2", alpha=0.6)
    busy.axhline(p.cores, color="black", linestyle="--", linewidth=1, label="allocation")
    busy.set_ylabel("cores busy")
    busy.legend(loc="upper right", fontsize="small")
    queue.stairs(tl.queued, xs, fill=True, color="#E69F00", alpha=0.6)
    queue.set_ylabel("tasks queued")
    for ax in (gantt, busy, queue):
        ax.set_xlim(0, p.t1 - t0)
    queue.set_xlabel("seconds from the pilot's start")
    if p.hist_counts:
        hist.stairs(p.hist_counts, p.hist_edges, fill=True, color="#0072B2")
        if p.hist_log:
            hist.set_xscale("log")
    hist.set_xlabel("run time of a task (s)")
    hist.set_ylabel("tasks")
    fig.suptitle(f"qcgpj-async report: {run.instance_id or run.path}")
    fig.tight_layout()
    fig.savefig(path, format=fmt, dpi=120)
    plt.close(fig)
