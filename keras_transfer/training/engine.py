"""Run a configured transfer-learning job: data -> model -> stages -> run directory.

Each stage sets what trains (per block), recompiles with its own optimizer, learning rate,
schedule and per-block rates, and continues the global epoch count; one history records the stage
and learning rate of every epoch. Head-only stages on unaugmented data train on cached features.
Every epoch ends with an atomic checkpoint, so `resume=True` continues a killed run from its last
completed epoch, optimizer state included.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import yaml

from keras_transfer.backbones import build_backbone
from keras_transfer.config import RunConfig, StageConfig, to_dict
from keras_transfer.data import DataBundle, load_data
from keras_transfer.freeze import resolve_trainable, set_trainable
from keras_transfer.heads import HeadSpec, build_classifier
from keras_transfer.interpret.insights import write_run_insights
from keras_transfer.files import atomic_file, atomic_write_text, write_labels
from keras_transfer.training.checkpoint import Checkpointer
from keras_transfer.training.distribute import Placement, make_strategy, prepare_for_fit
from keras_transfer.training.feature_cache import extract, split_at_head
from keras_transfer.training.optimizers import block_multipliers, make_optimizer
from keras_transfer.training.report import (
    classification_metrics,
    plot_confusion_matrix,
    plot_training_curves,
)


@dataclass
class RunResult:
    """What a finished run produced: its folder, the epoch history and the evaluation metrics."""

    run_dir: Path
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    model: keras.Model = field(repr=False)
    data: DataBundle | None = field(default=None, repr=False)
    chief: bool = True  # False on the other workers of a multi-worker run, whose run_dir is gone


def resolve_task(config: RunConfig, data: DataBundle) -> str:
    """The model's task: the configured one, or multilabel when the data has several labels per image."""
    if data.task == "multilabel":
        return "multilabel"
    return config.model.task


def build_model(config: RunConfig, data: DataBundle) -> keras.Model:
    """Build the classifier of `config` for `data`: backbone (cut), augmentation if in-model, head."""
    m = config.model
    backbone = build_backbone(m.backbone, weights=m.weights, input_shape=(*config.data.image_size, 3),
                              cut_at=m.cut_at, include_top=m.keep_source_top, augmentation=data.augmentation())
    head = HeadSpec(pooling=m.head.pooling, units=tuple(m.head.units), dropout=m.head.dropout,
                    batch_norm=m.head.batch_norm, activation=m.head.activation)
    num_classes = 1 if resolve_task(config, data) == "binary" else data.num_classes
    return build_classifier(backbone, num_classes, head=head, task=resolve_task(config, data),
                            keep_source_top=m.keep_source_top)


def check_stages(model: keras.Model, config: RunConfig) -> None:
    """Check every stage's block names against the built model, before anything is written."""
    from keras_transfer.backbones import backbone_blocks
    from keras_transfer.config import ConfigError

    blocks = list(backbone_blocks(model))
    for i, stage in enumerate(config.training.stages):
        try:
            resolve_trainable(stage.train, blocks)
            block_multipliers(model, stage.train, block_lr=stage.block_lr, base_lr=stage.learning_rate)
        except ValueError as error:
            raise ConfigError(f"training.stages.{i} ({stage.name}): {error}") from None


def _loss_and_metrics(task: str):
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(), ["accuracy"]
    if task in ("binary", "multilabel"):
        return keras.losses.BinaryCrossentropy(), [keras.metrics.BinaryAccuracy(name="accuracy")]
    return keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError(name="mae")]


