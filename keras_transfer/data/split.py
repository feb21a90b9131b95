"""Seeded, stratified splits, few-shot sampling and class balancing on label arrays."""

from __future__ import annotations

import numpy as np

from keras_transfer.config import BALANCE_MODES


def stratified_split(labels: np.ndarray, fraction: float, seed: int,
                     groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, carved) with about `fraction` of every class carved out.

    Deterministic for a seed; every class with at least two examples keeps at least one in each
    part, so small classes are never left out of validation or training. `groups` (one integer per
    example, equal for copies of one image) keeps every group on one side: a duplicate is never
    scored against its own copy. A group goes with the class of its first member; without
    duplicates the split is the same as without `groups`.
    """
    rng = np.random.default_rng(seed)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    first = {}
    for i, g in enumerate(groups):
        first.setdefault(int(g), i)
    members_of: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members_of.setdefault(first[int(g)], []).append(i)
    heads = np.array(sorted(members_of), dtype=np.int64)  # one representative (the first member) per group
    kept, carved = [], []
    for cls in np.unique(labels):
        units = rng.permutation(heads[labels[heads] == cls])
        total = sum(len(members_of[int(u)]) for u in units)
        n = int(round(fraction * total))
        if total >= 2:
            n = min(max(n, 1), total - 1)
        taken = 0
        for unit in units:
            members = members_of[int(unit)]
            if taken < n:
                carved.extend(members)
                taken += len(members)
            else:
                kept.extend(members)
    return np.sort(np.asarray(kept, dtype=np.int64)), np.sort(np.asarray(carved, dtype=np.int64))


def few_shot(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Return sorted indices of `k` seeded examples per class (all of a class with fewer than k)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == cls))[:k] for cls in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def balance_indices(labels: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Resample indices so every class has as many examples as the largest ("oversample") or
    smallest ("undersample") class; "auto", "none" and "class_weight" return every index once."""
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {', '.join(BALANCE_MODES)}")
    indices = np.arange(len(labels))
    if mode in ("auto", "none", "class_weight"):
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
