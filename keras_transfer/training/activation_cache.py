"""Partial fine-tuning on cached activations: the frozen lower blocks run once per augmented view.

A stage that trains only the upper blocks (and the head) pushes every image through the frozen
lower blocks again at every step, for the same result each time up to the augmentation. Instead
the classifier is cut at the one tensor below its lowest trained block (`split_at_block`): the
frozen *prefix* (pixels -> that tensor) runs once per augmented view of each training image (a
few views, made once, in memory or in a memory-mapped `.npy` when large) and once over the
unaugmented validation images; the trainable *suffix* (that tensor -> outputs), built from the
classifier's own layers, trains on those activations, one view per image drawn each epoch. The
suffix's weights *are* the classifier's, and the prefix's BatchNormalization runs in inference
mode, as it does in a frozen block of the full model.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_transfer.backbones import backbone_blocks
from keras_transfer.forward import extract

# Views of each training image: each costs one pass of the prefix, against one full forward pass
# per epoch saved (benchmarks/bench_partial.py). Unaugmented data has one view.
VIEWS = 3
IN_MEMORY_BYTES = 1 << 30  # larger view sets go to a memory-mapped .npy file
AUTO_MAX_BYTES = 8 << 30  # `auto` leaves larger sets on today's path (disk bound)
AUTO_MIN_PREFIX_SHARE = 0.5  # `auto`: the prefix must hold at least this share of the forward cost
# `auto` trains on images above this many training images per class: at 100 per class the views
# matched fresh augmentation (flowers5, eurosat5, 3 seeds each); on all flower photos (~560 per
# class, one seed, no early stopping) they lost 4.2 points by overfitting sooner.
AUTO_MAX_PER_CLASS = 200


class NoSingleCut(ValueError):
    """The graph does not pass through one tensor between the frozen blocks and the trained ones."""


@dataclass(frozen=True)
class Cut:
    """A classifier cut below a block: `prefix` (pixels -> boundary) and `suffix` (boundary -> outputs)
    share the classifier's layers; `share` is the prefix's part of the forward multiply-adds."""

    prefix: keras.Model
    suffix: keras.Model
    boundary: str
    share: float


def split_at_block(model: keras.Model, block: str) -> Cut:
    """Cut `model` at the output of the block below `block`; raise `NoSingleCut` if that is no clean cut.

    Keras builds a functional model from intermediate tensors with the layers (and weights)
    shared; a cut is clean when the suffix needs nothing from below the boundary but the boundary
    tensor (no residual connection crosses it), and prefix and suffix together hold every layer
    of the model exactly once.
    """
    blocks = backbone_blocks(model)
    names = list(blocks)
    if block not in names or names.index(block) == 0:
        raise NoSingleCut(f"nothing is frozen below block {block!r}")
    below = blocks[names[names.index(block) - 1]][-1]
    lower = {id(layer) for name in names[: names.index(block)] for layer in blocks[name]}
    boundary = below.output
    try:
        suffix = keras.Model(boundary, model.outputs[0] if len(model.outputs) == 1 else model.outputs,
                             name="suffix_on_activations")
    except ValueError:  # "Graph disconnected": a tensor from below the boundary feeds the suffix
        raise NoSingleCut(f"a connection crosses the output of {below.name}, so it is not the only tensor "
                          f"between the frozen blocks and {block}") from None
    inside = [layer for layer in suffix.layers if not isinstance(layer, keras.layers.InputLayer)]
    if any(id(layer) in lower for layer in inside):
        raise NoSingleCut(f"the layers above {below.name} read layers of the frozen blocks")
    prefix = keras.Model(model.inputs[0], boundary, name="frozen_prefix")
    if any(layer.trainable_weights for layer in prefix.layers):
        raise NoSingleCut(f"a layer below {block} trains")
    covered = {id(layer) for layer in prefix.layers} | {id(layer) for layer in inside}
    if any(id(layer) not in covered for layer in model.layers):
        raise NoSingleCut(f"the output of {below.name} is not where the frozen blocks end")
    return Cut(prefix, suffix, below.name, _share(prefix.layers, model.layers))


def _share(prefix_layers, all_layers) -> float:
    """The prefix's share of the forward pass, in multiply-adds of weight matrices and kernels."""
    def cost(layer) -> float:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer called in several places: count it once, spatially flat
            shape = (None, 1)
        spatial = float(np.prod([d or 1 for d in shape[1:-1]])) if len(shape) > 2 else 1.0
        return spatial * sum(float(np.prod(w.shape)) for w in layer.weights if len(w.shape) >= 2)

    total = sum(cost(layer) for layer in all_layers)
    return sum(cost(layer) for layer in prefix_layers) / total if total else 0.0


