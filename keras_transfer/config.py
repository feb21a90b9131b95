"""The run configuration: a YAML file validated into data classes before any work starts.

`load_config(path, overrides)` reads YAML, applies `--set a.b.c=value` overrides (dotted paths,
list indices, YAML values), and checks every key and type. An unknown key, a wrong type, or an
unknown backbone gets one message with the key path and the closest valid choice. Code below
this module never re-checks the configuration.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keras_transfer._names import unknown_name_message
from keras_transfer.data.pipeline import DataConfig
from keras_transfer.heads import POOLINGS, TASKS

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
CACHE_FEATURES = ("auto", "always", "never")
HEAD_TYPES = ("dense", "logistic", "linear_svm", "knn")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
LR_SCALING = ("none", "linear")
EXPORT_FORMATS = ("keras", "saved_model", "tflite", "onnx")


class ConfigError(ValueError):
    """A configuration problem, with the key path where it was found."""


@dataclass(frozen=True)
class HeadConfig:
    """The new head: `dense` (a Keras head, see `keras_transfer.heads.HeadSpec`, trained in
    stages: Solution I) or an external classifier on frozen features (`logistic`, `linear_svm`,
    `knn`: Solution II, see `keras_transfer.features`)."""

    type: str = "dense"
    pooling: str = "avg"
    units: list[int] = field(default_factory=list)
    dropout: float = 0.2
    batch_norm: bool = False
    activation: str = "relu"


@dataclass(frozen=True)
class ModelConfig:
    """The backbone, where to cut it, and the head."""

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    cut_at: str | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    task: str = "multiclass"
    keep_source_top: bool = False
    train_bn: bool = False


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop a stage when `monitor` stops improving: "fine-tune until validation loss increases"."""

    monitor: str = "val_loss"
    patience: int = 2
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass(frozen=True)
class StageConfig:
    """One training stage: what trains, for how long, and at which learning rate(s)."""

    name: str = "head"
    train: Any = "head"
    epochs: int = 5
    learning_rate: float = 0.01
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float | None = None
    lr_schedule: str = "constant"
    warmup_epochs: int = 1
    block_lr_decay: float | None = None
    block_lr: dict[str, float] | None = None
    early_stopping: EarlyStoppingConfig | None = None
    cache_features: str = "auto"


@dataclass(frozen=True)
class TrainingConfig:
    """The stages, and how they run."""

    seed: int = 0
    strategy: str = "auto"
    lr_scaling: str = "none"
    mixed_precision: bool = False
    jit_compile: Any = "auto"
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])


@dataclass(frozen=True)
class ExportConfig:
    """Formats written at the end of a run."""

    formats: list[str] = field(default_factory=lambda: ["keras"])


@dataclass(frozen=True)
class RunConfig:
    """A whole run: data, model, training, export."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


_CHOICES = {
    "model.task": TASKS,
    "model.head.pooling": POOLINGS,
    "model.head.type": HEAD_TYPES,
    "training.strategy": STRATEGIES,
    "training.lr_scaling": LR_SCALING,
    "optimizer": OPTIMIZERS,
    "lr_schedule": SCHEDULES,
    "cache_features": CACHE_FEATURES,
    "export.formats": EXPORT_FORMATS,
}


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
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (data, model, training, export)")
    for override in overrides:
        apply_override(raw, override)
    return from_dict(raw)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.2.c=value` in the nested dict/list `raw`; the value is parsed as YAML."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {override!r}")
    value = yaml.safe_load(text) if text else None
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = node[_index(part, node, key)]
            continue
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        index = int(last) if last.isdigit() else -1
        if index == len(node):
            node.append(value)
        else:
            node[_index(last, node, key)] = value
    else:
        node[last] = value


def _index(part: str, node: list, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping into a RunConfig (stages default to the head-then-top recipe)."""
    training = raw.get("training") or {}
    if isinstance(training, dict) and "stages" in training:
        if not isinstance(training["stages"], list) or not training["stages"]:
            raise ConfigError("training.stages must be a non-empty list of stages")
    config = _build(RunConfig, raw, "")
    _check_choices(config)
    return config


def _build(cls, raw: Any, where: str):
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
    except ValueError as error:  # DataConfig's own checks
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
        return _build(hint, value, where)
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _check_choices(config: RunConfig) -> None:
    from keras_transfer.backbones import FAMILIES

    def check(value, choices, where):
        if value not in choices:
            raise ConfigError(unknown_name_message(f"value for {where}", str(value), choices))

    backbone = config.model.backbone
    if backbone not in FAMILIES and not backbone.endswith((".keras", ".h5")):
        raise ConfigError(unknown_name_message("backbone", backbone, FAMILIES, where="model.backbone"))
    check(config.model.task, TASKS, "model.task")
    check(config.model.head.pooling, POOLINGS, "model.head.pooling")
    check(config.model.head.type, HEAD_TYPES, "model.head.type")
    if config.model.head.type != "dense":
        _check_feature_classifier(config)
    check(config.training.strategy, STRATEGIES, "training.strategy")
    check(config.training.lr_scaling, LR_SCALING, "training.lr_scaling")
    if config.training.jit_compile not in ("auto", True, False):
        raise ConfigError(f"training.jit_compile must be auto, true or false, got {config.training.jit_compile!r}")
    for fmt in config.export.formats:
        check(fmt, EXPORT_FORMATS, "export.formats")
    seen = set()
    for i, stage in enumerate(config.training.stages):
        where = f"training.stages.{i}"
        check(stage.optimizer, OPTIMIZERS, f"{where}.optimizer")
        check(stage.lr_schedule, SCHEDULES, f"{where}.lr_schedule")
        check(stage.cache_features, CACHE_FEATURES, f"{where}.cache_features")
        if stage.name in seen:
            raise ConfigError(f"{where}.name: stage name {stage.name!r} is used twice")
        seen.add(stage.name)
        if stage.epochs < 1 or stage.learning_rate <= 0:
            raise ConfigError(f"{where}: epochs must be >= 1 and learning_rate > 0")
        if stage.block_lr_decay is not None and not 0 <= stage.block_lr_decay <= 1:
            raise ConfigError(f"{where}.block_lr_decay must be in [0, 1], got {stage.block_lr_decay}")
        if stage.block_lr_decay is not None and stage.block_lr:
            raise ConfigError(f"{where}: give block_lr_decay or block_lr, not both")
        if not isinstance(stage.train, (str, list)):
            raise ConfigError(f"{where}.train must be head, all, none, top:N or a list of block names")


def _check_feature_classifier(config: RunConfig) -> None:
    head, kind = config.model.head, config.model.head.type
    if head.pooling == "flatten":
        raise ConfigError(f"model.head.pooling: a {kind} classifier takes pooled features; use avg or max")
    if head.units:
        raise ConfigError(f"model.head.units: a {kind} classifier has no hidden Dense layers; drop units "
                          "or use model.head.type: dense")
    if config.model.task != "multiclass" or config.model.keep_source_top:
        raise ConfigError(f"model.head.type: {kind} classifies one class per image (model.task: multiclass, "
                          "keep_source_top: false)")


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
