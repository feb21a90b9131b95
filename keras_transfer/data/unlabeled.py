"""Target-domain images without labels (`data.unlabeled`), for AdaBN, self-training and `suggest`.

Most users have far more images than labels. `data.unlabeled: SOURCE` names them:

- a folder of image files (`folder:PATH` or a path; flat, or in subfolders of any names that are
  not the labelled data's classes): truly unlabelled;
- a folder with class subfolders, or any other source (`plates_0_4`, `npz:PATH`, `csv:PATH`):
  its labels are ignored for training, and kept aside only to *score* pseudo-labels in
  experiments ("how many of the images self-training took were right").

`load_unlabeled` returns an `UnlabeledSet` whose pipeline carries a constant label of -1 for
every image: the source's labels never enter a tf.data pipeline, a feature cache key or a fit.
They live in `UnlabeledSet.known_labels`, which only `score` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from keras_transfer.config import DataConfig, source_kind
from keras_transfer.data.bundle import DataBundle, Examples
from keras_transfer.data.load import load_data
from keras_transfer.data.records import IMAGE_EXTENSIONS, Records, drop_bad_files

UNKNOWN = -1  # the label every unlabelled image carries through the pipeline


@dataclass
class UnlabeledSet:
    """Unlabelled images as a one-split `DataBundle` (labels all -1) plus, held apart, the labels a
    labelled source came with (in the labelled data's class order; -1 where unknown)."""

    source: str
    bundle: DataBundle
    known_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.bundle.splits["train"])

    @property
    def paths(self) -> list[str] | None:
        """The image files, in pipeline order (None for an array source)."""
        return self.bundle.splits["train"].paths

    @property
    def images(self) -> np.ndarray | None:
        """The uint8 pixels of an array source (None for files)."""
        return self.bundle.splits["train"].images

    def dataset(self, batch_size: int | None = None):
        """Batches of (float32 pixels, -1 labels) in a fixed order, never augmented."""
        return self.bundle.dataset("train", training=False, batch_size=batch_size)

    def score(self, indices: np.ndarray, predicted: np.ndarray) -> int | None:
        """How many of `predicted` (class indices for the images at `indices`) match the source's own
        labels; None when the source has none. For reports only, never for training."""
        if self.known_labels is None:
            return None
        truth = self.known_labels[np.asarray(indices, dtype=np.int64)]
        return int(np.sum((truth == np.asarray(predicted)) & (truth != UNKNOWN)))


def load_unlabeled(config: DataConfig, class_names: list[str] | None = None) -> UnlabeledSet:
    """Load `config.unlabeled` at the labelled data's image size; `class_names` (the labelled data's)
    map a labelled source's labels by name for scoring. Raises ValueError naming data.unlabeled when
    it holds no readable image."""
    if config.unlabeled is None:
        raise ValueError("data.unlabeled is not set: name a folder of unlabelled target images")
    kind, argument = source_kind(config.unlabeled, key="data.unlabeled")
    plain = replace(config, source=config.unlabeled if kind != "folder" else config.source, unlabeled=None,
                    val_split=0.0, test_split=0.0, few_shot=None, balance="none", augment=())
    if kind == "folder" and _is_flat(Path(argument).expanduser(), class_names):
        split, skipped = _flat_folder(Path(argument).expanduser(), config)
        known = None
    else:
        try:
            labelled = load_data(replace(plain, source=config.unlabeled))
        except ValueError as error:
            raise ValueError(f"data.unlabeled: {error}") from None
        raw = labelled.splits["train"]
        known = _relabel(raw.labels, labelled.class_names, class_names)
        split = Examples(np.full(len(raw), UNKNOWN, dtype=np.int64), paths=raw.paths, images=raw.images)
        skipped = labelled.skipped
    if not len(split):
        raise ValueError(f"data.unlabeled: {config.unlabeled} holds no readable image")
    bundle = DataBundle(replace(plain, source=config.unlabeled), list(class_names or ["?"]), "multiclass",
                        {"train": split}, skipped)
    return UnlabeledSet(config.unlabeled, bundle, known)


def _is_flat(folder: Path, class_names: list[str] | None) -> bool:
    """A folder is unlabelled unless it has subfolders named like the labelled data's classes."""
    if not folder.is_dir():
        raise ValueError(f"data.unlabeled: {folder} is not a folder")
    children = {child.name for child in folder.iterdir() if child.is_dir()}
    return not children or (class_names is not None and not children & set(class_names))


def _flat_folder(folder: Path, config: DataConfig) -> tuple[Examples, list]:
    paths = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    records, skipped = drop_bad_files(Records(paths, [()] * len(paths)), max_pixels=config.max_pixels)
    return Examples(np.full(len(records), UNKNOWN, dtype=np.int64), paths=records.paths), skipped


def _relabel(labels: np.ndarray, names: list[str], target_names: list[str] | None) -> np.ndarray:
    """`labels` (indices into `names`) as indices into `target_names`, -1 for names not there."""
    if target_names is None:
        return np.asarray(labels, dtype=np.int64).copy()
    index = {name: i for i, name in enumerate(target_names)}
    lookup = np.array([index.get(name, UNKNOWN) for name in names], dtype=np.int64)
    return lookup[np.asarray(labels, dtype=np.int64)]


def describe(unlabeled: UnlabeledSet) -> str:
    """One line for the run log: the source, the count, whether labels are kept aside for scoring."""
    aside = ("; its own labels are kept aside to score pseudo-labels, never trained on"
             if unlabeled.known_labels is not None and (unlabeled.known_labels != UNKNOWN).any() else "")
    return f"unlabelled: {unlabeled.source}, {len(unlabeled):,} images{aside}"