@dataclass
class ActivationCache:
    """The prefix's outputs: `train` [views, images, ...] (an array or a memory map) with `labels`,
    and the validation images' (`val`, `val_labels`), or None without a validation split."""

    train: np.ndarray
    labels: np.ndarray
    val: np.ndarray | None
    val_labels: np.ndarray | None
    folder: Path | None
    seconds: float

    @property
    def nbytes(self) -> int:
        return int(self.train.nbytes + (self.val.nbytes if self.val is not None else 0))

    def describe(self) -> str:
        views, images = self.train.shape[:2]
        where = f"on disk in {self.folder}" if self.folder else "in memory"
        val = f" and {len(self.val)} validation images" if self.val is not None else ""
        return (f"{views} view{'s' * (views > 1)} of {images} images{val}, {self.nbytes / 2**20:,.0f} MB {where}, "
                f"{self.seconds:.1f} s")

    def train_dataset(self, batch_size: int, seed: int):
        """Batches of (activations, labels), one view per image drawn anew (and reshuffled) each epoch."""
        views, images = self.train.shape[:2]
        epochs = itertools.count()

        def batches():
            rng = np.random.default_rng([seed, next(epochs)])
            order, chosen = rng.permutation(images), rng.integers(views, size=images)
            for start in range(0, images, batch_size):
                rows = order[start:start + batch_size]
                yield np.asarray(self.train[chosen[start:start + batch_size], rows]), self.labels[rows]

        return _dataset(batches, self.train.shape[2:], self.labels, -(-images // batch_size))

    def val_dataset(self, batch_size: int):
        if self.val is None:
            return None
        images = len(self.val)

        def batches():
            for start in range(0, images, batch_size):
                yield self.val[start:start + batch_size], self.val_labels[start:start + batch_size]

        return _dataset(batches, self.val.shape[1:], self.val_labels, -(-images // batch_size))

    def release(self) -> None:
        """Delete the on-disk views (in-memory ones go with the object)."""
        self.train = self.val = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _dataset(batches, shape, labels: np.ndarray, steps: int):
    import tensorflow as tf

    signature = (tf.TensorSpec((None, *shape), tf.float32),
                 tf.TensorSpec((None, *labels.shape[1:]), tf.as_dtype(labels.dtype)))
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def cache_activations(cut: Cut, data, views: int, *, step: Callable, scratch: Path | None = None,
                      log: Callable[[str], None] | None = None) -> ActivationCache:
    """Run `cut.prefix` (through `step`, a frozen pass) over `views` augmented views of every
    training image and once over the unaugmented validation images.

    View v of batch b is augmented with the data config's augmentation drawn from (seed, v, b)
    alone, so the same run makes the same views (a resumed stage trains on what it started on),
    whether the config augments in tf.data or in the model (whose augmentation layer is idle in
    the prefix's inference pass). Sets larger than `IN_MEMORY_BYTES` go to a memory-mapped
    `.npy` in `scratch` (or a temporary folder).
    """
    import tensorflow as tf

    from keras_transfer.core.progress import MIN_BATCHES, batches_of, with_progress
    from keras_transfer.data.augment import augment_statelessly, augmentation_layers

    started = time.perf_counter()
    config = data.config
    layers = augmentation_layers(config.augment, config.seed) if views > 1 else []
    shape = tuple(int(d) for d in cut.prefix.output.shape[1:])
    images = len(data.splits["train"])
    size = views * images * int(np.prod(shape)) * 4
    folder = None
    if size > IN_MEMORY_BYTES:
        for stale in Path(scratch).glob("activations-*") if scratch is not None else ():
            shutil.rmtree(stale, ignore_errors=True)  # what a killed stage left in the run folder
        folder = Path(tempfile.mkdtemp(prefix="activations-", dir=scratch))
        train = np.lib.format.open_memmap(folder / "train.npy", mode="w+", dtype=np.float32, shape=(views, images, *shape))
    else:
        train = np.empty((views, images, *shape), np.float32)

    @tf.autograph.experimental.do_not_convert
    def augment(x, view, batch):
        seed = tf.stack([tf.constant(config.seed, tf.int64), view * 1_000_003 + batch])
        return tf.clip_by_value(augment_statelessly(layers, x, seed), 0.0, 255.0)

    augment = tf.function(augment, reduce_retracing=True)
    ordered = data.dataset("train", training=False)
    labels, start = [], 0
    for batch, (x, y) in enumerate(with_progress(ordered, batches_of(ordered), "batch", at_least=MIN_BATCHES,
                                                 eta=log, phase="cached activations (train)")):
        n = int(x.shape[0])
        for view in range(views):
            seen = augment(x, tf.constant(view, tf.int64), tf.constant(batch, tf.int64)) if view else x
            train[view, start:start + n] = step(seen)[0]
        labels.append(np.asarray(y))
        start += n
    if isinstance(train, np.memmap):
        train.flush()
    val, val_labels = extract(cut.prefix, data.dataset("val"), step=step) if "val" in data.splits else (None, None)
    return ActivationCache(train, np.concatenate(labels), val, val_labels, folder, time.perf_counter() - started)
