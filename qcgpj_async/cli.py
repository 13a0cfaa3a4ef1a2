"""The command line: argparse with the original service's flags, wiring only.

``python -m qcgpj_async --file-path reqs.json`` (or ``qcgpj-async``) runs a
request file (batch mode). It says what happened: rejected requests on
stderr as they happen, one summary line at the end, and the exit code:
0 every job succeeded, 1 some job failed, was omitted or cancelled, 2 the
request file or a request was invalid (130/143 when interrupted).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import anyio

from ._version import __version__
from .model import JobState, QcgpjError

if TYPE_CHECKING:
    from .adapters.file import FileRun
    from .runtime import Pilot

__all__ = ("build_parser", "main", "run")

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "notset")
#: The request file of ``--file`` without ``--file-path`` (the original's default).
DEFAULT_REQUESTS = "qcg_pm_reqs.json"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m qcgpj_async``."""
    p = argparse.ArgumentParser(
        prog="qcgpj-async",
        description="Run many small jobs inside one allocation (QCG-PilotJob compatible).",
        epilog="Also: 'qcgpj-async report DIR' (what a run did; --jobs, --html) and "
        "'qcgpj-async status DIR' (a running service, from its files).",
    )
    p.add_argument("--version", action="version", version=f"qcgpj_async {__version__}")
    p.add_argument(
        "--file",
        action="store_true",
        help="enable the file interface (implied by --file-path; alone, the "
        "request file is qcg_pm_reqs.json, as the original's default)",
    )
    p.add_argument("--file-path", help="the request file: a JSON list of requests, run in order")
    p.add_argument(
        "--wd",
        help="working directory of the service (default: the current "
        "directory; with --resume, the resumed run's)",
    )
    p.add_argument(
        "--nodes",
        help='resources: "[name:]cores[:gpu=ID+ID...],..." e.g. "4", "n1:4,n2:4" or '
        '"n1:4:gpu=0+1,n2:4:gpus=2" (default: discovered, see --resources)',
    )
    p.add_argument(
        "--gpus",
        metavar="IDS",
        help='GPU device ids of every node, e.g. "0,1,2,3" ("none": no GPUs); default: '
        "as --nodes declares them, else discovered (Slurm GRES, CUDA_VISIBLE_DEVICES, "
        "nvidia-smi, rocm-smi); each job gets its own",
    )
    p.add_argument(
        "--gpu-vendor",
        choices=("nvidia", "amd"),
        help="which variables name a job's GPUs: nvidia (CUDA_VISIBLE_DEVICES) or amd "
        "(ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES); default: as discovered, else nvidia",
    )
    p.add_argument(
        "--resources",
        default="auto",
        choices=("auto", "local", "slurm"),
        help="where resources come from: auto (Slurm inside an allocation, else "
        "this host), local, slurm",
    )
    p.add_argument(
        "--envschema",
        default="auto",
        help="job environment schema (auto, slurm, "
        "common); accepted for compatibility: jobs always get the QCG_PM_* set, and "
        "the SLURM_* set under the srun executor",
    )
    p.add_argument(
        "--report-format",
        default="json",
        choices=("json", "text", "none"),
        help="format of jobs.report (default: json)",
    )
    p.add_argument("--report-file", default="jobs.report", help="name of the job report file")
    p.add_argument("--log", default="info", choices=LOG_LEVELS, help="level of service.log")
    p.add_argument(
        "--system-core",
        action="store_true",
        help="reserve one core (core 0 of the first node) for the service",
    )
    p.add_argument("--show-progress", action="store_true", help="a live progress line on stderr")
    p.add_argument("--id", help="instance id (the service directory is .qcgpjm-service-<id>)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="go on from a previous run: DIR is its service directory, or a working "
        "directory holding several (the newest is taken); jobs that ended keep their "
        "state and are not run again, the others run (--file-path is optional)",
    )
    p.add_argument(
        "--kill-grace",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between SIGTERM and SIGKILL when a job is stopped (default 10)",
    )
    p.add_argument(
        "--no-agents",
        dest="agents",
        action="store_false",
        help="inside a Slurm allocation, start every task as a Slurm step of its own "
        "instead of through a launch agent on each node (see docs/slurm.md)",
    )
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="launch agents do not pin tasks to the CPUs of their cores",
    )
    _add_net_args(p)
    _add_original_args(p)
    return p