def _learning_rate(stage: StageConfig, steps_per_epoch: int, rate: float):
    total = max(1, stage.epochs * steps_per_epoch)
    if stage.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, total)
    if stage.lr_schedule == "warmup_cosine":
        warmup = min(total - 1, stage.warmup_epochs * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(rate * 0.01, total - warmup,
                                                      warmup_target=rate, warmup_steps=warmup)
    return rate


def _jit(config: RunConfig) -> bool:
    import tensorflow as tf

    if config.training.jit_compile == "auto":
        # XLA runs depthwise convolutions ~10x slower on CPU: only on by default with a GPU.
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(config.training.jit_compile)


def _uses_cache(stage: StageConfig, trained: list[str], config: RunConfig) -> bool:
    if stage.cache_features == "never" or trained != ["head"]:
        return False
    if stage.cache_features == "always":
        return True
    return not config.data.augment


class _EpochRecorder(keras.callbacks.Callback):
    """Append each epoch to the run history (stage, lr, metrics) and checkpoint it atomically."""

    def __init__(self, run: "_Run", stage_index: int, stage: StageConfig, epoch_offset: int, early_stopping):
        super().__init__()
        self.run, self.stage_index, self.stage, self.offset = run, stage_index, stage, epoch_offset
        self.early_stopping = early_stopping

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        lr = float(np.asarray(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        row = {"epoch": self.offset + epoch + 1, "stage": self.stage.name, "stage_epoch": epoch + 1, "lr": lr,
               "seconds": round(time.perf_counter() - self.started, 3)}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        self.run.history.append(row)
        es = self.early_stopping
        state = {"stage_index": self.stage_index, "stage_epoch": epoch + 1, "global_epoch": row["epoch"],
                 "history": self.run.history,
                 "early_stopping": {"wait": int(es.wait), "best": float(es.best)} if es is not None else None}
        self.run.checkpoint(self.model.optimizer, state)
        self.run.history[-1]["seconds"] = round(time.perf_counter() - self.started, 3)  # checkpoint included


class _RestoreEarlyStopping(keras.callbacks.Callback):
    """Put back the patience counter of an interrupted stage (EarlyStopping resets it on train begin)."""

    def __init__(self, early_stopping, saved: dict[str, Any] | None):
        super().__init__()
        self.early_stopping, self.saved = early_stopping, saved

    def on_train_begin(self, logs=None):
        if self.saved:
            self.early_stopping.wait = self.saved["wait"]
            self.early_stopping.best = self.saved["best"]


@dataclass
class _Run:
    config: RunConfig
    run_dir: Path
    data: DataBundle
    model: keras.Model
    task: str
    log: Callable[[str], None]
    placement: Placement
    strategy: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        self.checkpoints = Checkpointer(self.run_dir / "checkpoints")

    @property
    def global_batch(self) -> int:
        return self.config.data.batch_size * self.placement.replicas

    def learning_rate(self, stage: StageConfig) -> float:
        scale = self.placement.replicas if self.config.training.lr_scaling == "linear" else 1
        return stage.learning_rate * scale

    def checkpoint(self, optimizer, state):
        self.checkpoints.save(self.model, optimizer, state)
        atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))


def run(config: RunConfig, run_dir: str | Path, *, resume: bool = False,
        log: Callable[[str], None] = print,
        on_stage_end: Callable[[int, StageConfig, keras.Model], None] | None = None) -> RunResult:
    """Train `config` into `run_dir` (resuming its last checkpoint if `resume`); return the result.

    Everything that can be wrong with the configuration is found before the run directory is
    written: data sources, backbone, layer and block names. `on_stage_end(index, stage, model)`
    is called after each stage (for notebooks that plot as they go, and for tests).
    """
    run_dir = Path(run_dir)
    strategy = make_strategy(config.training.strategy)
    placement = Placement.for_strategy(strategy, run_dir)
    if not placement.chief:
        log = lambda line: None  # noqa: E731 - one voice per run: the chief's
    try:
        with strategy.scope():
            return _run(config, placement, strategy, resume, log, on_stage_end)
    finally:
        placement.cleanup()


def _run(config: RunConfig, placement: Placement, strategy, resume: bool, log, on_stage_end) -> RunResult:
    keras.utils.set_random_seed(config.training.seed)
    if config.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    data = load_data(config.data)
    model = build_model(config, data)
    check_stages(model, config)

    start_run_dir(config, placement.write_dir, data, log)
    task = resolve_task(config, data)
    state = _Run(config, placement.write_dir, data, model, task, log, placement, strategy)
    _log_strategy(state, strategy)
    start_stage, start_epoch, saved_optimizer, saved_es = 0, 0, None, None
    # Every worker resumes from the chief's checkpoints, so all start from the same epoch.
    latest = Checkpointer(placement.run_dir / "checkpoints").latest() if resume else None
    if latest is not None:
        latest.restore_model(model)
        state.history = latest.state["history"]
        start_stage, start_epoch = latest.state["stage_index"], latest.state["stage_epoch"]
        saved_optimizer = latest.optimizer_variables() if start_epoch else None
        saved_es = latest.state.get("early_stopping")
        log(f"resuming from {latest.folder.name}: stage {start_stage + 1}, after its epoch {start_epoch}")
    elif resume:
        log("no checkpoint found: starting from the beginning")

    for index, stage in enumerate(config.training.stages):
        if index < start_stage:
            continue
        resuming = index == start_stage
        _run_stage(state, index, stage, start_epoch if resuming else 0,
                   saved_optimizer if resuming else None, saved_es if resuming else None)
        state.checkpoint(None, {"stage_index": index + 1, "stage_epoch": 0,
                                "global_epoch": len(state.history), "history": state.history})
        if on_stage_end is not None:
            on_stage_end(index, stage, model)
    result = _finish(state)
    result.chief = placement.chief
    return result


def _log_strategy(run: _Run, strategy) -> None:
    replicas, batch = run.placement.replicas, run.config.data.batch_size
    if replicas == 1 and run.config.training.strategy in ("auto", "default"):
        return
    rule = (f"learning rates x{replicas} (training.lr_scaling: linear)" if run.config.training.lr_scaling == "linear"
            else f"learning rates as configured; the linear scaling rule (Goyal et al., 2017) would multiply them "
                 f"by {replicas}: training.lr_scaling: linear")
    run.log(f"strategy: {run.config.training.strategy} ({type(strategy).__name__}), {replicas} replicas; batch {batch} per replica, global batch "
            f"{batch * replicas}; {rule}")


def start_run_dir(config: RunConfig, run_dir: Path, data: DataBundle, log: Callable[[str], None] = print) -> None:
    """Create `run_dir` with what a run knows before training: config.yaml, labels.txt, data_report.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plots").mkdir(exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    write_labels(run_dir / "labels.txt", data.class_names)
    data.write_report(run_dir / "data_report.json")
    _log_data(data, log)


def _run_stage(run: _Run, index: int, stage: StageConfig, start_epoch: int, saved_optimizer, saved_es) -> None:
    config, model, data = run.config, run.model, run.data
    trained = set_trainable(model, stage.train, train_bn=config.model.train_bn)
    multipliers = block_multipliers(model, stage.train, decay=stage.block_lr_decay, block_lr=stage.block_lr,
                                    base_lr=stage.learning_rate)
    cached = _uses_cache(stage, trained, config)
    batch = run.global_batch
    if cached:
        extractor, fit_model = split_at_head(model)
        train_ds, val_ds = _feature_datasets(extractor, data, config, batch)
    else:
        fit_model = model
        train_ds = data.dataset("train", batch_size=batch)
        val_ds = data.dataset("val", batch_size=batch) if "val" in data.splits else None
    steps = _steps_per_epoch(data, train_ds, batch)
    optimizer = make_optimizer(stage.optimizer, _learning_rate(stage, steps, run.learning_rate(stage)), lr_multipliers=multipliers,
                               momentum=stage.momentum, weight_decay=stage.weight_decay)
    loss, metrics = _loss_and_metrics(run.task)
    fit_model = prepare_for_fit(fit_model, run.strategy)
    fit_model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=_jit(config))
    if saved_optimizer is not None:
        optimizer.build(fit_model.trainable_variables)
        for variable, value in zip(optimizer.variables, saved_optimizer):
            variable.assign(value)

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    run.log(f"stage {index + 1}/{len(config.training.stages)} '{stage.name}': training {', '.join(trained)} "
            f"({trainable:,} parameters), {stage.optimizer} lr {run.learning_rate(stage):g} ({stage.lr_schedule})"
            + (", per-block rates" if multipliers else "") + (", on cached features" if cached else ""))
    early = None
    callbacks: list[keras.callbacks.Callback] = []
    if stage.early_stopping is not None and (val_ds is not None or not stage.early_stopping.monitor.startswith("val_")):
        es = stage.early_stopping
        early = keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience, min_delta=es.min_delta,
                                              restore_best_weights=es.restore_best_weights)
        callbacks += [early, _RestoreEarlyStopping(early, saved_es)]
    offset = len(run.history) - start_epoch
    callbacks.append(_EpochRecorder(run, index, stage, offset, early))
    callbacks.append(keras.callbacks.TensorBoard(str(run.run_dir / "tensorboard" / stage.name), write_graph=False,
                                                 profile_batch=0))
    fit_model.fit(train_ds, validation_data=val_ds, epochs=stage.epochs, initial_epoch=start_epoch,
                  class_weight=data.class_weight, callbacks=callbacks, shuffle=False,
                  verbose=0 if not run.placement.chief else 1 if sys.stdout.isatty() else 2)


def _steps_per_epoch(data: DataBundle, train_ds, batch_size: int) -> int:
    """Batches per epoch, for learning-rate schedules; a streamed TFDS split of unknown size counts 100."""
    if data.splits["train"].tfds is None:
        return max(1, math.ceil(len(data.splits["train"]) / batch_size))
    cardinality = int(train_ds.cardinality())
    return cardinality if cardinality > 0 else 100


def _feature_datasets(extractor: keras.Model, data: DataBundle, config: RunConfig, batch_size: int | None = None):
    import tensorflow as tf

    batch_size = batch_size or config.data.batch_size
    x, y = extract(extractor, data.dataset("train", training=False))
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.data.seed,
                                                              reshuffle_each_iteration=True)
    train = train.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    val = None
    if "val" in data.splits:
        vx, vy = extract(extractor, data.dataset("val"))
        val = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(batch_size)
    return train, val


def _finish(run: _Run) -> RunResult:
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        if split in run.data.splits and run.task != "regression":
            outputs, labels = extract(run.model, run.data.dataset(split))
            metrics[split] = classification_metrics(outputs, labels, run.data.class_names, run.task)
    return write_results(run.run_dir, run.model, run.data, metrics, run.history, run.log)


def write_results(run_dir: Path, model: keras.Model, data: DataBundle, metrics: dict[str, Any],
                  history: list[dict[str, Any]], log: Callable[[str], None] = print) -> RunResult:
    """Finish a run directory: metrics.json, history.json, plots and model.keras; log the scores."""
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1))
    if history:
        plot_training_curves(history, run_dir / "plots" / "training_curves.png")
    shown = metrics.get("test") or metrics.get("val")
    if shown and "confusion_matrix" in shown:
        split = "test" if "test" in metrics else "val"
        plot_confusion_matrix(shown["confusion_matrix"], data.class_names, run_dir / "plots" / "confusion_matrix.png",
                              title=f"{split} split")
    _save_model(model, run_dir / "model.keras")
    for split, values in metrics.items():
        if "accuracy" in values:
            log(f"{split} accuracy: {values['accuracy']:.4f} ({values['examples']} images)")
    write_run_insights(run_dir, model, data, metrics, history, log)
    log(f"run directory: {run_dir}")
    return RunResult(run_dir, history, metrics, model, data)


def _save_model(model: keras.Model, path: Path) -> None:
    # An uncompiled twin sharing the weights: the file holds the model, not the last stage's
    # optimizer, so it reloads with plain keras.saving.load_model.
    atomic_file(path, keras.Model(model.input, model.output, name=model.name).save)


def _log_data(data: DataBundle, log: Callable[[str], None]) -> None:
    counts = data.counts()
    sizes = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    log(f"data: {data.config.source}, {data.num_classes} classes ({', '.join(data.class_names[:10])}"
        f"{', ...' if data.num_classes > 10 else ''}); {sizes or 'streamed from TFDS'}")
    if data.skipped:
        log(f"skipped {len(data.skipped)} unreadable file(s), listed in data_report.json; first: "
            f"{data.skipped[0].path} ({data.skipped[0].reason})")
