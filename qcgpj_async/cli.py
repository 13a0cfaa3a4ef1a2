"""The command line: argparse with the original service's flags, wiring only."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._version import __version__

__all__ = ("main",)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m qcgpj_async``."""
    parser = argparse.ArgumentParser(
        prog="qcgpj-async",
        description="Run many small jobs inside one allocation (QCG-PilotJob compatible).",
    )
    parser.add_argument("--version", action="version", version=f"qcgpj_async {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service; returns the process exit code."""
    build_parser().parse_args(argv)
    return 0