#: The original's flags that change nothing here: accepted, with a line in service.log.
NOOP_FLAGS = {
    "--disable-nl": "jobs start without node launchers here",
    "--tags": "manager tags are used by the governor mode only",
    "--nl-init-timeout": "there are no node launchers here",
    "--nl-ready-threshold": "there are no node launchers here",
    "--nl-start-method": "there are no node launchers here",
    "--enable-proc-stats": "no process statistics are gathered",
    "--enable-rt-stats": "jobs.report has each run's start, end and runtime",
    "--wrapper-rt-stats": "no wrapper is used to time jobs",
    "--disable-pub": "the publisher is only part of --net",
}
#: The original's flags of features we do not have: one line saying so, exit 2.
MISSING_FLAGS = {
    "--governor": "the governor mode is not supported: run one qcgpj-async per allocation",
    "--parent": "the governor mode is not supported: run one qcgpj-async per allocation",
    "--slurm-partition-nodes": "partitioning an allocation is not supported: "
    "run one qcgpj-async per allocation",
    "--slurm-limit-nodes-range-begin": "limiting the allocation's nodes is not supported: "
    "give the nodes with --nodes",
    "--slurm-limit-nodes-range-end": "limiting the allocation's nodes is not supported: "
    "give the nodes with --nodes",
    "--slurm-resources-file": "a Slurm resources file is not supported: "
    "give the nodes with --nodes",
}
_FLAG_TAKES_NO_VALUE = {
    "--disable-nl",
    "--enable-proc-stats",
    "--enable-rt-stats",
    "--disable-pub",
    "--governor",
}


class _Noop(argparse.Action):
    def __call__(self, parser: Any, ns: Any, values: Any, option: str | None = None) -> None:
        ns.notes = [*getattr(ns, "notes", []), f"{option} accepted: {NOOP_FLAGS[str(option)]}"]


class _Missing(argparse.Action):
    def __call__(self, parser: Any, ns: Any, values: Any, option: str | None = None) -> None:
        parser.exit(2, f"qcgpj-async: error: {option}: {MISSING_FLAGS[str(option)]}\n")


def _add_original_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the original's flags that change nothing here (noted in service.log)")
    for flag in NOOP_FLAGS:
        nargs = 0 if flag in _FLAG_TAKES_NO_VALUE else None
        g.add_argument(flag, action=_Noop, nargs=nargs, help=argparse.SUPPRESS)
    for flag in MISSING_FLAGS:
        nargs = 0 if flag in _FLAG_TAKES_NO_VALUE else None
        p.add_argument(flag, action=_Missing, nargs=nargs, help=argparse.SUPPRESS)
    p.set_defaults(notes=[])


def _log_notes(pilot: Pilot, args: argparse.Namespace) -> None:
    """The notes of the original's flags that change nothing here, in service.log."""
    log = pilot.log
    if log is not None:
        for note in args.notes:
            log.info(note)


