"""Seeded, stratified splits, few-shot sampling and class balancing on label arrays."""

from __future__ import annotations

import numpy as np

BALANCE_MODES = ("none", "class_weight", "oversample", "undersample")


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, carved) with about `fraction` of every class carved out.

    Deterministic for a seed; every class with at least two examples keeps at least one in each
    part, so small classes are never left out of validation or training.
    """
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n = int(round(fraction * len(members)))
        if len(members) >= 2:
            n = min(max(n, 1), len(members) - 1)
        carved.extend(members[:n])
        kept.extend(members[n:])
    return np.sort(np.asarray(kept, dtype=np.int64)), np.sort(np.asarray(carved, dtype=np.int64))


def few_shot(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Return sorted indices of `k` seeded examples per class (all of a class with fewer than k)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == cls))[:k] for cls in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def balance_indices(labels: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Resample indices so every class has as many examples as the largest ("oversample") or
    smallest ("undersample") class; "none" and "class_weight" return every index once."""
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {', '.join(BALANCE_MODES)}")
    indices = np.arange(len(labels))
    if mode in ("none", "class_weight"):
        return indices
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    target = counts.max() if mode == "oversample" else counts.min()
    out = []
    for cls in classes:
        members = indices[labels == cls]
        extra = rng.choice(members, size=target - len(members), replace=True) if target > len(members) else []
        out.extend(np.concatenate([members, extra]) if len(extra) else rng.permutation(members)[:target])
    return np.sort(np.asarray(out, dtype=np.int64))


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Return Keras `class_weight`: n_samples / (n_classes * count), as scikit-learn's "balanced"."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {i: float(len(labels) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}
