"""A stage's clocks: the one line saying how long it has left, the time limit that ends it, and
the accuracy per minute that may end it sooner.

`StageEta` logs once per stage with `ETA_MIN_SECONDS` or more to go, from its first epoch: from the first batches when an epoch is long
(`LONG_EPOCH` batches or more), else at the end of the first epoch. `TimeLimit` ends `fit` at the
end of the batch in which the run's budget runs out; Keras then validates that epoch and ends the
stage as early stopping would (restoring the best weights where early stopping keeps them).
`GainPerMinute` ends a stage after an epoch whose gain in validation accuracy did not pay for
the minutes it took.
"""

from __future__ import annotations

import time
from typing import Callable

import keras

from keras_transfer.core.timing import ETA_AFTER, TimeBudget, format_duration, worth_saying

# An epoch this long (batches) says how long the stage has left from its first batches, not at its end.
LONG_EPOCH = 4 * ETA_AFTER


class StageEta(keras.callbacks.Callback):
    """Log `"stage 'top': about 3 min left (5 epochs at ~36 s)"` once, early in the stage.

    The first batch is not timed (it traces the step); validation is counted only in the estimate
    made at the end of the first epoch. `budget` adds when the time limit will cut the stage short.
    """

    def __init__(self, stage: str, epochs: int, steps: int, log: Callable[[str], None], budget: TimeBudget | None = None):
        super().__init__()
        self.stage, self.epochs, self.steps, self.log, self.budget = stage, epochs, steps, log, budget
        self.said = False
        self.first_epoch: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch, self.epoch_started = epoch, time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.said or self.steps < LONG_EPOCH:
            return
        if batch == 0:
            self.first_batch_done = time.monotonic()
        elif batch == ETA_AFTER:
            per = (time.monotonic() - self.first_batch_done) / batch
            epochs = self.epochs - self.first_epoch
            left = per * (self.steps - batch - 1) + per * self.steps * (epochs - 1)
            self._say(left, f"{epochs} epoch{'s' * (epochs != 1)} at ~{format_duration(per * self.steps)}")

    def on_epoch_end(self, epoch, logs=None):
        if self.said or epoch != self.first_epoch:
            return
        more = self.epochs - epoch - 1
        if more > 0:
            per = time.monotonic() - self.epoch_started
            self._say(per * more, f"{more} more epoch{'s' * (more != 1)} at ~{format_duration(per)}")
        self.said = True

    def _say(self, left: float, how: str) -> None:
        self.said = True
        if not worth_saying(left):
            return
        line = f"stage '{self.stage}': about {format_duration(left)} left ({how})"
        if self.budget is not None and self.budget.remaining() < left:
            line += f"; the time limit ends it in {format_duration(self.budget.remaining())}"
        self.log(line)


class TimeLimit(keras.callbacks.Callback):
    """End the stage's `fit` at the end of the batch in which `budget` runs out, and say so in one line."""

    def __init__(self, budget: TimeBudget, stage: str, log: Callable[[str], None], early_stopping=None):
        super().__init__()
        self.budget, self.stage, self.log, self.early_stopping = budget, stage, log, early_stopping
        self.stopped: tuple[int, int] | None = None  # (epoch, batch) of this stage, from 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped is None and self.budget.spent:
            self.model.stop_training = True
            self.stopped = (self.epoch + 1, batch + 1)

    def on_train_end(self, logs=None):
        if self.stopped is None:
            return
        es = self.early_stopping  # its on_train_end, earlier in the list, has restored the best epoch
        restored = (f"; kept the best epoch's weights ({es.best_epoch + 1})"
                    if es is not None and es.restore_best_weights and es.best_weights is not None else "")
        epoch, batch = self.stopped
        self.log(f"time limit: {self.budget.describe()} spent; stage '{self.stage}' stopped after batch {batch} of "
                 f"epoch {epoch}{restored}")


class GainPerMinute(keras.callbacks.Callback):
    """End the stage after an epoch that raised the run's best validation accuracy by fewer than
    `min_gain` points per minute it took, and say so in one line.

    `best` is the best validation accuracy the run logged before this stage's next epoch (earlier
    stages', and on resume this stage's earlier epochs): a stage has to beat what the run already
    has. A stage's first epoch is not weighed, only counted into the best: it pays for tracing the
    new step, and a fresh optimizer often dips before it climbs (on the per-epoch curves of
    benchmarks/bench_recipes.py, weighing it would have ended a full stage that went on to gain a
    point). Early stopping, earlier in the callback list, then restores its best epoch as usual.
    """

    def __init__(self, stage: str, min_gain: float, best: float | None, log: Callable[[str], None],
                 metric: str = "val_accuracy"):
        super().__init__()
        self.stage, self.min_gain, self.best, self.log, self.metric = stage, min_gain, best, log, metric
        self.stopped: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None:
            return
        value, minutes = float(value), max(time.monotonic() - self.started, 1e-9) / 60
        best, self.best = self.best, value if self.best is None else max(self.best, value)
        if best is None or epoch == 0:
            return  # nothing to weigh it against, or the stage's first epoch
        gain = 100 * (value - best)
        if gain / minutes < self.min_gain:
            self.model.stop_training = True
            self.stopped = (f"stage '{self.stage}': epoch {epoch + 1} moved the best validation accuracy by "
                            f"{max(gain, 0.0):+.1f} points in {format_duration(60 * minutes)} "
                            f"({max(gain, 0.0) / minutes:.2f} per minute, below min_gain_per_minute "
                            f"{self.min_gain:g}), so the stage stops")

    def on_train_end(self, logs=None):
        if self.stopped:
            self.log(self.stopped)
