"""AdaBN (Li et al., 2016): re-estimate every BatchNorm layer's statistics on target images.

A network trained on the source normalises each channel with the source's mean and variance.
On a target domain whose activations sit elsewhere (the advisor's `bn_shift`), every layer sees
inputs off the scale it learnt. AdaBN replaces each BatchNorm layer's moving mean and variance
by the target's own, measured on unlabelled target images; no weight and no label is touched.

The statistics of a layer depend on the layers below it, which are themselves being adapted.
A first pass settles them all at once: every BatchNorm layer normalises with the statistics of
the batch it sees (large batches of target images), so each layer's input is already what it
will be once the layers below are adapted, and the population moments of those inputs are
summed over the pass. Further passes (`passes`, default 2 in all) re-measure every layer under
the statistics just set; the largest change of the last pass is reported, so a reader sees
whether the estimate has settled. (Passes of moving statistics alone settle one layer per pass:
three of them left the upper layers of Lite0 at 32x32 unsettled and its features collapsed.)
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from keras_transfer.forward import compiled_forward

DEFAULT_PASSES = 2
# Pixels per batch of the first pass: each layer normalises with its batch's statistics there, so
# batches are large (512 images at 64x64, 128 at 224x224) for those to be near the population's.
CASCADE_PIXELS = 128 * 224 * 224
CASCADE_MAX_BATCH = 512
UNSETTLED = 0.1  # std a mean may still move in the last pass before the log calls the estimate unsettled
VARIANCE_FLOOR = 0.01  # of the source's moving variance: a channel's scale grows at most 10x
_SOURCE_VARIANCE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
# Labelled images needed to estimate their own BatchNorm statistics before the head is fitted;
# with fewer, the head is fitted under the unlabelled images' statistics. Measured: with 25
# labelled letters, ImageNet Lite0 under their own statistics fell to chance (0.20) where
# source-only reached 0.39 (benchmarks/bench_unlabeled.py).
OWN_STATISTICS_FROM = 200


@dataclass
class AdaptReport:
    """What AdaBN did: layers adapted, images seen per pass, passes, and the last pass's largest
    change of a moving mean in units of the layer's adapted standard deviation."""

    layers: int
    images: int
    passes: int
    last_change: float

    def line(self) -> str:
        """One line for the run log."""
        unsettled = ("; NOT settled: the upper layers' statistics are still moving, so AdaBN's result is "
                     "unreliable for this network and input size" if self.last_change > UNSETTLED else "")
        return (f"AdaBN: re-estimated {self.layers} BatchNorm layers on {self.images:,} images "
                f"({self.passes} passes; the last moved a mean by at most {self.last_change:.3f} std{unsettled})")


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of the functional graph of `model`, in graph order.

    The toolkit's classifiers are flat (the backbone's layers are the classifier's layers); a
    BatchNorm layer inside a nested model is not reached (`adapt_batchnorm` says so)."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _nested_batchnorm(model: keras.Model) -> int:
    return sum(len(batchnorm_layers(layer)) + _nested_batchnorm(layer)
               for layer in model.layers if isinstance(layer, keras.Model))


def adapt_batchnorm(model: keras.Model, dataset, *, passes: int = DEFAULT_PASSES, max_batches: int | None = None,
                    log: Callable[[str], None] | None = None) -> AdaptReport | None:
    """Set every BatchNorm layer's moving mean and variance of `model` to the statistics of its
    inputs on `dataset` (batches of raw pixels, or (pixels, labels) pairs whose labels are ignored).

    Only `moving_mean` and `moving_variance` change: weights, gamma, beta, and every other
    variable stay bitwise equal. Returns None (and changes nothing) when `model` has no BatchNorm.
    `max_batches` caps the images read per pass.
    """
    norms = batchnorm_layers(model)
    nested = _nested_batchnorm(model)
    if nested and log:
        log(f"AdaBN: {nested} BatchNorm layer(s) inside nested models are left as they are")
    if not norms:
        if log:
            log("AdaBN: the model has no BatchNorm layer; nothing to adapt")
        return None
    last_change, images = 0.0, 0
    cascade = compiled_forward(_cascade_probe(model, norms), as_list=True)
    # Reads the moving statistics as variables: one trace serves every later pass.
    moving = compiled_forward(_moving_probe(model, norms), as_list=True) if passes > 1 else None
    for number in range(max(1, passes)):
        step, batches = (cascade, _rebatched(dataset, model)) if number == 0 else (moving, dataset)
        totals, images = _summed_moments(step, batches, len(norms), max_batches)
        if images == 0:
            raise ValueError("AdaBN needs at least one unlabelled image; the unlabelled dataset is empty")
        last_change = _assign(norms, totals, images)
    report = AdaptReport(len(norms), images, passes, last_change)
    if log:
        log(report.line())
    return report


