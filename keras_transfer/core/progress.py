"""Progress for the long phases that print nothing otherwise (decoding files, extracting features).

A `keras.utils.Progbar`, the bar `fit` draws, so every phase of a run looks alike, and, where the
caller logs, one line from the phase's first items saying how long the rest will take
(`keras_transfer.core.timing.Eta`). Short phases get neither: a bar that flashes past for a few
items is noise, and small test data stays quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Callable, TypeVar

from keras_transfer.core.timing import Eta

T = TypeVar("T")

# Below this many items (files, or batches of 32 images) a phase takes a couple of seconds at most.
MIN_FILES = 500
MIN_BATCHES = 20


def with_progress(items: Iterable[T], total: int | None, unit: str, *, at_least: int,
                  eta: Callable[[str], None] | None = None, phase: str = "") -> Iterator[T]:
    """Yield `items`, drawing a progress bar of `total` `unit`s when there are at least `at_least`.

    `total` None or negative (a stream of unknown length, e.g. `tf.data` cardinality -2) shows no bar.
    With `eta` (a log function) such a phase also logs, once, how long it has left, named `phase`.
    """
    if total is None or total < at_least:
        yield from items
        return
    import sys

    import keras

    # Redrawn in place on a terminal; in a log file, one line at the end (as `fit` does there).
    bar = keras.utils.Progbar(total, unit_name=unit, verbose=1 if sys.stdout.isatty() else 2)
    clock = Eta(phase or unit, total, unit, eta) if eta is not None else None
    for done, item in enumerate(items, 1):
        yield item
        bar.update(done)
        if clock is not None:
            clock.step(done)


def batches_of(dataset) -> int | None:
    """The number of batches in a `tf.data` dataset, or None when it is not known."""
    count = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    return count if count >= 0 else None
