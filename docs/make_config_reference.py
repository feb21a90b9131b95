"""Write docs/config.md, the config reference, from the schema itself: every key of `RunConfig`
with its type, default and allowed values (the constraint tables `load_config` checks).

    python docs/make_config_reference.py          # rewrite docs/config.md
    python docs/make_config_reference.py --check  # exit 1 if docs/config.md is out of date

tests/test_docs.py runs the check, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import inspect
import sys
import typing
from pathlib import Path

OUT = Path(__file__).resolve().parent / "config.md"

HEADER = """# Config reference

Generated from the schema by `python docs/make_config_reference.py`; do not edit by hand.

A run is one YAML file with four sections, `data`, `model`, `training` and `export`; every key is
optional and defaults as below. `--set KEY=VALUE` on any command overrides one key (`KEY` as
written here, `*` an index, e.g. `training.stages.0.epochs=3`). An unknown key or a value
outside its allowed set is refused before any work, naming the key and the closest valid choice.
The packaged configs (`default`, `photos`, `small_similar`, `small_different`, `large_similar`,
`large_different`) are starting points: `--config photos`.
"""


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        names = " or ".join(_type_name(a) for a in args)
        return names + (" or null" if type(None) in typing.get_args(hint) else "")
    if hint is typing.Any:
        return "any"
    if dataclasses.is_dataclass(hint):
        return "section"
    return getattr(hint, "__name__", str(hint))


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    if dataclasses.is_dataclass(value):
        return "(section)"
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return f"{len(value)} entry" if len(value) == 1 else f"{len(value)} entries"
    try:
        return f"`{json.dumps(value)}`"  # as YAML reads it: lists in brackets, true/false, null
    except TypeError:
        return f"`{value}`"


def _allowed(key: str, table: dict) -> str:
    rule = table.get(key) or table.get(f"{key}.*")
    if rule is None:
        return ""
    if hasattr(rule, "choices"):
        return ", ".join(f"`{c}`" for c in rule.choices)
    return rule.describe() if hasattr(rule, "describe") else str(rule)


def _rows(cls, prefix: str, table: dict, sections: list) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = hints[field.name]
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        nested = hint if dataclasses.is_dataclass(hint) else (inner[0] if inner else None)
        if nested is not None:
            star = ".*" if typing.get_origin(hint) in (list, tuple) else ""
            sections.append((f"{key}{star}", nested))
            rows.append(f"| `{key}` | {_type_name(hint)} | {_default(field)} | see `{key}{star}` |")
            continue
        rows.append(f"| `{key}` | {_type_name(hint)} | {_default(field)} | {_allowed(key, table)} |")
    return rows


def reference() -> str:
    """The whole reference as Markdown."""
    from keras_transfer.config import RunConfig, constraint_table

    table = constraint_table()
    out = [HEADER]
    hints = typing.get_type_hints(RunConfig)
    queue = [(f.name, hints[f.name]) for f in dataclasses.fields(RunConfig)]
    while queue:
        name, cls = queue.pop(0)
        found: list = []
        doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
        out += [f"## `{name}`", "", doc, "", "| key | type | default | allowed |", "|---|---|---|---|"]
        out += _rows(cls, f"{name}.", table, found)
        out.append("")
        queue = found + queue
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/config.md is out of date")
    args = parser.parse_args(argv)
    text = reference()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docs/make_config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
