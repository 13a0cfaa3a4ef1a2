"""``python -m qcgpj_async.compat SCRIPT [ARGS]``, or ``... -m MODULE [ARGS]``.

Runs a program written for QCG-PilotJob unchanged, with ``qcg.pilotjob.api.*``
and ``qcg.pilotjob.executor_api.*`` resolving to :mod:`qcgpj_async.compat`,
in this process only (nothing is installed under the name ``qcg``).
"""

from __future__ import annotations

import runpy
import sys

from ._alias import install

USAGE = (
    "usage: python -m qcgpj_async.compat SCRIPT [ARGS...]\n"
    "       python -m qcgpj_async.compat -m MODULE [ARGS...]\n"
    "Runs a QCG-PilotJob program with qcg.pilotjob.api and qcg.pilotjob.executor_api\n"
    "resolving to qcgpj_async.compat."
)


def main(argv: list[str] | None = None) -> int:
    """Run the program named by ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    install()
    if args[0] == "-m":
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, _script_dir(args[0]))
        runpy.run_path(args[0], run_name="__main__")
    return 0


def _script_dir(path: str) -> str:
    import os

    return os.path.dirname(os.path.abspath(path))


if __name__ == "__main__":
    sys.exit(main())
