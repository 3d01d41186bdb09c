"""The layering of DESIGN.md section 3, enforced: imports point one way
(core <- cql <- storage <- {runtime, sim} <- cli), runtime and sim never import each other,
only runtime/ (and the client-side bench/ and cli/) touch asyncio, sockets or the clock, and only storage/rocks.py imports RocksDB."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "agora"

ALLOWED = {  # package -> agora packages it may import
    "core": {"core"},
    "cql": {"core", "cql"},
    "storage": {"core", "cql", "storage"},
    "runtime": {"core", "cql", "storage", "runtime"},
    "sim": {"core", "cql", "storage", "sim"},
    "bench": {"core", "bench"},  # a load-generating client: the driver, processes, clocks
    "chaos": {"core", "runtime", "sim", "chaos"},  # real processes, the driver, iptables; sim's checkers
    "cli": {"core", "cql", "storage", "runtime", "sim", "bench", "chaos", "cli"},
}
IO_MODULES = {"asyncio", "socket", "time", "threading", "uvloop", "selectors"}
# storage/rocks.py is called from the runtime's fsync thread as well as the event loop, so it
# serialises its read-modify-write batches with a lock; that is its only I/O-side import.
IO_EXCEPTIONS = {("storage/rocks.py", "threading")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if len(rel.parts) > 1:
            yield rel.parts[0], rel, _imports(path)


def test_imports_point_one_way():
    bad = []
    for package, rel, names in _modules():
        for name in names:
            parts = name.split(".")
            if parts[0] == "agora" and len(parts) > 1 and parts[1] not in ALLOWED[package]:
                bad.append(f"{rel} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_runtime_does_io():
    bad = []
    for package, rel, names in _modules():
        if package in ("runtime", "cli", "bench", "chaos"):
            continue
        for name in names:
            if name.split(".")[0] in IO_MODULES and (rel.as_posix(), name) not in IO_EXCEPTIONS:
                bad.append(f"{rel} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_rocks_module_imports_rocksdb():
    bad = [f"{rel} imports {n}" for _, rel, names in _modules() for n in names
           if n.split(".")[0] == "rocksdict" and rel.as_posix() != "storage/rocks.py"]
    assert not bad, "\n".join(bad)


def test_every_module_opens_with_a_docstring():
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if path.name != "__init__.py" and ast.get_docstring(tree) is None:
            missing.append(str(path.relative_to(SRC)))
    assert not missing, missing
