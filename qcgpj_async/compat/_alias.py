"""``qcg.pilotjob.api.*`` and ``qcg.pilotjob.executor_api.*`` resolving to ours, in this process.

:func:`install` puts a finder first on ``sys.meta_path``: the original's
client modules are answered with ours, even where the original is installed;
the rest of ``qcg.pilotjob`` (its service, ...) is left to the other finders.
Where no ``qcg`` package is installed at all, ``qcg`` and ``qcg.pilotjob``
are made as empty packages, so that the aliases have parents to live in.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

__all__ = ("ALIASES", "install")

#: The original's module -> ours.
ALIASES = {
    "qcg.pilotjob.api": "qcgpj_async.compat",
    "qcg.pilotjob.api.manager": "qcgpj_async.compat.manager",
    "qcg.pilotjob.api.job": "qcgpj_async.compat.job",
    "qcg.pilotjob.api.jobinfo": "qcgpj_async.compat.jobinfo",
    "qcg.pilotjob.api.errors": "qcgpj_async.compat.errors",
    "qcg.pilotjob.executor_api": "qcgpj_async.compat.executor",
    "qcg.pilotjob.executor_api.qcgpj_executor": "qcgpj_async.compat.executor",
    "qcg.pilotjob.executor_api.qcgpj_future": "qcgpj_async.compat.executor",
    "qcg.pilotjob.executor_api.templates": "qcgpj_async.compat.executor",
    "qcg.pilotjob.executor_api.templates.basic_template": "qcgpj_async.compat.executor",
    "qcg.pilotjob.executor_api.templates.qcgpj_template": "qcgpj_async.compat.executor",
}
#: Aliases that have aliases below them: they must be packages.
_PACKAGES = {"qcg.pilotjob.executor_api", "qcg.pilotjob.executor_api.templates"}
_PARENTS = ("qcg", "qcg.pilotjob")


class _Loader(importlib.abc.Loader):
    def __init__(self, make: Any) -> None:
        self._make = make

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module: types.ModuleType = self._make()
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # made whole by create_module


def _package_view(name: str, target: str) -> types.ModuleType:
    # A package of its own that shows our module's names: a plain module cannot
    # have submodules, and the alias ``...executor_api.templates`` needs them.
    ours = importlib.import_module(target)
    module = types.ModuleType(name, ours.__doc__)
    module.__dict__.update({k: v for k, v in vars(ours).items() if not k.startswith("__")})
    module.__path__ = []
    module.__version__ = getattr(ours, "__version__", None)  # type: ignore[attr-defined]
    return module


def _empty_package(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []
    return module


class AliasFinder(importlib.abc.MetaPathFinder):
    """Answers the original's client modules with ours."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        ours = ALIASES.get(fullname)
        if ours is not None:
            if fullname in _PACKAGES:
                loader = _Loader(lambda: _package_view(fullname, ours))
                return importlib.machinery.ModuleSpec(fullname, loader, is_package=True)
            loader = _Loader(lambda: importlib.import_module(ours))
            is_package = ours == "qcgpj_async.compat"
            return importlib.machinery.ModuleSpec(fullname, loader, is_package=is_package)
        if fullname in _PARENTS and not self._installed(fullname, path):
            loader = _Loader(lambda: _empty_package(fullname))
            return importlib.machinery.ModuleSpec(fullname, loader, is_package=True)
        return None

    def _installed(self, fullname: str, path: Sequence[str] | None) -> bool:
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is not None and find(fullname, path) is not None:
                return True
        return False


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once), and drop any original
    client module already imported, so that the next import gets ours."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
    for name in ALIASES:
        sys.modules.pop(name, None)