def _seconds(text: str) -> float:
    """A duration in seconds: a finite number >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _err(msg: str) -> None:
    print(f"qcgpj-async: {msg}", file=sys.stderr, flush=True)


def run() -> NoReturn:
    """The program (``qcgpj-async``, ``python -m qcgpj_async``): :func:`main`, then a quick exit.

    By the time :func:`main` returns, the run has closed and written all it
    owns (jobs.report, the journal, service.log) and no process of it is left.
    What remains, the interpreter's own teardown (freeing every module and
    class one by one), takes 30-60 ms on the test machine: a quarter of a
    short batch's wall time. So, once the standard streams and the logging
    handlers are flushed, the process leaves without it. For the same reason
    the objects made by the imports are frozen out of the garbage collector's
    reach (``gc.freeze``): a full collection during a large submit then walks
    the new objects only.
    """
    gc.freeze()
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say to it
            code = code or 1
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service (or ``report``/``status``); returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("report", "status"):  # subcommands; the original's flags stay
        from .report import main as report_main

        return report_main(argv)
    args = build_parser().parse_args(argv)
    if args.file and not args.file_path:
        args.file_path = DEFAULT_REQUESTS
    if _net_enabled(args):
        return _net_main(args)
    if not args.file_path and not args.resume:
        _err("error: nothing to do: give a request file with --file-path, or --net, or --resume")
        return 2
    return _run(_batch, args)


def _run(
    run: Callable[[argparse.Namespace, list[object] | None], Awaitable[int]],
    args: argparse.Namespace,
) -> int:
    """Read --file-path (None without one), then ``run`` it under :func:`_stoppable`.

    Batch and --net mode alike: a bad request file or a :class:`QcgpjError`
    out of the run is one stderr line and exit 2.

    Returns:
        The process exit code.
    """
    from .adapters.file import RequestFileError, load_requests

    requests = None
    if args.file_path:
        try:
            requests = load_requests(args.file_path)
        except RequestFileError as e:
            _err(f"error: {e}")
            return 2
    try:
        return anyio.run(_stoppable, run, args, requests)
    except QcgpjError as e:
        _err(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted: every job was stopped")
        return 130


class _Stop:
    """The run's pilot, for the signal watcher (set by :func:`_make_pilot`)."""

    def __init__(self) -> None:
        self.pilot: Pilot | None = None
        self.signum: int | None = None


async def _stoppable(
    run: Callable[[argparse.Namespace, Any], Awaitable[int]],
    args: argparse.Namespace,
    requests: Any,
) -> int:
    """``run`` (batch or --net), stopped by SIGINT or SIGTERM (Ctrl-C, Slurm's time limit, scancel).

    The first signal cancels the run: no more requests are taken, and leaving
    the pilot's block stops every job (SIGTERM to its process group, SIGKILL
    after --kill-grace), writes jobs.report, final_status.json and the journal
    (stopped jobs are not journaled as ended: --resume runs them again); exit
    130 (SIGINT) or 143 (SIGTERM). A second signal SIGKILLs every job at once.
    """
    stop = args.stop = _Stop()
    code: int | None = None
    failure: QcgpjError | None = None
    async with anyio.create_task_group() as tg:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            with anyio.CancelScope() as service:
                tg.start_soon(_watch_signals, signals, service, stop)
                try:
                    code = await run(args, requests)
                except QcgpjError as e:  # raised as is for main(), not in an exception group
                    failure = e
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if code is None or service.cancelled_caught:
        signum = stop.signum or signal.SIGTERM
        if stop.pilot is not None:  # the summary, cancelled jobs counted as such
            for line in _summary(stop.pilot):
                _err(line)
        _err(f"{'interrupted' if signum == signal.SIGINT else 'terminated'}: every job was stopped")
        return 128 + signum
    return code


async def _watch_signals(
    signals: AsyncIterator[int], service: anyio.CancelScope, stop: _Stop
) -> None:
    async for signum in signals:
        if stop.signum is None:
            stop.signum = signum
            if stop.pilot is not None:
                from .report import stopping_text

                j = stop.pilot.service_status()["JobStats"]
                left = j["TotalJobs"] - j["FailedJobs"] - j["FinishedJobs"]
                _err(stopping_text(left, stop.pilot.kill_grace))
            service.cancel()
        elif stop.pilot is not None:
            stop.pilot.kill_all()


def _make_pilot(args: argparse.Namespace) -> Pilot:
    """The pilot of a run, with every option of the command line."""
    from .runtime import Pilot

    pilot = Pilot(
        nodes=args.nodes,
        wd=args.wd,
        system_core=args.system_core,
        report_format=args.report_format,
        report_file=args.report_file,
        instance_id=args.id,
        resources=args.resources,
        log_level=args.log,
        kill_grace=args.kill_grace,
        gpus=args.gpus,
        gpu_vendor=args.gpu_vendor,
        resume=args.resume,
        agents=args.agents,
        pin=args.pin,
    )
    stop = getattr(args, "stop", None)
    if isinstance(stop, _Stop):
        stop.pilot = pilot
    return pilot


