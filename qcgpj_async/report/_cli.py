"""The ``report`` and ``status`` subcommands of ``qcgpj-async``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._load import ReportError, load_run
from ._stats import STATES, summarize
from ._text import JOB_SORT_KEYS, filter_tasks, format_jobs, format_summary, sort_tasks

__all__ = ("SUBCOMMANDS", "build_parser", "main")

SUBCOMMANDS = ("report", "status")


def _csv(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def _states(text: str) -> list[str]:
    """Comma-separated states (any case), each a known one (argparse type)."""
    out = [x.upper() for x in _csv(text)]
    bad = [x for x in out if x not in STATES]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown state {', '.join(bad)}: one of {', '.join(STATES)}"
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``qcgpj-async report|status ...``."""
    p = argparse.ArgumentParser(
        prog="qcgpj-async",
        description="Reports on a run from its service directory (see docs/report.md).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "report",
        help="what a run did: counts, makespan, utilisation, waits, failures; tables, plots",
        description="Report on a run: DIR is a working directory (its newest service "
        "directory), a service directory, or a jobs.report file (ours or the original's). "
        "Works while the service runs and after it was killed.",
    )
    r.add_argument("dir", metavar="DIR")
    r.add_argument(
        "--failures",
        type=int,
        default=10,
        metavar="N",
        help="list the first N tasks that did not succeed (default 10)",
    )
    g = r.add_argument_group("--jobs: one line per task (a plain job or an iteration)")
    g.add_argument("--jobs", action="store_true", help="list tasks instead of the summary")
    g.add_argument(
        "--state",
        type=_states,
        default=[],
        help=f"only these states (comma-separated: {', '.join(STATES)})",
    )
    g.add_argument("--node", type=_csv, default=[], help="only tasks on these nodes")
    g.add_argument("--name", metavar="PATTERN", help="only names matching (shell-style: 'sim*')")
    g.add_argument(
        "--sort",
        default="start",
        help=f"one of {', '.join(JOB_SORT_KEYS)} (default start); --sort=-runtime or "
        "--reverse: descending",
    )
    g.add_argument("--reverse", action="store_true", help="sort descending")
    g.add_argument("--format", choices=("table", "jsonl"), default="table")
    g.add_argument("--limit", type=int, metavar="N", help="at most N lines")
    pl = r.add_argument_group("plots (need the [report] extra for --png/--svg)")
    pl.add_argument("--html", metavar="FILE", help="one self-contained HTML file (opens offline)")
    pl.add_argument("--png", metavar="FILE", help="the plots as a PNG image")
    pl.add_argument("--svg", metavar="FILE", help="the plots as an SVG image")
    s = sub.add_parser(
        "status",
        help="the state of a running or finished service, from its files (no --net needed)",
        description="Counts by state, running tasks with runtime and node, rate, ETA, "
        "failures so far. DIR: a working directory or a service directory; or the "
        "ZMQ address of a --net service (tcp://HOST:PORT, ours or the original's; needs "
        "the [zmq] extra).",
    )
    s.add_argument("dir", metavar="DIR|ADDRESS")
    s.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until the service ends",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Run ``report`` or ``status``; returns the exit code (2: bad arguments or directory)."""
    args = build_parser().parse_args(list(argv))
    try:
        if args.command == "status":
            from ._remote import is_address, watch_remote
            from ._status import watch

            if is_address(args.dir):
                return watch_remote(args.dir, args.watch or 0.0, once=args.watch is None)
            return watch(args.dir, args.watch or 0.0, once=args.watch is None)
        return _report(args)
    except ReportError as e:
        print(f"qcgpj-async {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # | head
        return 0


def _report(args: argparse.Namespace) -> int:
    run = load_run(args.dir)
    if args.jobs:
        try:
            tasks = sort_tasks(
                filter_tasks(run.tasks, args.state, args.node, args.name),
                ("-" if args.reverse else "") + args.sort,
            )
        except ValueError as e:
            print(f"qcgpj-async report: {e}", file=sys.stderr)
            return 2
        if args.limit is not None:
            tasks = tasks[: args.limit]
        for line in format_jobs(tasks, args.format):
            sys.stdout.write(line + "\n")
        return 0
    summary = summarize(run)
    wrote = []
    if args.html:
        from ._html import write_html

        write_html(run, summary, args.html)
        wrote.append(args.html)
    for fmt in ("png", "svg"):
        dest = getattr(args, fmt)
        if dest:
            from ._plots import write_image

            try:
                write_image(run, summary, dest, fmt)
            except ImportError as e:
                print(f"qcgpj-async report: {e}", file=sys.stderr)
                return 2
            wrote.append(dest)
    print(format_summary(run, summary, args.dir, args.failures))
    for w in wrote:
        print(f"wrote {w}")
    return 0
