"""The run configuration: a YAML file validated into data classes before any work starts.

`load_config(path, overrides)` reads YAML, applies `--set a.b.c=value` overrides (dotted paths,
list indices, YAML values), and checks every key and type. An unknown key, a wrong type, or an
unknown backbone gets one message with the key path and the closest valid choice. Code below
this module never re-checks the configuration.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from importlib import resources

import yaml

from keras_transfer.core.names import unknown_name_message
from keras_transfer.core.constraints import Constraint, Interval, OneOf, check_constraints
from keras_transfer.data.pipeline import DATA_CONSTRAINTS, DataConfig
from keras_transfer.heads import HEAD_CONSTRAINTS, TASKS
from keras_transfer.core.layers import VIEWS

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
CACHE_FEATURES = ("auto", "always", "never")
HEAD_TYPES = ("dense", "logistic", "linear_svm", "knn")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
LR_SCALING = ("none", "linear")
# `stages` runs every configured stage; `auto` measures the data and runs the best prefix of
# head / top / full, or Solution II (`keras_transfer.features.advisor.decide`).
RECIPES = ("stages", "auto")
# `adabn`: BatchNorm statistics re-estimated on data.unlabeled (keras_transfer.training.adapt).
ADAPT_METHODS = ("none", "adabn")
EXPORT_FORMATS = ("keras", "saved_model", "tflite", "onnx")
# What Keras logs per epoch for our losses and metrics (accuracy, or mae for regression).
MONITORS = tuple(prefix + name for prefix in ("val_", "") for name in ("loss", "accuracy", "mae"))


class ConfigError(ValueError):
    """A configuration problem, with the key path where it was found."""


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


@dataclass(frozen=True)
class HeadConfig:
    """The new head: `dense` (a Keras head, see `keras_transfer.heads.HeadSpec`, trained in
    stages: fine-tuning) or an external classifier on frozen features (`logistic`, `linear_svm`,
    `knn`: feature extraction, see `keras_transfer.features`).

    For an external classifier, `layers` names the blocks (or layers) whose pooled features it
    fits on, concatenated (default: the backbone's output); `views` the fixed views of each image
    it trains on and averages at prediction (`keras_transfer.core.layers.VIEWS`: full, flip, zoom,
    flip_zoom); `C` fixes the regularisation instead of choosing it by cross-validation.
    """

    type: str = "dense"
    pooling: str = "avg"
    units: list[int] = field(default_factory=list)
    dropout: float = 0.2
    batch_norm: bool = False
    activation: str = "relu"
    layers: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=lambda: ["full"])
    C: float | None = None


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
    adapt: str = "none"


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
class SelfTrainingConfig:
    """Self-training on `data.unlabeled`: each round pseudo-labels the unlabelled images the
    classifier gives at least `threshold` probability, and refits on the labelled images plus them."""

    rounds: int = 3
    threshold: float = 0.9


@dataclass(frozen=True)
class TrainingConfig:
    """The stages, and how they run."""

    seed: int = 0
    strategy: str = "auto"
    lr_scaling: str = "none"
    recipe: str = "stages"
    mixed_precision: bool = False
    jit_compile: Any = "auto"
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    self_training: SelfTrainingConfig | None = None


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


def constraint_table() -> dict[str, Constraint]:
    """Every choice and range of a run config, by key path (`*` walks a list)."""
    table: dict[str, Constraint] = {f"data.{key}": rule for key, rule in DATA_CONSTRAINTS.items()}
    table.update({f"model.head.{key}": rule for key, rule in HEAD_CONSTRAINTS.items()})
    table.update({
        "model.task": OneOf(TASKS),
        "model.head.type": OneOf(HEAD_TYPES),
        "model.head.views.*": OneOf(VIEWS),
        "model.head.C": Interval(0, closed="neither"),
        "model.adapt": OneOf(ADAPT_METHODS),
        "training.self_training.rounds": Interval(1, integer=True),
        "training.self_training.threshold": Interval(0, 1, closed="right"),
        "training.seed": Interval(0, integer=True),
        "training.strategy": OneOf(STRATEGIES),
        "training.lr_scaling": OneOf(LR_SCALING),
        "training.recipe": OneOf(RECIPES),
        "training.jit_compile": OneOf(("auto", True, False)),
        "export.formats.*": OneOf(EXPORT_FORMATS),
        "training.stages.*.optimizer": OneOf(OPTIMIZERS),
        "training.stages.*.lr_schedule": OneOf(SCHEDULES),
        "training.stages.*.cache_features": OneOf(CACHE_FEATURES),
        "training.stages.*.epochs": Interval(1, integer=True),
        "training.stages.*.learning_rate": Interval(0, closed="neither"),
        "training.stages.*.momentum": Interval(0, 1),
        "training.stages.*.weight_decay": Interval(0),
        "training.stages.*.warmup_epochs": Interval(0, integer=True),
        "training.stages.*.block_lr_decay": Interval(0, 1),
        "training.stages.*.block_lr.*": Interval(0),
        "training.stages.*.early_stopping.monitor": OneOf(MONITORS),
        "training.stages.*.early_stopping.patience": Interval(0, integer=True),
        "training.stages.*.early_stopping.min_delta": Interval(0),
    })
    return table


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


def _check_choices(config: RunConfig) -> None:
    from keras_transfer.backbones import FAMILIES

    backbone = config.model.backbone
    if backbone not in FAMILIES and not backbone.endswith((".keras", ".h5")):
        raise ConfigError(unknown_name_message("backbone", backbone, FAMILIES, where="model.backbone"))
    check_constraints(config, constraint_table(), error=ConfigError)
    if backbone.endswith((".keras", ".h5")) and config.data.augment and config.data.augment_in == "model":
        raise ConfigError("data.augment_in: model cannot wrap a saved source model (model.backbone "
                          f"{backbone}); use data.augment_in: data")
    if config.model.head.type != "dense":
        _check_feature_classifier(config)
    else:
        for key, unset in (("layers", []), ("views", ["full"]), ("C", None)):
            if getattr(config.model.head, key) != unset:
                raise ConfigError(f"model.head.{key} is for a classifier on frozen features (model.head.type: "
                                  "logistic, linear_svm or knn); a dense head trains on the backbone's output "
                                  "(cut it with model.cut_at)")
    _check_unlabeled(config)
    names = [stage.name for stage in config.training.stages]
    if config.training.recipe == "auto" and "head" not in names:
        raise ConfigError("training.recipe: auto runs a prefix of the stages named head, top and full, and "
                          f"training.stages has {', '.join(repr(n) for n in names)}; name the head stage 'head', "
                          "or set training.recipe: stages to run every stage as listed")
    seen = set()
    for i, stage in enumerate(config.training.stages):
        if stage.name in seen:
            raise ConfigError(f"training.stages.{i}.name: stage name {stage.name!r} is used twice")
        seen.add(stage.name)
        where = f"training.stages.{stage.name}"  # the key that --set takes, and the name the log prints
        if stage.block_lr_decay is not None and stage.block_lr:
            raise ConfigError(f"{where}: give block_lr_decay or block_lr, not both")
        if not isinstance(stage.train, (str, list)):
            raise ConfigError(f"{where}.train must be head, all, none, top:N or a list of block names")
        metric = "mae" if config.model.task == "regression" else "accuracy"
        monitor = stage.early_stopping.monitor if stage.early_stopping else "val_loss"
        if monitor.removeprefix("val_") not in ("loss", metric):
            raise ConfigError(f"{where}.early_stopping.monitor: {monitor!r} is not logged for model.task "
                              f"{config.model.task}; use val_loss, val_{metric}, loss or {metric}")


def _check_unlabeled(config: RunConfig) -> None:
    """AdaBN and self-training read data.unlabeled; self-training runs on Solution II's cached features."""
    users = [f"model.adapt: {config.model.adapt}"] if config.model.adapt != "none" else []
    if config.training.self_training is not None:
        users.append("training.self_training")
    if users and config.data.unlabeled is None:
        raise ConfigError(f"{' and '.join(users)} need(s) data.unlabeled: a folder of unlabelled target images "
                          "(or any source, whose labels are then ignored)")
    if config.training.self_training is not None and config.model.head.type == "dense":
        raise ConfigError("training.self_training refits a classifier on cached features (Solution II); set "
                          "model.head.type: logistic, linear_svm or knn")


def _check_feature_classifier(config: RunConfig) -> None:
    head, kind = config.model.head, config.model.head.type
    if head.pooling == "flatten":
        raise ConfigError(f"model.head.pooling: a {kind} classifier takes pooled features; use avg or max")
    if head.units:
        raise ConfigError(f"model.head.units: a {kind} classifier has no hidden Dense layers; drop units "
                          "or use model.head.type: dense")
    if not head.views or len(set(head.views)) != len(head.views):
        raise ConfigError(f"model.head.views must list each view once, some of {', '.join(VIEWS)}; got {head.views}")
    if kind == "knn" and head.C is not None:
        raise ConfigError("model.head.C is the regularisation of logistic and linear_svm; knn chooses its k")
    if config.model.task != "multiclass" or config.model.keep_source_top:
        hint = "; for model.task: regression use model.head.type: dense" if config.model.task == "regression" else ""
        raise ConfigError(f"model.head.type: {kind} classifies one class per image (model.task: multiclass, "
                          f"keep_source_top: false){hint}")


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
