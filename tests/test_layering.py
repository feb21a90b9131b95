"""The package's layers hold: a module imports only from its own layer or the ones below it.

Imports inside functions count too: a lazy import is still a dependency. The layers, lowest
first (docs/architecture.md explains each):

    core < config < data, backbones, heads, freeze < metrics, forward < training
    < features < interpret < deploy < runs < cli

The package root (`keras_transfer/__init__.py`, `__main__.py`) and the command shims beside it
(`python -m keras_transfer.train` ...) sit above everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_transfer"
LAYERS = [
    ("core",),
    ("config",),
    ("data", "backbones", "heads", "freeze"),
    ("metrics", "forward"),
    ("training",),
    ("features",),
    ("interpret",),
    ("deploy",),
    ("runs",),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
TOP = len(LAYERS)  # the package root and the command shims


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: its first part below keras_transfer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int:
    unit = _unit(module)
    return RANK.get(unit, TOP)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every keras_transfer import in `path`, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(), str(path))
    # `if TYPE_CHECKING:` imports name types for annotations only; they never run.
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for stmt in node.body for inner in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("keras_transfer")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("keras_transfer"):
                continue
            if target == "keras_transfer":  # `from keras_transfer import x`: x is the module imported
                found += [(node.lineno, f"keras_transfer.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, module


def test_every_module_belongs_to_a_layer_or_is_a_command_shim():
    shims = {"train", "evaluate", "predict", "export", "probe", "advise", "describe", "explain", "visualize",
             "lr_find", "check", "suggest"}
    unplaced = sorted({_unit(m) for _, m in _modules()} - set(RANK) - shims - {"", "__main__", "_notebook",
                                                                                  "configs"})
    assert not unplaced, f"modules outside every layer: {unplaced}; add them to LAYERS"


def test_no_module_imports_from_a_layer_above_its_own():
    violations = []
    for path, module in _modules():
        rank = _rank(module)
        if rank == TOP:
            continue
        for line, target in _imports(path, module):
            if target == "keras_transfer":
                continue  # the package itself: register_serializables, __version__
            if _rank(target) > rank:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({_unit(module)}) imports "
                                  f"{target} ({_unit(target)})")
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_no_two_modules_of_a_package_import_each_other():
    edges = {}
    for path, module in _modules():
        edges[module] = {t for _, t in _imports(path, module)}
    cycles = sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets
                    if a < b and a in edges.get(b, ()) and _unit(a) == _unit(b) and b != a)
    assert not cycles, "module cycles:\n" + "\n".join(cycles)


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from keras_transfer.cli.train import main\n")
    assert _imports(source, "keras_transfer.core.probe") == [(2, "keras_transfer.cli.train")]
    assert _rank("keras_transfer.cli.train") > _rank("keras_transfer.core.probe")
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from keras_transfer.cli import x\n")
    assert _imports(source, "keras_transfer.core.probe") == []