async def _batch(args: argparse.Namespace, requests: list[object] | None) -> int:
    from .adapters.file import FileRun, run_requests
    from .adapters.protocol import Protocol

    pilot = _make_pilot(args)
    async with pilot:
        t0 = time.monotonic()  # the progress line's rate counts from here
        _log_notes(pilot, args)
        protocol = Protocol(pilot, log=pilot.log)
        async with anyio.create_task_group() as tg:
            if args.show_progress:
                tg.start_soon(_progress, pilot, sys.stderr, t0)
            run = FileRun()
            resumed = await pilot.list() if args.resume else {}
            if requests is not None:  # none with --resume alone
                run = await run_requests(protocol, requests, _err, set(resumed))
            if args.resume:
                _err(_resumed_line(args.resume, resumed, run))
            if run.finish:
                await _stop_unfinished(pilot)
            await pilot.wait4all()
            tg.cancel_scope.cancel()
        if args.show_progress:
            _progress_line(pilot, sys.stderr, t0, final=True)
    return _exit_code(pilot, run)


def _resumed_line(where: str, restored: dict[str, JobState], run: FileRun) -> str:
    """One line: what a --resume took from its journal (and from the request file)."""
    ended = sum(1 for s in restored.values() if s.is_final)
    line = (
        f"resumed {where}: {len(restored)} jobs from the journal, {ended} had ended, "
        f"{len(restored) - ended} run again"
    )
    if run.resumed_jobs:
        line += f"; {run.resumed_jobs} jobs of the request file were among them"
    return line


async def _stop_unfinished(pilot: Pilot) -> None:
    """Cancel every job that has not ended (after a ``finish`` request)."""
    await pilot.cancel(pilot.unfinished_jobs(cancelling=False))


def _exit_code(pilot: Pilot, run: FileRun) -> int:
    """Print the summary; 2 a request was rejected, 1 a job did not succeed, else 0."""
    for line in _summary(pilot):
        _err(line)
    if run.rejected:
        return 2
    c = pilot.job_counts()
    return 0 if c[JobState.SUCCEED] == sum(c.values()) else 1


def _summary(pilot: object) -> list[str]:
    """The closing lines (failures, makespan, the summary line last), from what the
    pilot gathered as runs ended (no file is read again)."""
    from .report import summary_lines
    from .runtime import Pilot

    assert isinstance(pilot, Pilot)
    if pilot.service_path is None:
        return summary_lines(None, job_states={s.value: n for s, n in pilot.job_counts().items()})
    return summary_lines(pilot.service_path, pilot.report_path, figures=pilot.run_totals())


def _progress_line(pilot: object, out: TextIO, t0: float, final: bool = False) -> None:
    from .report import progress_text
    from .runtime import Pilot

    assert isinstance(pilot, Pilot)
    st = pilot.service_status()
    j, it = st["JobStats"], st["IterationStats"]
    line = progress_text(
        j["FailedJobs"] + j["FinishedJobs"],
        j["TotalJobs"],
        j["FailedJobs"],
        it["FailedIterations"] + it["FinishedIterations"],
        it["TotalIterations"],
        it["ExecutingIterations"],
        it["InScheduleIterations"],
        time.monotonic() - t0,
    )
    if out.isatty():
        out.write("\r\x1b[2K" + line + ("\n" if final else ""))
    else:
        out.write(line + "\n")
    out.flush()


async def _progress(pilot: object, out: TextIO, t0: float) -> None:
    period = 0.5 if out.isatty() else 5.0
    while True:
        await anyio.sleep(period)
        _progress_line(pilot, out, t0)


# == network mode (--net): the ZMQ interface ===================================
#
# ``--net`` serves the original's ZMQ interface (REP requests, PUB events) until
# a ``finish`` request or a signal. With ``--file-path`` too, the file's requests
# are processed first, then the service keeps serving; if the file (or a client)
# sent ``control finishAfterAllTasksDone``, it ends once every job has ended (as
# the original). ``finish`` stops unfinished jobs, as in batch mode. At the end
# the interface stays up until the last events are published, and answers
# requests for ``--net-linger`` more seconds. Exit codes are batch mode's.


