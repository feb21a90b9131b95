"""Run a configured transfer-learning job: data -> model -> stages -> run directory.

Each stage sets what trains (per block), recompiles with its own optimizer, learning rate,
schedule and per-block rates, and continues the global epoch count; one history records the stage
and learning rate of every epoch. Head-only stages on unaugmented data train on cached features,
stages that train only upper blocks on cached activations of the frozen lower ones.
Every epoch ends with an atomic checkpoint, so `resume=True` continues a killed run from its last
completed epoch, optimizer state included. Each stage says early how long it has left; with
`training.time_limit` a stage ends at the batch where the budget runs out, the stages after it are
skipped, and the run finishes as usual (see `keras_transfer.training.timing`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import yaml

from keras_transfer.backbones import build_backbone
from keras_transfer.core.names import printable
from keras_transfer.config import ConfigError, RunConfig, StageConfig, to_dict
from keras_transfer.data import DataBundle, load_data
from keras_transfer.data.fingerprint import check_run_classes, recorded_data, write_split_record
from keras_transfer.data.health import health_lines
from keras_transfer.freeze import resolve_trainable
from keras_transfer.heads import build_classifier, inference_model
from keras_transfer.core.files import atomic_file, atomic_write_text, claimed_folder, optional_output, write_labels
from keras_transfer.core.run_dir import RunDir
from keras_transfer.core.timing import TimeBudget
from keras_transfer.training.adapt import adapt_batchnorm, adapt_before_fit
from keras_transfer.training.checkpoint import Checkpointer
from keras_transfer.training.distribute import Placement, make_strategy, prepare_for_fit
from keras_transfer.forward import extract, frozen_forward
from keras_transfer.training.optimizers import block_multipliers
from keras_transfer.training.stage import jit_compile, prepare_stage
from keras_transfer.training.timing import GainPerMinute, StageEta, TimeLimit
from keras_transfer.metrics import (
    classification_metrics,
    score_line,
    plot_confusion_matrix,
    plot_predicted_vs_true,
    plot_training_curves,
    regression_metrics,
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


def build_model(config: RunConfig, data: DataBundle) -> keras.Model:
    """Build the model of `config` for `data` (a classifier, or a regressor for numeric targets): backbone (cut), augmentation if in-model, head."""
    m = config.model
    backbone = build_backbone(m.backbone, weights=m.weights, input_shape=(*config.data.image_size, 3),
                              cut_at=m.cut_at, include_top=m.keep_source_top, augmentation=data.augmentation())
    num_classes = 1 if data.task == "binary" else data.num_classes
    # Regression heads learn standardised targets and rescale them (see build_classifier).
    stats = data.target_stats().get("train")
    scale = (stats["mean"], stats["std"]) if stats else None
    return build_classifier(backbone, num_classes, head=m.head, task=data.task, keep_source_top=m.keep_source_top,
                            target_scale=scale)


def check_stages(model: keras.Model, config: RunConfig, data: DataBundle | None = None) -> None:
    """Check every stage's block names against the built model (and its early-stopping monitor
    against the data's splits), before anything is written."""
    from keras_transfer.backbones import backbone_blocks
    from keras_transfer.config import ConfigError

    blocks = list(backbone_blocks(model))
    for stage in config.training.stages:
        try:
            resolve_trainable(stage.train, blocks)
            block_multipliers(model, stage.train, block_lr=stage.block_lr, base_lr=stage.learning_rate)
        except ValueError as error:
            raise ConfigError(f"training.stages.{stage.name}: {error}") from None
        es = stage.early_stopping
        if data is not None and data.task == "regression" and es is not None and es.monitor.endswith("accuracy"):
            raise ConfigError(f"training.stages.{stage.name}.early_stopping.monitor: {es.monitor} is not logged for "
                              f"regression ({config.data.source} holds numeric targets); use val_loss or val_mae")
        if data is not None and es is not None and es.monitor.startswith("val_") and "val" not in data.splits:
            raise ConfigError(f"training.stages.{stage.name}.early_stopping.monitor: {es.monitor} needs a validation split, "
                              f"and {config.data.source} has none (data.val_split is 0); monitor "
                              f"{es.monitor.removeprefix('val_')} or set data.val_split")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stopped before checkpointing that epoch."""


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
        bad = next(((k, float(v)) for k, v in (logs or {}).items() if k in ("loss", "val_loss")
                    and not np.isfinite(float(v))), None)
        if bad is not None:
            # Before the checkpoint: the last one saved stays the last good one.
            which = "training" if bad[0] == "loss" else "validation"
            raise NonFiniteLossError(
                f"training.stages.{self.stage.name}: the {which} loss became {bad[1]} in epoch "
                f"{self.offset + epoch + 1} (learning rate {lr:g}), so the run stopped; its last good checkpoint "
                f"(after epoch {len(self.run.history)}) is kept in {self.run.run_dir / 'checkpoints'}; lower "
                f"training.stages.{self.stage.name}.learning_rate (or check the data) and start a new run")
        row = {"epoch": self.offset + epoch + 1, "stage": self.stage.name, "stage_epoch": epoch + 1, "lr": lr,
               "seconds": round(time.perf_counter() - self.started, 3)}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        self.run.history.append(row)
        es = self.early_stopping
        state = {"stage_index": self.stage_index, "stage_epoch": epoch + 1, "global_epoch": row["epoch"],
                 "history": self.run.history,
                 "early_stopping": None if es is None else {
                     "wait": int(es.wait), "best": None if es.best is None else float(es.best),
                     "best_epoch": int(es.best_epoch)}}
        # The best weights go into the checkpoint too: a resumed stage must restore the same
        # epoch's weights as an uninterrupted one would.
        best = es.best_weights if es is not None and es.restore_best_weights else None
        self.run.checkpoint(self.model.optimizer, state, best)
        self.run.history[-1]["seconds"] = round(time.perf_counter() - self.started, 3)  # checkpoint included


class _RestoreEarlyStopping(keras.callbacks.Callback):
    """Put back the early-stopping state of an interrupted stage (EarlyStopping resets it on train
    begin): patience counter, best value, best epoch and best weights; and say where it stopped."""

    def __init__(self, early_stopping, saved: dict[str, Any] | None, best_weights, log: Callable[[str], None]):
        super().__init__()
        self.early_stopping, self.saved, self.best_weights, self.log = early_stopping, saved, best_weights, log

    def on_train_begin(self, logs=None):
        if self.saved:
            es = self.early_stopping
            es.wait, es.best = self.saved["wait"], self.saved["best"]
            es.best_epoch = self.saved.get("best_epoch", 0)
            if self.best_weights is not None:
                es.best_weights = list(self.best_weights)

    def on_train_end(self, logs=None):
        es = self.early_stopping
        if es.stopped_epoch > 0:
            restored = f", restored epoch {es.best_epoch + 1}" if es.restore_best_weights and es.best_weights is not None else ""
            self.log(f"early stopping: stopped at epoch {es.stopped_epoch + 1}{restored} (of this stage)")


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
    budget: TimeBudget = field(default_factory=TimeBudget)
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        self.checkpoints = Checkpointer(RunDir(self.run_dir).checkpoints_dir)

    @property
    def global_batch(self) -> int:
        return self.config.data.batch_size * self.placement.replicas

    def learning_rate(self, stage: StageConfig) -> float:
        scale = self.placement.replicas if self.config.training.lr_scaling == "linear" else 1
        return stage.learning_rate * scale

    def checkpoint(self, optimizer, state, best_weights=None):
        self.checkpoints.save(self.model, optimizer, state, best_weights)
        atomic_write_text(RunDir(self.run_dir).history_path, json.dumps(self.history, indent=1))


def run(config: RunConfig, run_dir: str | Path, *, resume: bool = False,
        log: Callable[[str], None] = print,
        on_stage_end: Callable[[int, StageConfig, keras.Model], None] | None = None,
        budget: TimeBudget | None = None) -> RunResult:
    """Train `config` into `run_dir` (resuming its last checkpoint if `resume`); return the result.

    Everything that can be wrong with the configuration is found before the run directory is
    written: data sources, backbone, layer and block names. `on_stage_end(index, stage, model)`
    is called after each stage (for notebooks that plot as they go, and for tests). `budget` is
    the run's time limit already counting (`runs.fit` starts it before `recipe: auto` measures);
    without it, `training.time_limit` counts from here.
    """
    if config.training.recipe == "auto":
        raise ConfigError("training.recipe: auto is decided before training: pass the config through "
                          "keras_transfer.features.resolve_recipe(config) first (keras-transfer train "
                          "does), or set training.recipe: stages")
    run_dir = Path(run_dir)
    strategy = make_strategy(config.training.strategy)
    placement = Placement.for_strategy(strategy, run_dir)
    if not placement.chief:
        log = lambda line: None  # noqa: E731 - one voice per run: the chief's
    policy = keras.mixed_precision.global_policy()
    try:
        with claimed_folder(placement.write_dir), strategy.scope():
            budget = budget or TimeBudget(config.training.time_limit)
            return _run(config, placement, strategy, resume, log, on_stage_end, budget)
    finally:
        placement.cleanup()
        # training.mixed_precision sets Keras's global dtype policy; the next model built in this
        # process (a notebook's next cell, a test) must not inherit float16 from this run.
        keras.mixed_precision.set_global_policy(policy)


def _run(config: RunConfig, placement: Placement, strategy, resume: bool, log, on_stage_end,
         budget: TimeBudget) -> RunResult:
    keras.utils.set_random_seed(config.training.seed)
    if config.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    record = RunDir(placement.run_dir).split_path
    # A resumed run trains on the split it started with (or is refused before anything is written).
    recorded = resume and record.is_file()
    data = (recorded_data(config.data, record, task=config.model.task, log=log) if recorded
            else load_data(config.data, task=config.model.task))
    if resume and not recorded:
        check_run_classes(RunDir(placement.run_dir).labels_path, data)
    unlabeled = None
    if config.model.adapt == "adabn":
        from keras_transfer.data.unlabeled import load_unlabeled

        unlabeled = load_unlabeled(config.data, data.class_names)
    model = build_model(config, data)
    check_stages(model, config, data)

    if recorded:
        RunDir(placement.write_dir).plots_dir.mkdir(parents=True, exist_ok=True)
        _log_data(data, log)
    else:
        start_run_dir(config, placement.write_dir, data, log)
    task = data.task
    state = _Run(config, placement.write_dir, data, model, task, log, placement, strategy, budget)
    _log_strategy(state, strategy)
    start_stage, start_epoch, saved_optimizer, saved_es = 0, 0, None, None
    # Every worker resumes from the chief's checkpoints, so all start from the same epoch.
    latest = Checkpointer(RunDir(placement.run_dir).checkpoints_dir).latest(log) if resume else None
    if latest is not None:
        latest.restore_model(model)
        state.history = latest.state["history"]
        start_stage, start_epoch = latest.state["stage_index"], latest.state["stage_epoch"]
        saved_optimizer = latest.optimizer_variables() if start_epoch else None
        saved_es = latest.state.get("early_stopping")
        if saved_es is not None:
            saved_es = {**saved_es, "best_weights": latest.best_weights()}
        stages = config.training.stages
        where = (f"stage '{stages[start_stage].name}', after its epoch {start_epoch}" if start_stage < len(stages)
                 else "every stage is done")
        log(f"resuming from {latest.folder.name}: {where}")
    elif resume:
        log("no checkpoint found: starting from the beginning")
    if unlabeled is not None and latest is None:
        # The head learns on the labelled images normalised with their own statistics; the
        # exported model normalises with the unlabelled target's (see training/adapt.py).
        adapt_before_fit(model, data.dataset("train", training=False), len(data.splits["train"]),
                         unlabeled.dataset(), log=log)

    with data.reading():  # a photo deleted mid-run: one line naming it, not a traceback from fit
        for index, stage in enumerate(config.training.stages):
            if index < start_stage:
                continue
            if budget.spent and state.history:  # a run always trains something: its first stage starts even late
                skipped = [s.name for s in config.training.stages[index:]]
                log(f"time limit: {budget.describe()} spent; skipping stage{'s' * (len(skipped) > 1)} "
                    f"{', '.join(repr(name) for name in skipped)} (--resume continues from there)")
                break
            resuming = index == start_stage
            _run_stage(state, index, stage, start_epoch if resuming else 0,
                       saved_optimizer if resuming else None, saved_es if resuming else None)
            state.checkpoint(None, {"stage_index": index + 1, "stage_epoch": 0,
                                    "global_epoch": len(state.history), "history": state.history})
            if on_stage_end is not None:
                on_stage_end(index, stage, model)
        if unlabeled is not None:
            adapt_batchnorm(model, unlabeled.dataset(), log=lambda line: log(f"{line} (target: {unlabeled.source})"))
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
    """Create `run_dir` with what a run knows before training: config.yaml, labels.txt,
    data_report.json and split.json (the split it trains on, for --resume and evaluate)."""
    run = RunDir(run_dir)
    run.plots_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config_path, yaml.safe_dump(to_dict(config), sort_keys=False))
    write_labels(run.labels_path, data.class_names)
    data.write_report(run.data_report_path)
    write_split_record(data, run.split_path)
    if data.health:
        atomic_write_text(run.data_health_path, json.dumps(data.health, indent=1))
    _log_data(data, log)


def _run_stage(run: _Run, index: int, stage: StageConfig, start_epoch: int, saved_optimizer, saved_es) -> None:
    config, model, data = run.config, run.model, run.data
    prepared = prepare_stage(model, stage, config, data, task=run.task, learning_rate=run.learning_rate(stage),
                             batch_size=run.global_batch, log=run.log, scratch=run.run_dir)
    try:
        _fit_stage(run, index, stage, prepared, start_epoch, saved_optimizer, saved_es)
    finally:
        prepared.release()


def _fit_stage(run: _Run, index: int, stage: StageConfig, prepared, start_epoch: int, saved_optimizer,
               saved_es) -> None:
    config, model, data = run.config, run.model, run.data
    trained, multipliers, cached = prepared.trained, prepared.multipliers, prepared.cached
    train_ds, val_ds, optimizer = prepared.train_ds, prepared.val_ds, prepared.optimizer
    fit_model = prepare_for_fit(prepared.fit_model, run.strategy)
    fit_model.compile(optimizer=optimizer, loss=prepared.loss, metrics=prepared.metrics, jit_compile=jit_compile(config))
    if saved_optimizer is not None:
        optimizer.build(fit_model.trainable_variables)
        for variable, value in zip(optimizer.variables, saved_optimizer):
            variable.assign(value)

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    run.log(f"stage '{stage.name}' ({index + 1} of {len(config.training.stages)}): training {', '.join(trained)} "
            f"({trainable:,} parameters), {stage.optimizer} lr {run.learning_rate(stage):g} ({stage.lr_schedule})"
            + (", per-block rates" if multipliers else "") + (", on cached features" if cached else "")
            + (", on cached activations" if prepared.activations is not None else ""))
    early = None
    callbacks: list[keras.callbacks.Callback] = []
    if stage.early_stopping is not None:
        es = stage.early_stopping
        early = keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience, min_delta=es.min_delta,
                                              restore_best_weights=es.restore_best_weights)
        saved = saved_es or {}
        callbacks += [early, _RestoreEarlyStopping(early, saved_es, saved.get("best_weights"), run.log)]
    offset = len(run.history) - start_epoch
    callbacks.append(StageEta(stage.name, stage.epochs, prepared.steps_per_epoch, run.log, run.budget))
    if run.budget.limit is not None:
        callbacks.append(TimeLimit(run.budget, stage.name, run.log, early))
    if stage.early_stopping is not None and stage.early_stopping.min_gain_per_minute is not None:
        scored = [row["val_accuracy"] for row in run.history if row.get("val_accuracy") is not None]
        callbacks.append(GainPerMinute(stage.name, stage.early_stopping.min_gain_per_minute,
                                       max(scored) if scored else None, run.log))
    callbacks.append(_EpochRecorder(run, index, stage, offset, early))
    callbacks.append(keras.callbacks.TensorBoard(str(RunDir(run.run_dir).tensorboard_dir / stage.name), write_graph=False,
                                                 profile_batch=0))
    fit_model.fit(train_ds, validation_data=val_ds, epochs=stage.epochs, initial_epoch=start_epoch,
                  class_weight=data.class_weight, callbacks=callbacks, shuffle=False,
                  verbose=0 if not run.placement.chief else 1 if sys.stdout.isatty() else 2)


def _finish(run: _Run) -> RunResult:
    metrics: dict[str, Any] = {}
    scored = [split for split in ("val", "test") if split in run.data.splits]
    step = frozen_forward(run.model, images=run.data.images_in(*scored), log=run.log) if scored else None
    for split in scored:
        outputs, labels = extract(run.model, run.data.dataset(split), step=step, log=run.log, phase=f"scoring ({split})")
        if run.task != "regression":
            metrics[split] = classification_metrics(outputs, labels, run.data.class_names, run.task)
            continue
        metrics[split] = regression_metrics(outputs, labels)
        # The last split scored (test, else val) is the one plotted, as for the confusion matrix.
        optional_output("plots/predicted_vs_true.png", run.log, plot_predicted_vs_true, labels, outputs,
                        RunDir(run.run_dir).plot("predicted_vs_true.png"), title=f"{split} split",
                        target=run.data.class_names[0])
    return write_results(run.run_dir, run.model, run.data, metrics, run.history, run.log)


def write_results(run_dir: Path, model: keras.Model, data: DataBundle, metrics: dict[str, Any],
                  history: list[dict[str, Any]], log: Callable[[str], None] = print) -> RunResult:
    """Finish a run directory: model.keras, metrics.json, history.json, then plots; log the scores.

    The model and the numbers are written first: a figure that fails to draw is one logged line
    and a missing picture, never a run without its model. The error analysis and report.html are
    the run layer's (`keras_transfer.runs.fit`).
    """
    run = RunDir(run_dir)
    _save_model(model, run.model_path)
    atomic_write_text(run.metrics_path, json.dumps(metrics, indent=1))
    atomic_write_text(run.history_path, json.dumps(history, indent=1))
    for split, values in metrics.items():
        if split == "cross_validation":
            log(f"cross-validated accuracy: {values['accuracy']:.4f} ± {values['accuracy_sem']:.4f} "
                f"({values['examples']} images, {values['folds']} folds)")
        elif "accuracy" in values:
            log(score_line(split, values))
        if "mae" in values:
            log(f"{split} MAE {values['mae']:.4g}, RMSE {values['rmse']:.4g}, R^2 {values['r2']:.3f} "
                f"({values['examples']} images)")
    if history:
        optional_output("plots/training_curves.png", log, plot_training_curves, history,
                  run.plot("training_curves.png"))
    shown = metrics.get("test") or metrics.get("val")
    if shown and "confusion_matrix" in shown:
        split = "test" if "test" in metrics else "val"
        optional_output("plots/confusion_matrix.png", log, plot_confusion_matrix, shown["confusion_matrix"],
                  data.class_names, run.plot("confusion_matrix.png"), title=f"{split} split")
    log(f"run directory: {run_dir}")
    return RunResult(run_dir, history, metrics, model, data)


def _save_model(model: keras.Model, path: Path) -> None:
    # An uncompiled twin sharing the weights: the file holds the model, not the last stage's
    # optimizer, so it reloads with plain keras.saving.load_model.
    atomic_file(path, inference_model(model).save)


def _log_data(data: DataBundle, log: Callable[[str], None]) -> None:
    counts = data.counts()
    sizes = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    if data.task == "regression":
        train = data.target_stats()["train"]
        log(f"data: {data.config.source}, regression on '{data.class_names[0]}' (train mean {train['mean']:.4g}, "
            f"std {train['std']:.4g}, range {train['min']:.4g} to {train['max']:.4g}); {sizes}")
        return
    log(f"data: {data.config.source}, {data.num_classes} classes ({printable(', '.join(data.class_names[:10]))}"
        f"{', ...' if data.num_classes > 10 else ''}); {sizes or 'streamed from TFDS'}")
    if data.skipped:
        log(f"skipped {len(data.skipped)} unreadable file(s), listed in data_report.json; first: "
            f"{printable(data.skipped[0].path)} ({printable(data.skipped[0].reason)})")
    for line in health_lines(data.health):
        log(line)
