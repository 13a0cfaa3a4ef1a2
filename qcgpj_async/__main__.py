"""``python -m qcgpj_async``: the service's command line."""

from .cli import main

raise SystemExit(main())
