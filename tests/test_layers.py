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
        # adapters/zmq.py (the [zmq] extra) and its private modules _zmq_*.py
        if not (p.parent.name == "adapters" and (p.name == "zmq.py" or p.name.startswith("_zmq")))
        for m in imports(p)
        if m.split(".")[0] == "zmq"
    ]
    assert bad == []


def test_walker_sees_relative_imports() -> None:
    # The checker itself must be able to fail: model/_jobs.py imports ._convert.
    assert "qcgpj_async.model._convert" in imports(PKG / "model" / "_jobs.py")
