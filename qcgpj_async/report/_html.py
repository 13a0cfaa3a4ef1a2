"""``report --html FILE``: one self-contained HTML file (inline data, CSS and script).

Nothing is fetched when it opens: the charts are drawn on canvases by the
inline script of :mod:`._html_js` from the inline JSON data, so the file
opens offline, from a mail attachment or a cluster's scratch directory.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os

from ._html_js import SCRIPT
from ._plotdata import STATE_COLOURS, PlotData, plot_data
from ._records import FINAL, RunRecord
from ._stats import Summary
from ._text import format_duration, format_summary

__all__ = ("FAILURES_SHOWN", "render_html", "write_html")

#: Rows of the failures table (the others: ``report --jobs --state ...``).
FAILURES_SHOWN = 1000

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin: 1.4em 0 .3em; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; }
.chart { position: relative; width: 100%; }
canvas { display: block; }
#tip { position: absolute; display: none; background: #fff; border: 1px solid #888;
       padding: 4px 8px; font-size: 12px; pointer-events: none; max-width: 40em;
       box-shadow: 2px 2px 6px rgba(0,0,0,.2); }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
            vertical-align: -2px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; }
.note { color: #666; font-size: 12px; }
"""


def _ms(t: float | None, t0: float) -> int | None:
    return None if t is None else round((t - t0) * 1000)


def _data(run: RunRecord, p: PlotData) -> dict[str, object]:
    states = list(STATE_COLOURS)
    sidx = {s: i for i, s in enumerate(states)}
    t0 = p.t0
    tasks = p.tasks
    nodes: list[list[object]] = []
    for i, (node, _) in enumerate(p.rows):
        if not nodes or nodes[-1][0] != node:
            nodes.append([node, i, 0])
        nodes[-1][2] = int(nodes[-1][2]) + 1  # type: ignore[call-overload]
    if p.grid is not None:  # too many bars: how busy each group of cores was, no tasks
        tasks = []
    return {
        "grid": p.grid,
        "per": p.grid_rows,
        "span": round((p.t1 - t0) * 1000),
        "nodes": nodes,
        "rows": [f"{n}:{c}" for n, c in p.rows],
        "states": states,
        "colours": [STATE_COLOURS[s] for s in states],
        "task": {
            "n": [t.name for t in tasks],
            "s": [_ms(t.started, t0) for t in tasks],
            "e": [-1 if t.ended is None else _ms(t.ended, t0) for t in tasks],
            "q": [_ms(t.queued, t0) for t in tasks],
            "st": [sidx.get(t.state, 0) for t in tasks],
            "c": [t.exit_code for t in tasks],
        },
        "reason": {
            str(k): t.reason
            for k, t in enumerate(tasks)
            if t.state in FINAL and t.state != "SUCCEED"
        },
        "seg": {"r": [] if p.grid else p.seg_row, "k": [] if p.grid else p.seg_task},
        "tl": {
            "busy": [round(x, 3) for x in p.timeline.busy],
            "queued": [round(x, 3) for x in p.timeline.queued],
            "cores": p.cores,
        },
        "hist": {"edges": p.hist_edges, "counts": p.hist_counts, "log": p.hist_log},
    }


def _failures(run: RunRecord, s: Summary, t0: float) -> str:
    bad = s.unsuccessful
    if not bad:
        return "<p>Every task succeeded.</p>"
    rows = []
    for t in bad[:FAILURES_SHOWN]:
        alloc = ",".join(f"{n}[{':'.join(map(str, c))}]" for n, c in t.alloc)
        rt = t.ended - t.started if t.ended is not None and t.started is not None else None
        cells = (
            t.name,
            t.state,
            alloc or "-",
            "-" if t.started is None else format_duration(t.started - t0),
            format_duration(rt),
            "-" if t.exit_code is None else str(t.exit_code),
            t.reason,
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    more = ""
    if len(bad) > FAILURES_SHOWN:
        more = (
            f'<p class="note">The first {FAILURES_SHOWN} of {len(bad)}; all: '
            f"<code>qcgpj-async report DIR --jobs --state FAILED,OMITTED,CANCELED</code></p>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("task", "state", "allocation", "start", "run time", "exit code", "reason")
    )
    return (
        f'<table id="failures"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
        f"</tbody></table>{more}"
    )


def _gantt_note(p: PlotData) -> str:
    if p.grid is None:
        return "Hover a bar for the task; drag to zoom in, double-click to zoom out."
    return (
        f"{len(p.seg_row)} bars are more than a page can draw and stay usable: each cell "
        f"shows how busy {p.grid_rows} core(s) were over {len(p.grid[0])} time bins "
        "(darker: busier); hover for the figure. The table below lists the tasks that did "
        "not succeed; <code>report --jobs</code> lists them all."
    )


def render_html(run: RunRecord, s: Summary) -> str:
    """The whole HTML document."""
    p = plot_data(run, s)
    data = json.dumps(_data(run, p), separators=(",", ":")).replace("</", "<\\/")
    title = f"qcgpj-async report: {run.instance_id or os.path.basename(run.path)}"
    legend = "".join(
        f'<span><i style="background:{c}"></i>{st}</span>' for st, c in STATE_COLOURS.items()
    )
    when = _dt.datetime.fromtimestamp(p.t0).strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<pre id="summary">{html.escape(format_summary(run, s, run.path))}</pre>
<h2>Tasks on cores</h2>
<p class="note">Times from the pilot's start ({when}). {len(p.tasks)} tasks on
{len(p.rows)} cores. {_gantt_note(p)}</p>
<div class="legend">{legend}</div>
<div class="chart"><canvas id="gantt"></canvas></div>
<h2>Cores busy over time, against the allocation</h2>
<div class="chart"><canvas id="busy"></canvas></div>
<h2>Tasks queued over time (waiting for cores or dependencies)</h2>
<div class="chart"><canvas id="queue"></canvas></div>
<h2>Run time of tasks{" (logarithmic bins)" if p.hist_log else ""}</h2>
<div class="chart"><canvas id="hist"></canvas></div>
<h2>Tasks that did not succeed</h2>
{_failures(run, s, p.t0)}
<div id="tip"></div>
<script type="application/json" id="data">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def write_html(run: RunRecord, s: Summary, path: str) -> None:
    """Write the HTML report of ``run`` to ``path``."""
    text = render_html(run, s)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
