"""Reading a config: YAML files (or packaged configs by name), `--set` overrides, and the mapping
turned into the section data classes with every key and type checked, then the whole run checked
(`keras_transfer.config.checks`)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from keras_transfer.config.checks import ConfigError, check_run
from keras_transfer.config.run import RunConfig
from keras_transfer.core.names import unknown_name_message

# PyYAML follows YAML 1.1, where a float needs a dot: `1e-3` and `5E4` are read as text. People
# write numbers that way (the README's own `block_lr` example did), so a float setting accepts
# text that is a plain decimal number; `nan`, `inf` and words stay refused.
_NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def yaml_problem(error: Exception) -> str:
    """A YAML parser error as one line: what is wrong and where (line, column), without the echo
    of the text PyYAML prints under it."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    what = getattr(error, "problem", None) or getattr(error, "context", None) or type(error).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{what}{where}".split())


def packaged_configs() -> list[str]:
    """Names of the configs that ship with the package (`default`, `small_similar`, ...)."""
    folder = resources.files("keras_transfer").joinpath("configs")
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def packaged_config(name: str) -> Path:
    """The path of the packaged config `name` (with or without `.yaml`); unknown names say the closest."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem not in packaged_configs():
        raise ConfigError(unknown_name_message("packaged config", stem, packaged_configs()))
    return Path(str(resources.files("keras_transfer").joinpath(f"configs/{stem}.yaml")))


def default_config_path() -> Path:
    """The packaged default configuration file."""
    return packaged_config("default")


def find_config(name_or_path: str | Path | None) -> Path:
    """A config file from `--config`: an existing path, else a packaged config's name, else the default.

    A name without a folder or suffix (`small_similar`) finds the packaged config, so the
    documented configs work for anyone who installed the package, not only in a checkout.
    """
    if name_or_path is None:
        return default_config_path()
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path(".") and path.suffix in ("", ".yaml") and path.stem in packaged_configs():
        return packaged_config(path.stem)
    raise ConfigError(f"config file {path} does not exist (packaged configs, usable by name: "
                      f"{', '.join(packaged_configs())})")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config (or the defaults), apply `a.b=value` overrides, and validate it all."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {yaml_problem(error)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (data, model, training, export)")
    for override in overrides:
        apply_override(raw, override)
    return from_dict(raw)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.2.c=value` in the nested dict/list `raw`; the value is parsed as YAML.

    A list of named items (the stages) is addressed by name or by index: `training.stages.top.epochs=3`
    and `training.stages.1.epochs=3` are the same key when the second stage is named `top`.
    """
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {override!r}")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as error:  # `[1,` or a tag such as !!python/object
        raise ConfigError(f"--set {key}: the value {text!r} is not valid YAML ({yaml_problem(error)}); "
                          "quote text, e.g. --set 'data.source=\"my photos\"'") from None
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} holds the value {node!r}, not a section with keys")
        if isinstance(node, list):
            node = node[_index(part, node, key)]
            continue
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if not isinstance(node, (dict, list)):
        raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} holds the value {node!r}, not a section with keys")
    if isinstance(node, list):
        index = int(last) if last.isdigit() else -1
        if index == len(node):
            node.append(value)
        else:
            node[_index(last, node, key)] = value
    else:
        node[last] = value


def _index(part: str, node: list, key: str) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    names = [item.get("name") for item in node if isinstance(item, dict)]
    if part in names:
        return names.index(part)
    named = [str(name) for name in names if name is not None]
    if named and not part.isdigit():
        raise ConfigError(unknown_name_message("name", part, named, where=f"--set {key}"))
    raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}"
                      + (f" (or one of the names {', '.join(named)})" if named else ""))


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping into a RunConfig (stages default to the head-then-top recipe)."""
    training = raw.get("training") or {}
    if isinstance(training, dict) and "stages" in training:
        if not isinstance(training["stages"], list) or not training["stages"]:
            raise ConfigError("training.stages must be a non-empty list of stages")
    config = build_section(RunConfig, raw, "")
    check_run(config)
    return config


def build_section(cls, raw: Any, where: str = ""):
    """The dataclass `cls` (a section: RunConfig, HeadConfig, ...) from a mapping, with every key and
    type checked; `where` is the section's key path for the messages (`model.head`)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(raw).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(unknown_name_message("key", str(key), names, where=where or "the config"))
    hints = typing.get_type_hints(cls)
    values = {}
    for name in names:
        if name in raw:
            values[name] = _coerce(hints[name], raw[name], f"{where}.{name}" if where else name)
    try:
        return cls(**values)
    except ValueError as error:  # a section's own checks (DataConfig, HeadConfig)
        raise ConfigError(str(error)) from None


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(item, v, f"{where}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        _, item = typing.get_args(hint)
        return {str(k): _coerce(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved configuration as plain data, ready for YAML."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
