"""The 1000 ImageNet-1k class names, shipped with the package, and an offline `decode_predictions`."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """Return (WordNet id, human-readable name) for the 1000 ImageNet classes, in class-index order.

    Generated from files tensorflow-datasets installs (scripts/make_imagenet_classes.py), so no
    download is needed, unlike Keras's own `decode_predictions`.
    """
    text = resources.files("keras_transfer.backbones").joinpath("data/imagenet_classes.txt").read_text()
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line)
    if len(rows) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(rows)} classes, expected 1000: reinstall keras_transfer")
    return rows


def decode_predictions(probabilities, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Return the `top` (WordNet id, name, probability) triples for each row of a [N, 1000] batch."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects shape (N, 1000), got {probabilities.shape}")
    classes = imagenet_classes()
    order = np.argsort(-probabilities, axis=1)[:, :top]
    return [[(*classes[i], float(row[i])) for i in idx] for row, idx in zip(probabilities, order)]
