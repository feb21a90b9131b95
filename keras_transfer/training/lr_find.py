"""The learning-rate range test (Smith, 2017; fastai's `lr_find`) for one stage of a config.

On a freshly built copy of the configured model (the user's runs are never touched), the
stage's trainable set trains for a few hundred steps while the learning rate grows
exponentially from `start_lr` to `end_lr`. The loss is smoothed (bias-corrected exponential
average) and the sweep stops once it diverges. The suggested rate is a tenth of the rate at the
smoothed minimum, the usual rule: the minimum itself is already at the edge of instability. When
the loss never rose again, or its minimum sits at the end of the sweep, the edge was never found:
there is no suggestion then, only a warning (a tenth of the last rate would be a guess).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_transfer.core.names import unknown_name_message
from keras_transfer.config import RunConfig
from keras_transfer.data import load_data
from keras_transfer.core.files import atomic_write_text
from keras_transfer.training.engine import build_model
from keras_transfer.training.stage import prepare_stage


@dataclass
class LRFindResult:
    """The sweep: rate and loss at every step, the smoothed loss, and the suggestion."""

    stage: str
    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    min_loss_lr: float
    suggestion: float | None
    diverged: bool
    warning: str | None = None

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write lr_find.json and plots/lr_find.png into `out_dir`; return their paths."""
        out_dir = Path(out_dir)
        (out_dir / "plots").mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / "lr_find.json", "plot": out_dir / "plots" / "lr_find.png"}
        atomic_write_text(paths["json"], json.dumps(asdict(self), indent=1))
        _plot(self, paths["plot"])
        return paths


def stage_index(config: RunConfig, stage: int | str) -> int:
    """The position of `stage` (a name, or an index counted from 0 as in `--set training.stages.N`).

    Unknown names and indices out of range raise ValueError naming the stages there are.
    """
    names = [s.name for s in config.training.stages]
    if isinstance(stage, str) and stage in names:
        return names.index(stage)
    if isinstance(stage, int) or stage.isdigit():
        if 0 <= int(stage) < len(names):
            return int(stage)
        raise ValueError(f"--stage {stage}: the config has {len(names)} stage(s), {', '.join(names)} "
                         f"(indices 0 to {len(names) - 1})")
    raise ValueError(unknown_name_message("stage", stage, names, where="--stage"))


def lr_find(config: RunConfig, stage: int | str = 0, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 200,
            beta: float = 0.98, diverge: float = 4.0, initial_weights: keras.Model | None = None,
            log: Callable[[str], None] | None = None) -> LRFindResult:
    """Run the range test for one stage (its name, or its index from 0) and return the sweep and
    suggested rate.

    `initial_weights`: a trained model of the same config (e.g. a run's model.keras) to start
    from, so a later stage is tested where it would really begin; by default the stage starts
    from the pretrained backbone and a new head. Head-only stages on unaugmented data sweep on
    cached features, as training does.
    """
    stage = stage_index(config, stage)
    if not 0 < start_lr < end_lr:
        raise ValueError(f"the sweep needs 0 < start_lr < end_lr, got {start_lr:g} and {end_lr:g}")
    keras.utils.set_random_seed(config.training.seed)
    spec = config.training.stages[stage]
    data = load_data(config.data, task=config.model.task)
    model = build_model(config, data)
    if initial_weights is not None:
        if len(initial_weights.weights) != len(model.weights):
            raise ValueError("the starting model does not match the model built from this config")
        model.set_weights(initial_weights.get_weights())
    prepared = prepare_stage(model, spec, config, data, task=data.task, learning_rate=start_lr,
                             constant_rate=True)
    trained, fit_model, train_ds, optimizer = prepared.trained, prepared.fit_model, prepared.train_ds, prepared.optimizer
    fit_model.compile(optimizer=optimizer, loss=prepared.loss)
    if log:
        log(f"lr_find on stage '{spec.name}' (training {', '.join(trained)}): {steps} steps from {start_lr:g} to {end_lr:g}")

    factor = (end_lr / start_lr) ** (1.0 / max(1, steps - 1))
    rates, losses, smoothed = [], [], []
    average, best, diverged = 0.0, math.inf, False
    batches = iter(train_ds.repeat())
    progress = keras.utils.Progbar(steps, unit_name="step", verbose=1 if sys.stdout.isatty() else 2) \
        if log and steps > 20 else None
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
        if progress is not None:
            progress.update(step + 1, [("lr", rate), ("loss", smooth)])
        if not math.isfinite(smooth) or (step > 10 and smooth > diverge * best):
            diverged = True
            break
    prepared.release()
    lowest = int(np.nanargmin(smoothed))
    at_min = rates[lowest]
    warning = _no_edge_warning(rates, smoothed, lowest, diverged)
    result = LRFindResult(spec.name, rates, losses, smoothed, at_min, None if warning else at_min / 10, diverged, warning)
    if log:
        log(f"smoothed loss is lowest at lr {at_min:.2g}" + ("; diverged after" if diverged else "; swept")
            + f" {len(rates)} steps. " + (f"warning: {warning}" if warning else
                                         f"Suggested learning_rate for '{spec.name}': {result.suggestion:.2g}"))
    return result


def _no_edge_warning(rates: list[float], smoothed: list[float], lowest: int, diverged: bool) -> str | None:
    """Why the sweep gives no rate, or None when it found the edge of instability.

    The rule "a tenth of the minimum" assumes the loss turned up after it; when the minimum sits
    in the last steps, or the loss never rose clearly above it, the rate at the minimum is only
    where the sweep stopped.
    """
    at_end = lowest >= len(smoothed) - max(2, len(smoothed) // 20)
    rose = diverged or max(smoothed[lowest:]) > 1.5 * smoothed[lowest]
    if not at_end and rose:
        return None
    why = (f"the loss was still falling at the end of the sweep, lr {rates[-1]:.2g}" if at_end else
           f"the loss never rose after its minimum at lr {rates[lowest]:.2g} (up to lr {rates[-1]:.2g})")
    return f"no learning rate to suggest: {why}; sweep higher (--end-lr) or longer (--steps)"


def _plot(result: LRFindResult, path: Path) -> None:
    from keras_transfer.core.plots import new_figure, save_figure

    fig, ax = new_figure(size=(7, 4))
    ax.plot(result.learning_rates, result.losses, color="lightgrey", linewidth=1, label="loss per step")
    ax.plot(result.learning_rates, result.smoothed, linewidth=2, label="smoothed loss")
    if result.suggestion is not None:
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
