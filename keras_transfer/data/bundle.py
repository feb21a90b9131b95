"""The loaded data: each split's examples, the `DataBundle` that holds them, and the task.

Every loader (`keras_transfer.data.load`) ends in a `DataBundle`; `resolve_task` turns what its
labels are into the run's task, once, and everything after loading reads `DataBundle.task`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from keras_transfer.config import DataConfig
from keras_transfer.core.names import printable, unknown_name_message
from keras_transfer.data.augment import augmentation_model
from keras_transfer.data.pipeline import split_dataset
from keras_transfer.data.records import Skipped

# Tasks whose labels are one class index per image.
SINGLE_LABEL = ("multiclass", "binary")


def resolve_task(labels: str, requested: str | None, class_names: list[str], source: str) -> str:
    """The task of data whose `labels` are "multiclass" (one class per image), "multilabel" (several)
    or "regression" (numeric targets), for the configured `requested` task (`model.task`, or None).

    The data decides multilabel and regression; one class per image is a multiclass task, or binary
    when asked for and there are two classes. Asking for what the data cannot give raises ValueError.
    """
    if labels in ("multilabel", "regression"):
        return labels
    if requested == "binary":
        if len(class_names) != 2:
            raise ValueError(f"model.task: binary has one sigmoid output for two classes, and {source} has "
                             f"{len(class_names)} ({printable(', '.join(class_names[:5]))}"
                             f"{', ...' if len(class_names) > 5 else ''}); use model.task: multiclass")
        return "binary"
    if requested == "regression":
        raise ValueError(f"model.task: regression needs a numeric target per image, and {source} has class names")
    if requested == "multilabel":
        raise ValueError(f"model.task: multilabel needs images with several labels, and {source} has one class "
                         "per image (several labels per image come from a CSV whose labels read like a|b); use "
                         "model.task: multiclass")
    return "multiclass"


@dataclass
class Examples:
    """One split's examples: file paths or pixel arrays, with integer (or multi-hot) labels, or float32 targets."""

    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None
    tfds: Any = None
    digests: list[str] | None = None  # content hashes, so copies of one image stay in one split

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> "Examples":
        return Examples(
            self.labels[indices],
            [self.paths[i] for i in indices] if self.paths is not None else None,
            self.images[indices] if self.images is not None else None,
            digests=[self.digests[i] for i in indices] if self.digests is not None else None,
        )


class DataChangedError(ValueError):
    """An image file vanished or changed between the start-up check and its reading in training."""


