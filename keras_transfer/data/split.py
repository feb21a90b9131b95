"""Seeded, stratified splits, few-shot sampling and class balancing; `split_examples` applies them
to a source's examples and returns the `DataBundle`."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_transfer.config import BALANCE_MODES, DataConfig
from keras_transfer.data.bundle import DataBundle, Examples
from keras_transfer.data.health import (auto_balance, class_balance, content_digests, describe_duplicates,
                                        duplicate_groups, group_ids)
from keras_transfer.data.records import Skipped


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


def split_examples(config: DataConfig, splits: dict[str, Examples], names: list[str], labels: str,
                   skipped: list[Skipped], excluded: list[str] | None = None) -> DataBundle:
    """A source's examples as a bundle: test and validation carved from train where the source has
    no such split (stratified, copies of one image kept in one split; seeded random for regression),
    few-shot sampling, class balancing, and the data's health (duplicates, balance, exclusions).

    `labels` says what the examples' labels are: "multiclass" (one class index per image),
    "multilabel" (multi-hot rows) or "regression" (float32 targets); it is the bundle's task
    until `load_data` resolves it against `model.task`.
    """
    if labels == "regression":
        return _regression_splits(config, splits, names, skipped)
    if len(names) < 2:
        raise ValueError(f"{config.source} has {len(names)} class{'es' if len(names) != 1 else ''} "
                         f"({', '.join(names) or 'none'}); a classifier needs at least two")
    train = splits["train"]
    strata = train.labels.argmax(axis=1) if train.labels.ndim == 2 else train.labels
    present = train.labels.sum(axis=0) if train.labels.ndim == 2 else np.bincount(strata, minlength=len(names))
    if (present == 0).any():
        missing = [n for n, c in zip(names, present) if c == 0]
        raise ValueError(f"class {missing[0]!r} has no readable training images in {config.source}")
    seed = config.seed
    health = _health(splits, names, strata, excluded or [])
    removed = 0.0  # fractions are shares of all the data, so later carves are scaled up
    given_val = "val" in splits and "test" not in splits
    if given_val:
        print(f"data: {config.source} has its own validation split and no test split: every training image "
              "trains, and the validation score is the held-out one")
    for name, fraction, salt in (("test", config.test_split, 1), ("val", config.val_split, 2)):
        if name in splits or fraction == 0 or (name == "test" and given_val):
            continue
        kept, carved = stratified_split(strata, fraction / (1.0 - removed), seed + salt, group_ids(train.digests))
        removed += fraction
        splits[name] = train.subset(carved)
        train, strata = train.subset(kept), strata[kept]
    if config.few_shot:
        chosen = few_shot(strata, config.few_shot, seed + 3)
        train, strata = train.subset(chosen), strata[chosen]
    balance = config.balance
    if balance == "auto":
        balance = auto_balance(strata, len(names)) if labels == "multiclass" else "none"
    if labels == "multiclass":
        resampled = balance_indices(strata, balance, seed + 4)
        train = train.subset(resampled)
    splits["train"] = train
    weights = class_weights(train.labels, len(names)) if balance == "class_weight" and labels == "multiclass" else None
    health["balance_applied"] = balance
    ordered = {k: splits[k] for k in ("train", "val", "test") if k in splits}
    return DataBundle(config, names, labels, ordered, skipped, weights, balance, health)


def _health(splits: dict[str, Examples], names: list[str], strata: np.ndarray, excluded: list[str]) -> dict[str, Any]:
    """Exact duplicates (within a class, across classes, across given splits) and the training data's
    class balance, before any split is carved; hashes every example once (kept for the carving)."""
    digests, files, labels, where = [], [], [], []
    for split_name, split in splits.items():
        if split.digests is None:
            split.digests = content_digests(split.paths, split.images)
        digests += split.digests
        files += split.paths or [f"{split_name}[{i}]" for i in range(len(split))]
        labels += [_label_text(label, names) for label in split.labels]
        where += [split_name] * len(split)
    groups = describe_duplicates(duplicate_groups(digests), files, labels, where)
    return {"duplicates": groups, "balance": class_balance(strata, names), "excluded": excluded}


def _label_text(label, names: list[str]) -> str:
    if np.ndim(label):
        return "|".join(n for n, v in zip(names, label) if v)
    return names[int(label)]


def _regression_splits(config: DataConfig, splits: dict[str, Examples], names: list[str],
                       skipped: list[Skipped]) -> DataBundle:
    """Seeded random val/test splits of regression data: stratifying needs classes, targets have none."""
    if config.few_shot:
        raise ValueError(f"data.few_shot keeps k images per class, and {config.source} holds regression targets "
                         "(no classes); drop data.few_shot")
    if config.balance not in ("none", "auto"):
        raise ValueError(f"data.balance: {config.balance} balances classes, and {config.source} holds regression "
                         "targets (no classes); use data.balance: none")
    train = splits["train"]
    if len(train) < 2:
        raise ValueError(f"{config.source} has {len(train)} readable image(s); regression needs at least two")
    removed = 0.0
    for name, fraction, salt in (("test", config.test_split, 1), ("val", config.val_split, 2)):
        if name in splits or fraction == 0:
            continue
        # One stratum holding everything: stratified_split is then a seeded random split.
        kept, carved = stratified_split(np.zeros(len(train), dtype=np.int64), fraction / (1.0 - removed),
                                        config.seed + salt)
        removed += fraction
        splits[name] = train.subset(carved)
        train = train.subset(kept)
    splits["train"] = train
    ordered = {k: splits[k] for k in ("train", "val", "test") if k in splits}
    return DataBundle(config, names, "regression", ordered, skipped, None)