def _assign(norms: list, totals: list, images: int) -> float:
    """Set each layer's moving statistics from its summed input moments; the largest change of a
    moving mean, in units of the new standard deviation."""
    change = 0.0
    for i, layer in enumerate(norms):
        count = _positions(layer, images)
        mean = totals[2 * i] / count
        variance = np.maximum(totals[2 * i + 1] / count - np.square(mean), 0.0)
        if layer not in _SOURCE_VARIANCE:  # the statistics before any adaptation, for the floor
            _SOURCE_VARIANCE[layer] = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
        # A channel (nearly) silent on the target would be divided by ~sqrt(epsilon) and blow up
        # every layer above: its variance is kept at least VARIANCE_FLOOR of the source's.
        variance = np.maximum(variance, VARIANCE_FLOOR * _SOURCE_VARIANCE[layer])
        old = keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
        change = max(change, float(np.max(np.abs(mean - old) / np.sqrt(variance + layer.epsilon))))
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return change


def _summed_moments(step, dataset, layers: int, max_batches: int | None) -> tuple[list, int]:
    totals: list = [0.0] * (2 * layers)
    images = 0
    for batch in dataset.take(max_batches) if max_batches else dataset:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        for i, out in enumerate(step(x)):
            totals[i] = totals[i] + np.asarray(out, dtype=np.float64)
        images += int(x.shape[0])
    return totals, images


def _moving_probe(model: keras.Model, norms: list) -> keras.Model:
    """The model's own graph, each BatchNorm under its moving statistics, answering every
    BatchNorm input's per-channel sum and sum of squares over a batch."""
    return keras.Model(model.inputs, [moment for layer in norms for moment in _batch_moments(layer.input, layer)])


def _cascade_probe(model: keras.Model, norms: list) -> keras.Model:
    """The model's graph (its own layers, shared) with every BatchNorm normalising with its batch's
    statistics, answering the same sums as `_moving_probe`: one pass adapts all layers together."""
    order = {id(layer): i for i, layer in enumerate(norms)}
    moments: list = [None] * len(norms)

    def call(layer, *args, **kwargs):
        if id(layer) not in order:
            return layer(*args, **kwargs)
        x = keras.ops.cast(args[0], "float32")
        moments[order[id(layer)]] = _batch_moments(x, layer)
        axis = _channel_axis(layer, x)
        axes = [i for i in range(len(x.shape)) if i != axis]
        mean, variance = keras.ops.moments(x, axes=axes, keepdims=True)
        shape = [1] * len(x.shape)
        shape[axis] = x.shape[axis]
        y = (x - mean) / keras.ops.sqrt(variance + layer.epsilon)
        if layer.scale:
            y = y * keras.ops.reshape(layer.gamma, shape)
        if layer.center:
            y = y + keras.ops.reshape(layer.beta, shape)
        return y

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    return keras.Model(clone.inputs, [moment for pair in moments for moment in pair])


def _rebatched(dataset, model: keras.Model):
    """`dataset`'s images in batches of CASCADE_PIXELS (at most CASCADE_MAX_BATCH images)."""
    import tensorflow as tf

    height, width = (model.input_shape[1] or 224), (model.input_shape[2] or 224)
    size = int(min(CASCADE_MAX_BATCH, max(16, CASCADE_PIXELS // (height * width))))
    images = dataset.map(lambda *batch: batch[0])  # (pixels, labels) or pixels alone
    return images.unbatch().batch(size).prefetch(tf.data.AUTOTUNE)


def adapt_before_fit(model: keras.Model, labelled, n_labelled: int, unlabelled,
                     log: Callable[[str], None] | None = None) -> AdaptReport | None:
    """AdaBN's first step: the statistics the head is fitted under. Those of the labelled images
    (`labelled`, a dataset) when there are at least `OWN_STATISTICS_FROM` of them, so the head learns
    on features normalised with their own domain's statistics; else the unlabelled images' (a
    few dozen images estimate a deep network's statistics too poorly)."""
    if n_labelled >= OWN_STATISTICS_FROM:
        return adapt_batchnorm(model, labelled, log=(lambda line: log(f"{line} (labelled)")) if log else None)
    return adapt_batchnorm(model, unlabelled, log=(lambda line: log(
        f"{line} (unlabelled: {n_labelled} labelled images are too few for their own)")) if log else None)


def _channel_axis(layer, x) -> int:
    return (layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis) % len(x.shape)


def _batch_moments(x, layer) -> list:
    """Symbolic per-channel sum and sum of squares of `x` (a BatchNorm layer's input) over a batch
    and its positions, reduced inside the traced graph: only two vectors per layer leave it."""
    x = keras.ops.cast(x, "float32")
    axis = _channel_axis(layer, x)
    axes = [i for i in range(len(x.shape)) if i != axis]
    return [keras.ops.sum(x, axis=axes), keras.ops.sum(keras.ops.square(x), axis=axes)]


def _positions(layer, images: int) -> int:
    """Rows per channel summed over the pass: images times spatial positions of the layer's input."""
    shape = layer.input.shape
    axis = _channel_axis(layer, layer.input)
    spatial = int(np.prod([d for i, d in enumerate(shape[1:], start=1) if i != axis] or [1]))
    return images * spatial
