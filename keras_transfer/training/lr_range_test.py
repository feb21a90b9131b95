"""The learning-rate range test (Smith, 2017; fastai's `lr_find`) for one stage of a config.

On a freshly built copy of the configured model (the user's runs are never touched), the
stage's trainable set trains for a few hundred steps while the learning rate grows
exponentially from `start_lr` to `end_lr`. The loss is smoothed (bias-corrected exponential
average) and the sweep stops once it diverges. The suggested rate is a tenth of the rate at the
smoothed minimum, the usual rule: the minimum itself is already at the edge of instability.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_transfer.config import RunConfig
from keras_transfer.data import load_data
from keras_transfer.files import atomic_write_text
from keras_transfer.training.engine import build_model, resolve_task
from keras_transfer.training.stage import prepare_stage


@dataclass
class LRFindResult:
    """The sweep: rate and loss at every step, the smoothed loss, and the suggestion."""

    stage: str
    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    min_loss_lr: float
    suggestion: float
    diverged: bool

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write lr_find.json and plots/lr_find.png into `out_dir`; return their paths."""
        out_dir = Path(out_dir)
        (out_dir / "plots").mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / "lr_find.json", "plot": out_dir / "plots" / "lr_find.png"}
        atomic_write_text(paths["json"], json.dumps(asdict(self), indent=1))
        _plot(self, paths["plot"])
        return paths


def lr_find(config: RunConfig, stage: int = 0, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 200,
            beta: float = 0.98, diverge: float = 4.0, initial_weights: keras.Model | None = None,
            log: Callable[[str], None] | None = None) -> LRFindResult:
    """Run the range test for `config.training.stages[stage]` and return the sweep and suggested rate.

    `initial_weights`: a trained model of the same config (e.g. a run's model.keras) to start
    from, so a later stage is tested where it would really begin; by default the stage starts
    from the pretrained backbone and a new head. Head-only stages on unaugmented data sweep on
    cached features, as training does.
    """
    if not 0 <= stage < len(config.training.stages):
        raise ValueError(f"--stage {stage + 1}: the config has {len(config.training.stages)} stage(s), "
                         f"{', '.join(s.name for s in config.training.stages)}")
    if not 0 < start_lr < end_lr:
        raise ValueError(f"the sweep needs 0 < start_lr < end_lr, got {start_lr:g} and {end_lr:g}")
    keras.utils.set_random_seed(config.training.seed)
    spec = config.training.stages[stage]
    data = load_data(config.data)
    model = build_model(config, data)
    if initial_weights is not None:
        if len(initial_weights.weights) != len(model.weights):
            raise ValueError("the starting model does not match the model built from this config")
        model.set_weights(initial_weights.get_weights())
    prepared = prepare_stage(model, spec, config, data, task=resolve_task(config, data), learning_rate=start_lr,
                             constant_rate=True)
    trained, fit_model, train_ds, optimizer = prepared.trained, prepared.fit_model, prepared.train_ds, prepared.optimizer
    fit_model.compile(optimizer=optimizer, loss=prepared.loss)
    if log:
        log(f"lr_find on stage '{spec.name}' (training {', '.join(trained)}): {steps} steps from {start_lr:g} to {end_lr:g}")

    factor = (end_lr / start_lr) ** (1.0 / max(1, steps - 1))
    rates, losses, smoothed = [], [], []
    average, best, diverged = 0.0, math.inf, False
    batches = iter(train_ds.repeat())
    for step in range(steps):
        rate = start_lr * factor**step
        optimizer.learning_rate.assign(rate)
        x, y = next(batches)
        value = float(fit_model.train_on_batch(x, y))
        average = beta * average + (1 - beta) * value
        smooth = average / (1 - beta ** (step + 1))
        rates.append(rate)
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or (step > 10 and smooth > diverge * best):
            diverged = True
            break
    at_min = rates[int(np.nanargmin(smoothed))]
    result = LRFindResult(spec.name, rates, losses, smoothed, at_min, at_min / 10, diverged)
    if log:
        log(f"smoothed loss is lowest at lr {at_min:.2g}" + ("; diverged after" if diverged else "; swept")
            + f" {len(rates)} steps. Suggested learning_rate for '{spec.name}': {result.suggestion:.2g}")
    return result


def _plot(result: LRFindResult, path: Path) -> None:
    from keras_transfer.plots import new_figure, save_figure

    fig, ax = new_figure(size=(7, 4))
    ax.plot(result.learning_rates, result.losses, color="lightgrey", linewidth=1, label="loss per step")
    ax.plot(result.learning_rates, result.smoothed, linewidth=2, label="smoothed loss")
    ax.axvline(result.suggestion, color="tab:green", linestyle="--", label=f"suggested {result.suggestion:.2g}")
    ax.axvline(result.min_loss_lr, color="tab:red", linestyle=":", label=f"minimum {result.min_loss_lr:.2g}")
    ax.set_xscale("log")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"Learning-rate range test, stage '{result.stage}'")
    ax.legend()
    save_figure(fig, path)
