"""The import rules of ARCHITECTURE.md, held by walking the package's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import qcgpj_async

PKG = Path(qcgpj_async.__file__).parent

# layer -> layers of ours it may import
ALLOWED = {
    "model": {"model"},
    "engine": {"engine", "model"},
    "executors": {"executors", "engine", "model"},
    "runtime": {"runtime", "executors", "engine", "model"},
    "adapters": {"adapters", "runtime", "executors", "engine", "model"},
    "report": {"report", "model"},  # reads files: works with no runtime, on any run
    # the original's synchronous API: a user-facing top, on the Pilot's public API
    "compat": {"compat", "adapters", "runtime", "model"},
}
ENGINE_FORBIDDEN = {
    "anyio",
    "asyncio",
    "trio",
    "time",
    "os",
    "subprocess",
    "socket",
    "signal",
    "datetime",
    "threading",
    "pathlib",
    "io",
    "shutil",
}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    pkg_parts = ["qcgpj_async", *path.relative_to(PKG).parent.parts]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
                found.add(mod)
                if not node.module:
                    found.update(f"{mod}.{a.name}" for a in node.names)
            elif node.module:
                found.add(node.module)
    return found


def ours(mod: str) -> str | None:
    parts = mod.split(".")
    if parts[0] != "qcgpj_async":
        return None
    return parts[1] if len(parts) > 1 else ""


def test_layers_import_only_downwards() -> None:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        layer = layer_of(path)
        for mod in imports(path):
            target = ours(mod)
            if target is None or target in ("", "_version") or target == layer:
                continue
            if layer in ALLOWED and target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(PKG)} imports {mod}")
            if target in ("adapters", "cli") and layer not in (
                "adapters",
                "cli",
                "compat",
                "__main__",
            ):
                bad.append(f"{path.relative_to(PKG)} imports {mod} (nothing imports adapters/cli)")
    assert bad == []


def test_engine_does_no_io_and_no_async() -> None:
    bad = [
        f"{p.relative_to(PKG)} imports {m}"
        for p in sorted((PKG / "engine").rglob("*.py"))
        for m in imports(p)
        if m.split(".")[0] in ENGINE_FORBIDDEN
    ]
    assert bad == []


def test_core_has_no_network_dependency() -> None:
    bad = [
        f"{p.relative_to(PKG)} imports {m}"
        for p in sorted(PKG.rglob("*.py"))
        # adapters/zmq.py (the [zmq] extra) and its private modules _zmq_*.py; and
        # report/_remote.py (`status ADDRESS`), which imports pyzmq inside a function
        if not (p.parent.name == "adapters" and (p.name == "zmq.py" or p.name.startswith("_zmq")))
        and p.relative_to(PKG).as_posix() != "report/_remote.py"
        for m in imports(p)
        if m.split(".")[0] == "zmq"
    ]
    assert bad == []


def test_walker_sees_relative_imports() -> None:
    # The checker itself must be able to fail: model/_jobs.py imports ._convert.
    assert "qcgpj_async.model._convert" in imports(PKG / "model" / "_jobs.py")


def test_report_imports_stdlib_only_at_module_level() -> None:
    # report/ works with the core install; its plotting extra is imported lazily.
    import sys

    bad = []
    for p in sorted((PKG / "report").rglob("*.py")):
        for node in ast.parse(p.read_text()).body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            for n in names:
                if n.split(".")[0] not in sys.stdlib_module_names | {"qcgpj_async"}:
                    bad.append(f"{p.relative_to(PKG)} imports {n}")
    assert bad == []


# -- size and the executor seam ------------------------------------------------------

#: The most lines a module may have (ARCHITECTURE.md: "none past 800").
MAX_LINES = 800
#: ``getattr``/``hasattr`` the runtime may use: (module, first argument) pairs. The
#: runtime reaches executors through what executors/_base.py declares, never by name.
RUNTIME_GETATTR_ALLOWED = {("_service.py", "logging")}  # a log level by its name


def long_modules(limit: int = MAX_LINES) -> list[str]:
    """Modules of the package with more than ``limit`` lines."""
    return [
        f"{p.relative_to(PKG)}: {n} lines"
        for p in sorted(PKG.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > limit
    ]


def attribute_lookups(source: str, module: str) -> list[str]:
    """``getattr``/``hasattr``/``setattr`` calls of ``source`` not in the allow-list."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
        ):
            target = ast.unparse(node.args[0]) if node.args else ""
            if (module, target) not in RUNTIME_GETATTR_ALLOWED:
                found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_is_over_800_lines() -> None:
    assert long_modules() == []


def test_the_line_guard_can_fail() -> None:
    # Every module has more than 10 lines' worth somewhere: a small limit finds some.
    assert any("runtime/_pilot.py" in m for m in long_modules(10))


def test_the_pilot_module_stays_small() -> None:
    # Lifetime, dispatch and the API; the rest is in composed objects (issue 22).
    assert len((PKG / "runtime" / "_pilot.py").read_text().splitlines()) <= 400


def test_the_runtime_reaches_executors_only_through_declared_methods() -> None:
    bad = []
    for path in sorted((PKG / "runtime").glob("*.py")):
        source = path.read_text()
        bad += attribute_lookups(source, path.name)
        bad += [
            f"{path.name}:{i}: {line.strip()}"
            for i, line in enumerate(source.splitlines(), 1)
            if "type: ignore" in line
        ]
    assert bad == []


def test_the_lookup_guard_can_fail() -> None:
    source = (
        "begin = getattr(self._executor, 'begin', None)\n"
        "if hasattr(executor, 'queues'): pass\n"
        "level = getattr(logging, 'INFO')\n"
    )
    assert attribute_lookups(source, "_pilot.py") == [
        "_pilot.py:1: getattr(self._executor, 'begin', None)",
        "_pilot.py:2: hasattr(executor, 'queues')",
        "_pilot.py:3: getattr(logging, 'INFO')",  # allowed in _service.py only
    ]
    assert attribute_lookups(source, "_service.py") == [
        "_service.py:1: getattr(self._executor, 'begin', None)",
        "_service.py:2: hasattr(executor, 'queues')",
    ]
