"""``python -m qcgpj_async``: the service's command line."""

from .cli import run

run()