@dataclass
class DataBundle:
    """The loaded data: per-split pipelines on demand, class names, counts and the data report.

    `task` is the run's task, resolved once when the data loads (`resolve_task`): what the data
    holds decides multilabel and regression, the configured `model.task` multiclass or binary.
    With `task == "regression"` the labels are float32 targets and `class_names` holds the one
    target's name (the CSV column, or "target"), so `num_classes` is the head's one output.
    """

    config: DataConfig
    class_names: list[str]
    task: str
    splits: dict[str, Examples]
    skipped: list[Skipped] = field(default_factory=list)
    class_weight: dict[int, float] | None = None
    balance: str = "none"  # what `data.balance` came to (auto resolved to class_weight or none)
    health: dict[str, Any] = field(default_factory=dict)  # data.health: duplicates, balance, exclusions

    @property
    def num_classes(self) -> int:
        """Outputs of the head: the classes, or 1 for a regression's one target (its name in `class_names`)."""
        return len(self.class_names)

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per class in each split (after few-shot sampling and balancing); for regression, per target."""
        out = {}
        for name, split in self.splits.items():
            if split.tfds is not None:
                continue  # a TFDS split is streamed, never counted up front
            if self.task == "regression":
                out[name] = {self.class_names[0]: len(split)}
                continue
            totals = split.labels.sum(axis=0) if split.labels.ndim == 2 else np.bincount(split.labels, minlength=self.num_classes)
            out[name] = {cls: int(n) for cls, n in zip(self.class_names, totals)}
        return out

    def images_in(self, *splits: str) -> int | None:
        """How many examples `splits` hold together (a frozen pass's size); None when one is streamed (TFDS)."""
        sizes = [None if self.splits[split].tfds is not None else len(self.splits[split]) for split in splits]
        return None if None in sizes else sum(sizes)

    def examples_per_class(self, split: str = "train") -> float | None:
        """The median number of examples per class in `split`; None when it is not counted (streamed)."""
        counts = self.counts().get(split)
        return float(np.median(list(counts.values()))) if counts else None

    def target_stats(self) -> dict[str, dict[str, float]]:
        """Per split, the regression target's mean, standard deviation, min and max (empty for classes)."""
        if self.task != "regression":
            return {}
        return {name: {"mean": float(split.labels.mean()), "std": float(split.labels.std()),
                       "min": float(split.labels.min()), "max": float(split.labels.max())}
                for name, split in self.splits.items() if len(split)}

    def augmentation(self):
        """The augmentation as a `keras.Sequential` to put inside the model (`augment_in: model`), else None."""
        if self.config.augment_in != "model":
            return None
        return augmentation_model(self.config.augment, self.config.seed)

    def dataset(self, split: str, *, training: bool | None = None, batch_size: int | None = None):
        """Return the batched `tf.data.Dataset` of `split` ("train", "val" or "test").

        `training` (default: split == "train") shuffles with the seed and applies tf.data
        augmentation; validation and test data are never augmented or shuffled. Decoded pixels
        are cached (memory or disk, by `cache`) before shuffling, so files are read once.
        """
        if split not in self.splits:
            raise ValueError(unknown_name_message("split", split, list(self.splits)))
        training = split == "train" if training is None else training
        in_memory = sum(len(s) for s in self.splits.values() if s.tfds is None)  # all splits share the budget
        return split_dataset(self.splits[split], self.config, split, training=training,
                             batch_size=batch_size or self.config.batch_size, in_memory=in_memory)

    @contextmanager
    def reading(self):
        """Turn a file that vanished or changed after the pre-scan into one line naming it.

        The pre-scan decodes every file before training; one deleted or rewritten later made
        TensorFlow fail deep inside `fit` with a traceback. Inside this block that becomes a
        `DataChangedError` (a ValueError) naming the file, when TensorFlow's message does.
        """
        import tensorflow as tf

        files = any(split.paths is not None for split in self.splits.values())
        try:
            yield
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                tf.errors.PermissionDeniedError) as error:
            message = str(error.message)
            path = self._path_in(message) if files else None
            decoding = isinstance(error, tf.errors.InvalidArgumentError) and "Decode" in message
            if path is None and not (files and decoding):
                raise  # not about our files: a model or shape error keeps its own message
            what = ("was deleted or moved" if isinstance(error, tf.errors.NotFoundError)
                    else "can no longer be read" if isinstance(error, tf.errors.PermissionDeniedError)
                    else "no longer decodes (rewritten or truncated)")
            raise DataChangedError(f"{path or 'an image file'}: {what} since the data was checked at start-up; "
                                   "restore it, or run again to check the files anew") from None

    def _path_in(self, message: str) -> str | None:
        for split in self.splits.values():
            for path in split.paths or ():
                if path in message:
                    return path
        return None

    def report(self) -> dict[str, Any]:
        """The data report: source, classes, counts per split, and every skipped file with its reason."""
        return {
            "source": self.config.source,
            "image_size": list(self.config.image_size),
            "task": self.task,
            "class_names": self.class_names,
            "counts": self.counts(),
            "skipped": [asdict(s) for s in self.skipped],
            "class_weight": self.class_weight,
            "balance": self.balance,
            **({"targets": self.target_stats()} if self.task == "regression" else {}),
        }

    def write_report(self, path: str | os.PathLike) -> None:
        """Write `report()` as JSON to `path`."""
        from keras_transfer.core.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.report(), indent=2))
