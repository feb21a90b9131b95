"""The docs describe the product as it is: the config reference is generated from the schema, and
every command, option and config key the README and docs/ name exists."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Keys the docs show being refused, on purpose.
DELIBERATELY_WRONG = {"data.batch_size.x"}
# Python the docs show in backticks that reads like a key: Keras's Model.fit.
NOT_KEYS = {"model.fit", "model.compile", "model.predict", "model.save"}
FILE_SUFFIXES = (".keras", ".h5", ".yaml", ".yml", ".json", ".png", ".onnx", ".tflite", ".csv", ".txt", ".html", ".py", ".md")


def _text() -> list[tuple[Path, str]]:
    return [(page, page.read_text()) for page in PAGES]


def test_the_config_reference_is_generated_from_the_schema():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "make_config_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _commands_in(text: str) -> list[tuple[str, list[str]]]:
    """(command, options on the same line) for every `keras-transfer CMD` or
    `python -m keras_transfer.CMD` in `text`; not inside a link anchor or a path."""
    pattern = re.compile(r"(?<![\w#/-])(?:keras-transfer[ \t]+|python -m keras_transfer\.)([a-z_-]+)([^\n`|]*)")
    found = []
    for match in pattern.finditer(text):
        rest = match.group(2).split("#")[0]  # a shell comment after the command
        found.append((match.group(1), re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)))
    return found


def _commands_named() -> list[tuple[Path, str, list[str]]]:
    return [(page, command, options) for page, text in _text() for command, options in _commands_in(text)]


def test_the_command_check_reads_commands_and_options_but_not_anchors():
    text = "run `keras-transfer train photos/ --resume --output-dir r` or [x](a.md#probe-keras-transfer-probe)"
    assert _commands_in(text) == [("train", ["--resume", "--output-dir"])]
    assert _commands_in("python -m keras_transfer.lr_find --stage top") == [("lr_find", ["--stage"])]


def test_every_command_and_option_the_docs_name_exists():
    from keras_transfer.cli import COMMANDS, command_module

    assert _commands_named(), "the docs name no command: the pattern is broken"
    wrong = []
    for page, command, options in _commands_named():
        if command.replace("_", "-") not in COMMANDS:
            wrong.append(f"{page.name}: unknown command {command!r}")
            continue
        parser = command_module(command).build_parser()
        known = {o for action in parser._actions for o in action.option_strings}
        wrong += [f"{page.name}: {command} has no option {o}" for o in options if o not in known]
    assert not wrong, "\n".join(sorted(set(wrong)))


def _schema_has(key: str) -> bool:
    from keras_transfer.config import RunConfig

    node: typing.Any = RunConfig
    for part in key.split("."):
        if node is None:
            return False
        origin = typing.get_origin(node)
        if part == "*" and dataclasses.is_dataclass(node):
            return True  # `data.*`: every key of the section
        if origin in (list, tuple):
            item = typing.get_args(node)[0] if typing.get_args(node) else None
            named = dataclasses.is_dataclass(item) and "name" in typing.get_type_hints(item)
            if not (part.isdigit() or part == "*" or (named and part.isidentifier())):
                return False  # a list of named items (the stages) is addressed by name too
            node = item
            continue
        if origin is dict:  # block_lr: any block name
            node = typing.get_args(node)[1]
            continue
        if origin is not None:  # X | None
            inner = [a for a in typing.get_args(node) if a is not type(None)]
            node = inner[0] if len(inner) == 1 else None
            if node is None:
                return False
            if typing.get_origin(node) is not None or not dataclasses.is_dataclass(node):
                return _schema_has_in(node, part)
        if not dataclasses.is_dataclass(node):
            return False
        hints = typing.get_type_hints(node)
        if part not in hints:
            return False
        node = hints[part]
    return True


def _schema_has_in(node, part: str) -> bool:
    origin = typing.get_origin(node)
    if origin in (list, tuple):
        return part.isdigit() or part == "*"
    return origin is dict


def _keys_named() -> list[tuple[Path, str]]:
    found = []
    pattern = re.compile(r"(?:`|--set\s+)((?:data|model|training|export)(?:\.[A-Za-z_*0-9]+)+)(?=[`=\s:,)]|$)")
    for page, text in _text():
        for match in pattern.finditer(text):
            key = match.group(1).rstrip(".")
            if key.endswith(FILE_SUFFIXES) or key in DELIBERATELY_WRONG | NOT_KEYS or any(
                    part.isupper() for part in key.split(".")):  # a placeholder: data.KEY
                continue
            found.append((page, key))
    return found


def test_every_config_key_the_docs_name_exists():
    keys = _keys_named()
    assert any(key == "model.head.type" for _, key in keys), "the docs name no config key: the pattern is broken"
    wrong = sorted({f"{page.name}: {key}" for page, key in keys if not _schema_has(key)})
    assert not wrong, "config keys the schema does not have:\n" + "\n".join(wrong)


@pytest.mark.parametrize("key,exists", [("model.head.type", True), ("training.stages.0.epochs", True),
                                        ("training.stages.*.block_lr.block6", True), ("model.head.kind", False),
                                        ("data.sources", False), ("training.stages.top.epochs", True), ("data.*", True),
                                        ("training.stages.top.epochs.x", False), ("export.formats.top", False)])
def test_the_key_check_tells_real_keys_from_misspelt_ones(key, exists):
    assert _schema_has(key) is exists
