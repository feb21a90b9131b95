"""`load_data`: any source to a `DataBundle`, with the run's task resolved once.

The sources: an embedded dataset, arrays or an `.npz` (`keras_transfer.data.arrays`), TFDS
(`keras_transfer.data.tfds`), and image files, from class folders or a CSV (here: bad files
dropped and reported, with the pre-scan's manifest). Every source's examples are then carved into
splits (`keras_transfer.data.split.split_examples`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_transfer.config import DataConfig, source_kind
from keras_transfer.data.arrays import from_arrays, from_npz
from keras_transfer.data.bundle import DataBundle, Examples, resolve_task
from keras_transfer.data.cache import cache_folder
from keras_transfer.data.embedded import load_embedded
from keras_transfer.data.health import leave_out
from keras_transfer.data.manifest import ScanManifest
from keras_transfer.data.records import Records, Skipped, csv_records, drop_bad_files, folder_records
from keras_transfer.data.split import split_examples
from keras_transfer.data.tfds import from_tfds


def load_data(config: DataConfig, *, x: np.ndarray | None = None, y: np.ndarray | None = None,
              class_names: list[str] | None = None, task: str | None = None) -> DataBundle:
    """Load `config.source` (or the arrays `x`, `y`) into a `DataBundle` of train/val/test splits.

    Arrays: images uint8 in [0, 255] or float in [0, 255], shaped [N, H, W, 3], [N, H, W, 1] or
    [N, H, W] (grey becomes RGB); labels integers 0..C-1 or strings (classes sorted by name), or
    floats: regression targets. A CSV's numeric `target` column (or `label` values with fractions)
    is regression too; `task="regression"` (`model.task`) makes integer labels targets as well,
    and is refused for sources that only have class names. Errors name the file, folder or key
    that is wrong and what was expected.

    The bundle's `task` is the run's, resolved here once (`resolve_task`): the data's multilabel or
    regression, else `task` (`model.task`: multiclass or binary; multiclass when None).
    """
    bundle = _load(config, x, y, class_names, regression=task == "regression")
    bundle.task = resolve_task(bundle.task, task, bundle.class_names, "arrays x, y" if x is not None else config.source)
    return bundle


def _load(config: DataConfig, x, y, class_names, *, regression: bool) -> DataBundle:
    """The bundle of `config.source` (or the arrays), its task saying what its labels are."""
    if config.exclude and (x is not None or source_kind(config.source)[0] not in ("folder", "csv")):
        raise ValueError(f"data.exclude lists image files, and data.source {config.source} holds no files "
                         "(it works with folder: and csv: sources)")
    if x is not None:
        return from_arrays(config, x, y, class_names, regression=regression)
    kind, argument = source_kind(config.source)
    if regression and kind in ("embedded", "tfds", "folder"):
        raise ValueError(f"model.task: regression needs a numeric target per image, and data.source {config.source} "
                         "has only class names; give a CSV with a 'path,target' header or an .npz whose y is float")
    if kind == "embedded":
        data = load_embedded(argument, config.image_size)
        return split_examples(config, {"train": Examples(data.labels, images=data.images)},
                              list(data.class_names), "multiclass", [])
    if kind == "npz":
        return from_npz(config, Path(argument), regression)
    if kind == "tfds":
        return from_tfds(config, argument)
    if kind == "folder":
        by_split, empty = folder_records(Path(argument))
        if empty:
            raise ValueError(f"empty class folder {empty[0]}: every class folder needs at least one image "
                             "(.jpg, .jpeg, .png, .bmp or .gif)")
    else:
        by_split = {"train": csv_records(Path(argument), config.csv_root, regression=regression)}
    return _from_records(config, by_split, Path(argument))


def _from_records(config: DataConfig, by_split: dict[str, Records], source: Path) -> DataBundle:
    from keras_transfer.core.progress import MIN_FILES

    skipped: list[Skipped] = []
    excluded: list[str] = []
    if config.exclude:
        by_split, excluded = leave_out(by_split, config.exclude, source if source.is_dir() else source.parent)
    clean = {}
    manifest = ScanManifest.open(cache_folder(config), source, config.max_pixels)
    for split, records in by_split.items():
        clean[split], bad = drop_bad_files(records, max_pixels=config.max_pixels, manifest=manifest)
        skipped.extend(bad)
    manifest.save()
    if manifest.rechecked + manifest.reused >= MIN_FILES:  # small data stays quiet, as the progress bar does
        print(f"checked {manifest.rechecked:,} new or changed files, {manifest.reused:,} from the manifest "
              f"({manifest.store})")
    train = clean["train"]
    if train.targets is not None:
        targets = np.asarray(train.targets, dtype=np.float32)
        return split_examples(config, {"train": Examples(targets, paths=train.paths)}, [train.target_name],
                              "regression", skipped, excluded)
    multilabel = any(len(labels) > 1 for records in clean.values() for labels in records.labels)
    names = sorted({label for labels in clean["train"].labels for label in labels})
    for split, records in clean.items():
        unknown = sorted({l for labels in records.labels for l in labels} - set(names))
        if unknown:
            where = Path(records.paths[0]).parent.parent if records.paths else split
            raise ValueError(f"label {unknown[0]!r} in the {split} split ({where}) does not occur in train; "
                             f"train has: {', '.join(names)}")
    index = {name: i for i, name in enumerate(names)}
    splits = {}
    for split, records in clean.items():
        if multilabel:
            labels = np.zeros((len(records), len(names)), dtype=np.float32)
            for row, row_labels in enumerate(records.labels):
                labels[row, [index[l] for l in row_labels]] = 1.0
        else:
            labels = np.array([index[l[0]] for l in records.labels], dtype=np.int64)
        splits[split] = Examples(labels, paths=records.paths)
    return split_examples(config, splits, names, "multilabel" if multilabel else "multiclass", skipped, excluded)