def _add_net_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network interface (ZMQ; needs the [zmq] extra)")
    g.add_argument(
        "--net",
        action="store_true",
        help="serve the ZMQ interface until a finish request or a signal",
    )
    g.add_argument(
        "--net-port",
        type=int,
        help="port of the request socket (implies --net; "
        "default: random in --net-port-min..--net-port-max)",
    )
    g.add_argument(
        "--net-pub-port",
        type=int,
        help="port of the event publisher (implies --net; default: random)",
    )
    g.add_argument(
        "--net-port-min", type=int, help="lowest random port (implies --net; default 2222)"
    )
    g.add_argument(
        "--net-port-max",
        type=int,
        help="end of the random port range (implies --net; default 9999)",
    )
    g.add_argument(
        "--net-linger",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="after the end (a finish request, or finishAfterAllTasksDone with "
        "every job ended), keep answering requests this long, so that a client's "
        "last status or wait4all gets its answer (default 1; new submits are refused)",
    )
    g.add_argument(
        "--net-bind",
        metavar="ADDR",
        help="interface to bind (implies --net; "
        "default 127.0.0.1; '*' for all, then this host's address is advertised)",
    )


def _net_enabled(args: argparse.Namespace) -> bool:
    return bool(
        args.net
        or args.net_port
        or args.net_pub_port
        or args.net_port_min
        or args.net_port_max
        or args.net_bind
    )


def _net_main(args: argparse.Namespace) -> int:
    try:
        from .adapters import zmq as _  # noqa: F401 - fail early and clearly without pyzmq
    except ImportError as e:
        _err(f"error: --net: {e}")
        return 2
    return _run(_net, args)


async def _net(args: argparse.Namespace, requests: list[object] | None) -> int:
    from .adapters.file import FileRun, run_requests
    from .adapters.protocol import Protocol
    from .adapters.zmq import serve_zmq

    pilot = _make_pilot(args)
    run = FileRun()
    async with pilot:
        t0 = time.monotonic()
        _log_notes(pilot, args)
        protocol = Protocol(pilot, log=pilot.log)
        server = serve_zmq(
            pilot,
            host=args.net_bind or "127.0.0.1",
            port=args.net_port,
            pub_port=args.net_pub_port,
            port_min=args.net_port_min or 2222,
            port_max=args.net_port_max or 9999,
            protocol=protocol,
        )
        async with server, anyio.create_task_group() as tg:
            _err(
                f"serving at {server.address} (events at {server.publisher}); "
                f"address in {os.path.join(pilot.service_path or '', 'address')}"
            )
            if args.show_progress:
                tg.start_soon(_progress, pilot, sys.stderr, t0)
            if requests is not None:
                run = await run_requests(protocol, requests, _err)
            await _until_finish(pilot, protocol)
            # The end, still serving: the jobs' last events are published, and
            # requests are answered (submits refused) for --net-linger seconds.
            protocol.closing = True
            if protocol.finish.is_set():
                await _stop_unfinished(pilot)
            await pilot.wait4all()
            await anyio.sleep(args.net_linger)
            tg.cancel_scope.cancel()
        if args.show_progress:
            _progress_line(pilot, sys.stderr, t0, final=True)
    return _exit_code(pilot, run)


async def _until_finish(pilot: object, protocol: object) -> None:
    """Return on ``finish``, or on ``finishAfterAllTasksDone`` once every job ended."""
    from .adapters.protocol import Protocol
    from .runtime import Pilot

    assert isinstance(pilot, Pilot) and isinstance(protocol, Protocol)
    async with anyio.create_task_group() as tg:

        async def on_finish() -> None:
            await protocol.finish.wait()
            tg.cancel_scope.cancel()

        async def after_all() -> None:
            await protocol.finish_after_all.wait()
            await pilot.wait4all()
            tg.cancel_scope.cancel()

        tg.start_soon(on_finish)
        tg.start_soon(after_all)
