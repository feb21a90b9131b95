"""The strategy advisor: measure the target set, place it in the four situations, write a config.

The source material's four situations are small/large target sets that are similar/different
to the source. The advisor measures both axes on the user's data instead of asking:

- size: the median number of training examples per class, against `SMALL_PER_CLASS`;
- similarity, two signals; either one saying "different" places the set there:
  a linear probe of every block (see `probe_layers`): when an earlier, more generic block
  classifies the target better than the last block by more than `PROBE_MARGIN`, the top has
  specialised away from this domain; and the mean standardised shift of the target's
  activations against the backbone's BatchNorm statistics (`bn_shift`, when it has BatchNorm):
  above `BN_SHIFT_LIMIT` the network sees inputs unlike its source's.

The thresholds and the experiment that set them are in the README ("Choosing a strategy").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import yaml

from keras_transfer.config import RunConfig, from_dict, packaged_config, to_dict
from keras_transfer.data import DataBundle
from keras_transfer.features.layer_probe import ProbeResult, probe_layers
from keras_transfer.training.feature_cache import compiled_forward

SMALL_PER_CLASS = 30
PROBE_MARGIN = 0.10
BN_SHIFT_LIMIT = 0.45


@dataclass
class Advice:
    """The measurements, the placement with its reasons, and the recommended config."""

    examples_per_class: float
    num_classes: int
    top_layer: str
    top_accuracy: float
    best_layer: str
    best_accuracy: float
    bn_shift: float | None
    size: str
    similarity: str
    reasons: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def situation(self) -> str:
        """One of small_similar, small_different, large_similar, large_different."""
        return f"{self.size}_{self.similarity}"

    def explain(self) -> str:
        """The placement in a few lines, with the measured numbers."""
        return "\n".join([f"situation: {self.situation.replace('_', ' and ')}", *(f"  - {r}" for r in self.reasons)])


def place(examples_per_class: float, probe: ProbeResult, bn_shift: float | None) -> tuple[str, str, list[str]]:
    """(size, similarity, reasons) from the measurements, by the documented thresholds."""
    top, best = _top_and_best(probe)
    top_acc, best_acc = probe.accuracy(top.layer), probe.accuracy(best.layer)
    size = "small" if examples_per_class < SMALL_PER_CLASS else "large"
    reasons = [f"{examples_per_class:g} training examples per class (median) is "
               f"{'below' if size == 'small' else 'at or above'} the {SMALL_PER_CLASS} that makes a set large"]
    gap = best_acc - top_acc
    probe_says = gap > PROBE_MARGIN
    if probe_says:
        reasons.append(f"a linear probe on {best.layer} ({100 * best_acc:.1f}%) beats the top block {top.layer} "
                       f"({100 * top_acc:.1f}%) by {100 * gap:.1f} points (limit {100 * PROBE_MARGIN:g}): the top "
                       "features are specialised away from this data")
    else:
        reasons.append(f"the top block {top.layer} classifies within {100 * PROBE_MARGIN:g} points of the best "
                       f"earlier block ({100 * top_acc:.1f}% vs {100 * best_acc:.1f}% at {best.layer})")
    shift_says = bn_shift is not None and bn_shift > BN_SHIFT_LIMIT
    if bn_shift is not None:
        reasons.append(f"the activations sit {bn_shift:.2f} source standard deviations from the BatchNorm statistics "
                       f"(mean over layers; limit {BN_SHIFT_LIMIT:g}): the inputs look "
                       + ("unlike" if shift_says else "like") + " the source's")
    similarity = "different" if probe_says or shift_says else "similar"
    return size, similarity, reasons


def _top_and_best(probe: ProbeResult):
    """The top block's row and the best earlier block's row (the top itself when it is the only one)."""
    top = probe.rows[-1]
    return top, max(probe.rows[:-1] or [top], key=lambda r: probe.accuracy(r.layer))


def bn_shift(backbone: keras.Model, data: DataBundle, split: str = "train", max_batches: int = 8) -> float | None:
    """Mean over BatchNorm layers of |target channel mean - moving mean| / moving std; None without BN.

    Near 0 the target's activations look like the source's; values of 1 and more mean the
    network sees inputs unlike the ones it was trained on.
    """
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return None
    means = [keras.layers.GlobalAveragePooling2D()(layer.input) if len(layer.input.shape) == 4 else layer.input
             for layer in norms]
    step = compiled_forward(keras.Model(backbone.input, means), as_list=True)
    sums, count = [0.0] * len(norms), 0
    for x, _ in data.dataset(split, training=False).take(max_batches):
        for i, out in enumerate(step(x)):
            sums[i] = sums[i] + np.asarray(out, dtype=np.float64).sum(axis=0)
        count += int(x.shape[0])
    shifts = []
    for layer, total in zip(norms, sums):
        mean = total / count
        moving_mean = keras.ops.convert_to_numpy(layer.moving_mean)
        moving_std = np.sqrt(keras.ops.convert_to_numpy(layer.moving_variance) + layer.epsilon)
        shifts.append(float(np.mean(np.abs(mean - moving_mean) / moving_std)))
    return float(np.mean(shifts))


def advise(config: RunConfig, backbone: keras.Model, data: DataBundle, *, cache_dir: str | Path | None = None,
           log: Callable[[str], None] | None = None) -> Advice:
    """Measure `data` against `backbone`, place it in the four situations and build the config to run.

    The recommended config is the packaged one for the situation, with the user's data section,
    backbone and weights; for a small, different set it cuts the backbone at the best-probed block.
    """
    counts = data.counts().get("train") or {}
    per_class = float(np.median(list(counts.values()))) if counts else float("inf")
    probe = probe_layers(backbone, data, "blocks", cache_dir=cache_dir, log=log)
    shift = bn_shift(backbone, data)
    size, similarity, reasons = place(per_class, probe, shift)
    top, best = _top_and_best(probe)
    advice = Advice(per_class, data.num_classes, top.layer, probe.accuracy(top.layer), best.layer,
                    probe.accuracy(best.layer), shift, size, similarity, reasons)
    advice.config = recommended_config(config, advice)
    return advice


def recommended_config(config: RunConfig, advice: Advice) -> dict[str, Any]:
    """The packaged config of `advice.situation`, with the user's data, backbone, weights and cut point."""
    recommended = yaml.safe_load(packaged_config(advice.situation).read_text())
    mine = to_dict(config)
    recommended["data"] = copy.deepcopy(mine["data"])
    model = recommended.setdefault("model", {})
    model["backbone"], model["weights"] = mine["model"]["backbone"], mine["model"]["weights"]
    # A small, different set trains on the generic features of the best-probed block; a large one
    # keeps the whole network and fine-tunes all of it.
    model["cut_at"] = advice.best_layer if advice.situation == "small_different" else mine["model"]["cut_at"]
    if advice.situation == "small_similar":
        recommended["data"]["augment"] = []  # so the frozen backbone's features are computed once
    from_dict(recommended)  # the advice must itself be a valid config
    return recommended
