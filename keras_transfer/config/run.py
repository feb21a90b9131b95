"""The `training:` and `export:` sections, the whole run, and the table of every choice and range.

`constraint_table()` is the one table of what each key may be, by key path (`*` walks a list):
the data and head tables under their prefixes, then the run's own. `keras_transfer.config.checks`
checks a run against it; the config reference (docs/make_config_reference.py) is generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keras_transfer.config.data import DATA_CONSTRAINTS, DataConfig
from keras_transfer.config.model import ADAPT_METHODS, HEAD_CONSTRAINTS, TASKS, ModelConfig
from keras_transfer.core.constraints import Constraint, Interval, OneOf

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
CACHE_FEATURES = ("auto", "always", "never")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
LR_SCALING = ("none", "linear")
# `stages` runs every configured stage; `auto` measures the data and runs the best prefix of
# head / top / full, or a linear probe (`keras_transfer.features.advisor.decide`).
RECIPES = ("stages", "auto")
EXPORT_FORMATS = ("keras", "saved_model", "tflite", "onnx")
# What Keras logs per epoch for our losses and metrics (accuracy, or mae for regression).
MONITORS = tuple(prefix + name for prefix in ("val_", "") for name in ("loss", "accuracy", "mae"))


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop a stage when `monitor` stops improving: "fine-tune until validation loss increases"."""

    monitor: str = "val_loss"
    patience: int = 2
    min_delta: float = 0.0
    restore_best_weights: bool = True
    # Accuracy per minute: end the stage after an epoch that raised the run's best validation
    # accuracy by fewer points than this per minute it took (None: off). See docs/training.md.
    min_gain_per_minute: float | None = None


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
    cache_activations: str = "auto"


@dataclass(frozen=True)
class SelfTrainingConfig:
    """Self-training on `data.unlabeled`: each round pseudo-labels the unlabelled images the
    classifier is most confident of, class-balanced (round r of `rounds` takes per predicted class
    up to `share * r / rounds` of the pool's per-class share, none below `threshold` probability),
    and refits on the labelled images plus them."""

    rounds: int = 3
    threshold: float = 0.0
    share: float = 0.6


@dataclass(frozen=True)
class TrainingConfig:
    """The stages, and how they run."""

    seed: int = 0
    strategy: str = "auto"
    lr_scaling: str = "none"
    recipe: str = "stages"
    mixed_precision: bool = False
    jit_compile: Any = "auto"
    # Seconds the run may take (`--time-limit 10m`), or None: at the limit the stage running ends
    # at the end of its batch, later stages are skipped, and the run finishes with the model so far.
    time_limit: float | None = None
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
    return dict(_RUN_CONSTRAINTS)


_RUN_CONSTRAINTS: dict[str, Constraint] = {
    **{f"data.{key}": rule for key, rule in DATA_CONSTRAINTS.items()},
    **{f"model.head.{key}": rule for key, rule in HEAD_CONSTRAINTS.items()},
    "model.task": OneOf(TASKS),
    "model.adapt": OneOf(ADAPT_METHODS),
    "training.self_training.rounds": Interval(1, integer=True),
    "training.self_training.threshold": Interval(0, 1),
    "training.self_training.share": Interval(0, 1, closed="right"),
    "training.seed": Interval(0, integer=True),
    "training.strategy": OneOf(STRATEGIES),
    "training.lr_scaling": OneOf(LR_SCALING),
    "training.recipe": OneOf(RECIPES),
    "training.jit_compile": OneOf(("auto", True, False)),
    "training.time_limit": Interval(0, closed="neither"),
    "export.formats.*": OneOf(EXPORT_FORMATS),
    "training.stages.*.optimizer": OneOf(OPTIMIZERS),
    "training.stages.*.lr_schedule": OneOf(SCHEDULES),
    "training.stages.*.cache_features": OneOf(CACHE_FEATURES),
    "training.stages.*.cache_activations": OneOf(CACHE_FEATURES),
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
    "training.stages.*.early_stopping.min_gain_per_minute": Interval(0),
}
