"""AdaBN (Li et al., 2016): re-estimate every BatchNorm layer's statistics on target images.

A network trained on the source normalises each channel with the source's mean and variance.
On a target domain whose activations sit elsewhere (the advisor's `bn_shift`), every layer sees
inputs off the scale it learnt. AdaBN replaces each BatchNorm layer's moving mean and variance
by the target's own, measured on unlabelled target images; no weight and no label is touched.

The statistics of a layer depend on the layers below it, which are themselves being adapted,
so the population mean and variance of every BatchNorm input are measured in one inference pass
and assigned, and the pass repeats: after pass k the k lowest BatchNorm layers hold their exact
target statistics and the ones above are close, because their inputs are already nearly
normalised. `passes` (default 3) bounds the work; the largest change of the last pass is
reported, so a reader sees whether it has settled.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from keras_transfer.forward import compiled_forward

DEFAULT_PASSES = 3
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
    probe = keras.Model(model.inputs, [moment for layer in norms for moment in _batch_moments(layer)])
    step = compiled_forward(probe, as_list=True)  # reads the moving statistics as variables: one trace serves every pass
    last_change, images = 0.0, 0
    for _ in range(passes):
        totals: list[np.ndarray | float] = [0.0] * (2 * len(norms))
        images = 0
        for batch in dataset.take(max_batches) if max_batches else dataset:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for i, out in enumerate(step(x)):
                totals[i] = totals[i] + np.asarray(out, dtype=np.float64)
            images += int(x.shape[0])
        if images == 0:
            raise ValueError("AdaBN needs at least one unlabelled image; the unlabelled dataset is empty")
        last_change = 0.0
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
            std = np.sqrt(variance + layer.epsilon)
            last_change = max(last_change, float(np.max(np.abs(mean - old) / std)))
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    report = AdaptReport(len(norms), images, passes, last_change)
    if log:
        log(report.line())
    return report


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


def _batch_moments(layer) -> list:
    """Symbolic per-channel sum and sum of squares of `layer`'s input over a batch (and its positions),
    reduced inside the traced graph: only two vectors per layer leave it, not the feature maps."""
    x = keras.ops.cast(layer.input, "float32")
    axis = (layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis) % len(x.shape)
    axes = [i for i in range(len(x.shape)) if i != axis]
    return [keras.ops.sum(x, axis=axes), keras.ops.sum(keras.ops.square(x), axis=axes)]


def _positions(layer, images: int) -> int:
    """Rows per channel summed over the pass: images times spatial positions of the layer's input."""
    shape = layer.input.shape
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
    spatial = int(np.prod([d for i, d in enumerate(shape[1:], start=1) if i != axis % len(shape)] or [1]))
    return images * spatial


# `adaptation_plan`'s thresholds. ADABN_SHIFT is the advisor's BN_SHIFT_LIMIT (the shift above
# which it calls a target set "different"); self-training pays when pseudo-labels can outnumber labels.
ADABN_SHIFT = 0.45
SELF_TRAINING = {"rounds": 3, "threshold": 0.9}


def adaptation_plan(bn_shift: float | None, n_unlabeled: int, n_labeled: int) -> dict:
    """What `recipe: auto` should add for unlabelled images, with the reasons, as config values.

    The rule: `model.adapt: adabn` when the backbone has BatchNorm, there are unlabelled images, and
    the measured BatchNorm shift (`features.advisor.bn_shift`: the target's mean activation, in
    source standard deviations from the moving mean, averaged over layers) exceeds `ADABN_SHIFT`;
    `training.self_training: SELF_TRAINING` when the unlabelled images outnumber the labelled ones
    (it runs on feature extraction's cached features). Returns {"adapt": "adabn" | "none",
    "self_training": {...} | None, "reasons": [one sentence per decision]}.
    """
    reasons = []
    adapt = "none"
    if n_unlabeled <= 0:
        return {"adapt": "none", "self_training": None, "reasons": ["no unlabelled images (data.unlabeled)"]}
    if bn_shift is None:
        reasons.append("no AdaBN: the backbone has no BatchNorm layer")
    elif bn_shift > ADABN_SHIFT:
        adapt = "adabn"
        reasons.append(f"AdaBN: the BatchNorm shift {bn_shift:.2f} exceeds {ADABN_SHIFT:g}, so the target's "
                       "statistics replace the source's")
    else:
        reasons.append(f"no AdaBN: the BatchNorm shift {bn_shift:.2f} is within {ADABN_SHIFT:g}")
    self_training = None
    if n_unlabeled > n_labeled:
        self_training = dict(SELF_TRAINING)
        reasons.append(f"self-training: {n_unlabeled:,} unlabelled images outnumber the {n_labeled:,} labelled ones")
    else:
        reasons.append(f"no self-training: {n_unlabeled:,} unlabelled images do not outnumber the "
                       f"{n_labeled:,} labelled ones")
    return {"adapt": adapt, "self_training": self_training, "reasons": reasons}
