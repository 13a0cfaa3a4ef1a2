"""Reports on a run, read from its service directory: ``qcgpj-async report`` and ``status``.

This package reads files only (the journal, jobs.report, final_status.json)
and imports nothing of the runtime: it works on a running service, on a
finished one, on one killed by SIGKILL, and on the original's jobs.report.
The statistics are pure functions over :class:`TaskRecord` lists
(:func:`summarize`, :func:`breakdown`, :func:`percentiles`); plots need the
``[report]`` extra for PNG/SVG only (the HTML report is self-contained).
"""

from __future__ import annotations

from ._batch import progress_text, stopping_text, summary_lines
from ._cli import SUBCOMMANDS, main
from ._load import ReportError, find_service_dir, load_run, parse_allocation
from ._records import JobRecord, RunRecord, TaskRecord
from ._stats import Breakdown, Summary, breakdown, percentiles, state_counts, summarize, timeline
from ._text import counts_line, format_duration, format_summary

__all__ = (
    "SUBCOMMANDS",
    "Breakdown",
    "JobRecord",
    "ReportError",
    "RunRecord",
    "Summary",
    "TaskRecord",
    "breakdown",
    "counts_line",
    "find_service_dir",
    "format_duration",
    "format_summary",
    "load_run",
    "main",
    "parse_allocation",
    "percentiles",
    "progress_text",
    "state_counts",
    "stopping_text",
    "summarize",
    "summary_lines",
    "timeline",
)
