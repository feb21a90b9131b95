"""Everything a stage needs before `fit`: what trains, the optimizer with block rates, loss, data.

One function, `prepare_stage`, sets a stage up for the training engine and for the
learning-rate range test alike, so both train exactly the same variables at the same relative
rates on the same (possibly cached) inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras

from keras_transfer.backbones import backbone_blocks
from keras_transfer.config import RunConfig, StageConfig
from keras_transfer.data import DataBundle
from keras_transfer.freeze import set_trainable
from keras_transfer.forward import extract, frozen_forward
from keras_transfer.training.activation_cache import (
    AUTO_MAX_BYTES,
    AUTO_MAX_PER_CLASS,
    AUTO_MIN_PREFIX_SHARE,
    VIEWS,
    ActivationCache,
    Cut,
    NoSingleCut,
    cache_activations,
    split_at_block,
)
from keras_transfer.training.feature_cache import split_at_head
from keras_transfer.training.optimizers import block_multipliers, make_optimizer


@dataclass
class PreparedStage:
    """A stage ready to fit: the model to fit (the full one, its head on cached features, or its
    upper blocks on cached activations), its datasets, the optimizer and loss, and what trains
    (block names, per-variable rate multipliers). `release()` after the fit frees cached activations."""

    fit_model: keras.Model
    train_ds: Any
    val_ds: Any
    optimizer: keras.optimizers.Optimizer
    loss: keras.losses.Loss
    metrics: list
    trained: list[str]
    multipliers: dict | None
    cached: bool
    steps_per_epoch: int
    activations: ActivationCache | None = None

    def release(self) -> None:
        if self.activations is not None:
            self.activations.release()


def loss_and_metrics(task: str) -> tuple[keras.losses.Loss, list]:
    """The loss and the metric logged for a task (accuracy, or MAE for regression)."""
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(), ["accuracy"]
    if task in ("binary", "multilabel"):
        return keras.losses.BinaryCrossentropy(), [keras.metrics.BinaryAccuracy(name="accuracy")]
    return keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError(name="mae")]


def uses_feature_cache(stage: StageConfig, trained: list[str], config: RunConfig) -> bool:
    """True when a stage trains only the head on unaugmented inputs (or `cache_features: always`)."""
    if stage.cache_features == "never" or trained != ["head"]:
        return False
    if stage.cache_features == "always":
        return True
    return not config.data.augment


def activation_cut(model: keras.Model, stage: StageConfig, trained: list[str], config: RunConfig,
                   data: DataBundle) -> tuple[Cut | None, str]:
    """(the cut to train `stage` on cached activations, "") or (None, why not; "" when there is nothing to say).

    Only a stage that trains upper blocks above a frozen prefix is a candidate. `never` keeps the
    stage on images; `always` caches wherever the cut is clean; `auto` caches where it pays (see
    docs/training.md): the prefix holds at least half the forward cost, the stage runs more epochs
    than there are views, the views fit `AUTO_MAX_BYTES`, and the set has at most
    `AUTO_MAX_PER_CLASS` training images per class (where the few fixed views measured as
    accurate as fresh augmentation).
    """
    mode = stage.cache_activations
    if trained == ["head"]:
        return _head_views_cut(model, stage, config, data)
    if mode == "never" or not trained or trained[0] == next(iter(backbone_blocks(model))):
        return None, ""
    try:
        cut = split_at_block(model, trained[0])
    except NoSingleCut as reason:
        return None, str(reason)
    if config.training.strategy == "multi_worker":
        return None, "a multi_worker run trains on images (each worker would cache its own views)"
    if data.images_in("train") is None:
        return None, "the training split is streamed from TFDS, of unknown size"
    if mode == "always":
        return cut, ""
    views = activation_views(config)
    size = views * data.images_in("train") * math.prod(int(d) for d in cut.prefix.output.shape[1:]) * 4
    if cut.share < AUTO_MIN_PREFIX_SHARE:
        return None, f"the frozen blocks are {cut.share:.0%} of the forward pass (auto caches from {AUTO_MIN_PREFIX_SHARE:.0%})"
    if stage.epochs <= views:
        return None, f"{stage.epochs} epochs would cost about as much as the {views} views' pass"
    if size > AUTO_MAX_BYTES:
        return None, f"{views} views would take {size / 2**30:.1f} GB (auto caches up to {AUTO_MAX_BYTES / 2**30:.0f} GB)"
    per_class = data.examples_per_class() or 0.0
    if per_class > AUTO_MAX_PER_CLASS:
        return None, (f"{per_class:g} training images per class: on all flower photos {VIEWS} fixed views lost "
                      f"4 points against fresh augmentation (auto caches up to {AUTO_MAX_PER_CLASS} per class; "
                      "cache_activations: always trades that for the speed)")
    return cut, ""


def _head_views_cut(model: keras.Model, stage: StageConfig, config: RunConfig,
                    data: DataBundle) -> tuple[Cut | None, str]:
    """A head-only stage on augmented images: the pooled features of `VIEWS` views of each image,
    computed once, instead of a pass of the frozen backbone per epoch (unaugmented data caches
    its one view: `uses_feature_cache`). `auto` caches when the stage has more epochs than views:
    the eurosat5 one-liner (420 tiles per class) scored the same test accuracy, 0.967, in 639 s
    instead of 1,377 s. `never` (in either cache key) keeps the images."""
    if "never" in (stage.cache_activations, stage.cache_features) or not config.data.augment:
        return None, ""
    if config.training.strategy == "multi_worker" or data.images_in("train") is None:
        return None, ""
    if stage.cache_activations != "always" and stage.epochs <= activation_views(config):
        return None, ""
    try:
        extractor, head = split_at_head(model)
    except ValueError as reason:
        return None, str(reason)
    return Cut(extractor, head, "the pooled features", 1.0), ""


def activation_views(config: RunConfig) -> int:
    """Views per training image: `VIEWS` augmented ones, or the one image when nothing is augmented."""
    return VIEWS if config.data.augment else 1


def stage_passes(stage: StageConfig, views: int) -> int:
    """About how many passes over the training images `stage` costs, for a time limit's estimate.

    A head-only stage runs the frozen backbone once per view (`views`, 1 without augmentation)
    unless it keeps to images (`never`) or runs fewer epochs than views; a stage that trains
    blocks runs once per epoch, or once per view on cached activations (`always`; `auto` trains
    the large sets a budget is weighed for on images).
    """
    if stage.train == "head":
        on_images = (stage.cache_features == "never" if views == 1
                     else "never" in (stage.cache_activations, stage.cache_features))
        return stage.epochs if on_images else min(views, stage.epochs)
    return views if stage.cache_activations == "always" else stage.epochs


def jit_compile(config: RunConfig) -> bool:
    """Whether to compile with XLA: `auto` turns it on only with a GPU."""
    import tensorflow as tf

    if config.training.jit_compile == "auto":
        # XLA runs depthwise convolutions ~10x slower on CPU: only on by default with a GPU.
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(config.training.jit_compile)


def prepare_stage(model: keras.Model, stage: StageConfig, config: RunConfig, data: DataBundle, *, task: str,
                  learning_rate: float | None = None, batch_size: int | None = None,
                  constant_rate: bool = False, log: Callable[[str], None] | None = None,
                  scratch: Path | None = None) -> PreparedStage:
    """Set `model` up for `stage`: trainable blocks, block rates, cached features, optimizer, loss.

    `learning_rate` overrides the stage's (linear scaling across replicas; the range test's
    start rate) and `batch_size` the data config's (the global batch of a distributed run).
    `constant_rate` drops the stage's schedule, for a caller that sets the rate itself. `log`
    hears which runtime the cached features' frozen pass ran on, and what caching activations
    did and cost; large cached activations go to a memory-mapped file in `scratch` (else a
    temporary folder). The model is not compiled: the caller compiles `fit_model` (inside its
    strategy) with `optimizer`, `loss` and `metrics`, and calls `release()` after the fit.
    """
    rate = stage.learning_rate if learning_rate is None else learning_rate
    batch = batch_size or config.data.batch_size
    trained = set_trainable(model, stage.train, train_bn=config.model.train_bn)
    multipliers = block_multipliers(model, stage.train, decay=stage.block_lr_decay, block_lr=stage.block_lr,
                                    base_lr=stage.learning_rate)
    cached = uses_feature_cache(stage, trained, config)
    cut, reason = (None, "") if cached else activation_cut(model, stage, trained, config, data)
    if reason and log:
        log(f"stage '{stage.name}': training on images, not on cached activations: {reason}")
    activations = None
    if cached:
        extractor, fit_model = split_at_head(model)
        train_ds, val_ds = _feature_datasets(extractor, data, config, batch, log)
    elif cut is not None:
        fit_model = cut.suffix
        activations = _cached_activations(cut, stage, config, data, scratch, log)
        train_ds = activations.train_dataset(batch, config.data.seed)
        val_ds = activations.val_dataset(batch)
    else:
        fit_model = model
        train_ds = data.dataset("train", batch_size=batch)
        val_ds = data.dataset("val", batch_size=batch) if "val" in data.splits else None
    steps = _steps_per_epoch(data, train_ds, batch)
    schedule = rate if constant_rate else _learning_rate(stage, steps, rate)
    optimizer = make_optimizer(stage.optimizer, schedule, lr_multipliers=multipliers, momentum=stage.momentum,
                               weight_decay=stage.weight_decay)
    loss, metrics = loss_and_metrics(task)
    return PreparedStage(fit_model, train_ds, val_ds, optimizer, loss, metrics, trained, multipliers, cached, steps,
                         activations)


def _learning_rate(stage: StageConfig, steps_per_epoch: int, rate: float):
    total = max(1, stage.epochs * steps_per_epoch)
    if stage.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, total)
    if stage.lr_schedule == "warmup_cosine":
        warmup = min(total - 1, stage.warmup_epochs * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(rate * 0.01, total - warmup,
                                                      warmup_target=rate, warmup_steps=warmup)
    return rate


def _steps_per_epoch(data: DataBundle, train_ds, batch_size: int) -> int:
    """Batches per epoch, for learning-rate schedules; a streamed TFDS split of unknown size counts 100."""
    if data.splits["train"].tfds is None:
        return max(1, math.ceil(len(data.splits["train"]) / batch_size))
    cardinality = int(train_ds.cardinality())
    return cardinality if cardinality > 0 else 100


def _cached_activations(cut: Cut, stage: StageConfig, config: RunConfig, data: DataBundle, scratch,
                        log) -> ActivationCache:
    """The prefix's activations over the views of train and over val, in one frozen pass; logged with their cost."""
    views = activation_views(config)
    images = views * len(data.splits["train"]) + (len(data.splits["val"]) if "val" in data.splits else 0)
    step = frozen_forward(cut.prefix, images=images, log=log)
    activations = cache_activations(cut, data, views, step=step, scratch=scratch, log=log)
    if log:
        shape = 'x'.join(str(d) for d in cut.prefix.output.shape[1:])
        where = (f"the frozen backbone's pooled features ({shape}), once per view instead of once per epoch"
                 if cut.share == 1.0 else f"{cut.boundary} ({shape}, the frozen blocks' {cut.share:.0%} of the forward pass)")
        log(f"stage '{stage.name}': cached activations of {where}: {activations.describe()}")
    return activations


def _feature_datasets(extractor: keras.Model, data: DataBundle, config: RunConfig, batch_size: int, log=None):
    import tensorflow as tf

    splits = [split for split in ("train", "val") if split in data.splits]
    step = frozen_forward(extractor, images=data.images_in(*splits), log=log)  # one pass for both splits
    x, y = extract(extractor, data.dataset("train", training=False), step=step, log=log,
                   phase="cached features (train)")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.data.seed,
                                                              reshuffle_each_iteration=True)
    train = train.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    val = None
    if "val" in data.splits:
        vx, vy = extract(extractor, data.dataset("val"), step=step, log=log, phase="cached features (val)")
        val = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(batch_size)
    return train, val
