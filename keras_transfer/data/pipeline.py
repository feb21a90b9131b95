"""From a data source to train / validation / test `tf.data` pipelines of raw RGB pixels.

`load_data(DataConfig(...))` reads any source (a folder, a CSV, TFDS, an `.npz`, arrays, or an
embedded dataset), drops and reports bad files, carves seeded stratified splits (random ones for
regression targets), applies few-shot sampling and class balancing, and returns a `DataBundle`
whose datasets yield `(float32 pixels in [0, 255] of shape [batch, H, W, 3], labels)`, which the
toolkit's models take directly. The `data:` section, `DataConfig`, is the config's.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_transfer.config import DataConfig, source_kind
from keras_transfer.core.names import unknown_name_message
from keras_transfer.data.augment import augment_statelessly, augmentation_layers, augmentation_model
from keras_transfer.data.cache import cache, cache_folder, cache_mode
from keras_transfer.data.manifest import ScanManifest
from keras_transfer.data.embedded import load_embedded
from keras_transfer.data.health import (auto_balance, class_balance, content_digests, describe_duplicates,
                                        duplicate_groups, group_ids, leave_out)
from keras_transfer.data.records import Records, Skipped, csv_records, drop_bad_files, folder_records
from keras_transfer.data.split import balance_indices, class_weights, few_shot, stratified_split
from keras_transfer.data.images import decode_image_tensor, on_white, resize_image

@dataclass
class _Split:
    """One split's examples: file paths or pixel arrays, with integer (or multi-hot) labels, or float32 targets."""

    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None
    tfds: Any = None
    digests: list[str] | None = None  # content hashes, so copies of one image stay in one split

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> "_Split":
        return _Split(
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

    With `task == "regression"` the labels are float32 targets and `class_names` holds the one
    target's name (the CSV column, or "target"), so `num_classes` is the head's one output.
    """

    config: DataConfig
    class_names: list[str]
    task: str
    splits: dict[str, _Split]
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
        import tensorflow as tf

        if split not in self.splits:
            raise ValueError(unknown_name_message("split", split, list(self.splits)))
        training = split == "train" if training is None else training
        cfg, examples = self.config, self.splits[split]
        in_memory = sum(len(s) for s in self.splits.values() if s.tfds is None)  # all splits share the budget
        cached = cache_mode(examples, cfg, in_memory) != "none"
        ds = _examples(examples)
        shuffled = training and examples.tfds is None
        if shuffled:
            # Shuffle the (cheap) paths or indices before decoding: a shuffle buffer of decoded
            # images would hold the whole set in memory and decode it all before the first batch.
            ds = ds.shuffle(len(examples), seed=cfg.seed, reshuffle_each_iteration=not cached)
        order = ("shuffled", cfg.seed) if shuffled else "in order"
        if examples.tfds is None and cache_mode(examples, cfg, in_memory) == "disk":
            # A disk cache holds pixels only; the labels always come from this scan, zipped back in
            # the same (unreshuffled) order. A cache file that says something else about the labels,
            # planted or stale, cannot pair an image with a wrong class.
            pixels = cache(_decode(ds, examples, cfg).map(lambda x, y: x), examples, cfg, split, order, in_memory)
            ds = tf.data.Dataset.zip((pixels, ds.map(lambda _, y: y)))
        else:
            ds = cache(_decode(ds, examples, cfg), examples, cfg, split, order, in_memory)
        if training and (cached or examples.tfds is not None):
            ds = ds.shuffle(min(len(examples) or 1024, 1024), seed=cfg.seed + 1, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size or cfg.batch_size)
        layers = augmentation_layers(cfg.augment, cfg.seed) if training and cfg.augment_in == "data" else []
        options = tf.data.Options()
        options.deterministic = True
        if not layers:
            ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
            return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
        # One key per batch from a seeded stream that starts anew, differently, on each pass
        # (epoch): the draws depend on (seed, epoch, batch), never on which thread ran first.
        keys = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True)

        def augment(batch, key):
            x, y = batch
            seed = tf.stack([key, tf.constant(cfg.seed, tf.int64)])
            return tf.clip_by_value(augment_statelessly(layers, tf.cast(x, tf.float32), seed), 0.0, 255.0), y

        # Without AutoGraph: it would rewrite the Keras layers' code on every trace (seconds).
        augment = tf.autograph.experimental.do_not_convert(augment)
        ds = tf.data.Dataset.zip((ds, keys)).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

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


def load_data(config: DataConfig, *, x: np.ndarray | None = None, y: np.ndarray | None = None,
              class_names: list[str] | None = None, task: str | None = None) -> DataBundle:
    """Load `config.source` (or the arrays `x`, `y`) into a `DataBundle` of train/val/test splits.

    Arrays: images uint8 in [0, 255] or float in [0, 255], shaped [N, H, W, 3], [N, H, W, 1] or
    [N, H, W] (grey becomes RGB); labels integers 0..C-1 or strings (classes sorted by name), or
    floats: regression targets. A CSV's numeric `target` column (or `label` values with fractions)
    is regression too; `task="regression"` (`model.task`) makes integer labels targets as well,
    and is refused for sources that only have class names. Errors name the file, folder or key
    that is wrong and what was expected.
    """
    regression = task == "regression"
    if config.exclude and (x is not None or source_kind(config.source)[0] not in ("folder", "csv")):
        raise ValueError(f"data.exclude lists image files, and data.source {config.source} holds no files "
                         "(it works with folder: and csv: sources)")
    if x is not None:
        images, labels, names = _arrays(x, y, class_names, where="arrays x, y", regression=regression)
        return _from_examples(config, {"train": _Split(labels, images=images)}, names, _array_task(labels), [])
    kind, argument = source_kind(config.source)
    if regression and kind in ("embedded", "tfds", "folder"):
        raise ValueError(f"model.task: regression needs a numeric target per image, and data.source {config.source} "
                         "has only class names; give a CSV with a 'path,target' header or an .npz whose y is float")
    if kind == "embedded":
        data = load_embedded(argument, config.image_size)
        return _from_examples(config, {"train": _Split(data.labels, images=data.images)},
                              list(data.class_names), "multiclass", [])
    if kind == "npz":
        return _from_npz(config, Path(argument), regression)
    if kind == "tfds":
        return _from_tfds(config, argument)
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
        return _from_examples(config, {"train": _Split(targets, paths=train.paths)}, [train.target_name],
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
        splits[split] = _Split(labels, paths=records.paths)
    return _from_examples(config, splits, names, "multilabel" if multilabel else "multiclass", skipped, excluded)


def _from_examples(config: DataConfig, splits: dict[str, _Split], names: list[str], task: str,
                   skipped: list[Skipped], excluded: list[str] | None = None) -> DataBundle:
    if task == "regression":
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
        balance = auto_balance(strata, len(names)) if task == "multiclass" else "none"
    if task == "multiclass":
        resampled = balance_indices(strata, balance, seed + 4)
        train = train.subset(resampled)
    splits["train"] = train
    weights = class_weights(train.labels, len(names)) if balance == "class_weight" and task == "multiclass" else None
    health["balance_applied"] = balance
    ordered = {k: splits[k] for k in ("train", "val", "test") if k in splits}
    return DataBundle(config, names, task, ordered, skipped, weights, balance, health)


def _health(splits: dict[str, _Split], names: list[str], strata: np.ndarray, excluded: list[str]) -> dict[str, Any]:
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


def _regression_splits(config: DataConfig, splits: dict[str, _Split], names: list[str],
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


def _array_task(labels: np.ndarray) -> str:
    return "regression" if labels.dtype == np.float32 else "multiclass"


def _arrays(x, y, class_names, *, where: str, regression: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Checked RGB images and labels: int64 class indices with class names, or, for float `y` (or
    `regression`), float32 targets [N] with the target's name ("target") as the one name."""
    x = np.asarray(x)
    if y is None:
        raise ValueError(f"{where}: labels y are required with images x")
    y = np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"{where}: images must be [N, H, W, 3], [N, H, W, 1] or [N, H, W]; got shape {x.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} images but {len(y)} labels")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{where}: images must be uint8 or float pixels, got dtype {x.dtype}")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 255:
            raise ValueError(f"{where}: pixels must be in [0, 255], got [{low:g}, {high:g}]")
        if high <= 1.0:
            raise ValueError(f"{where}: pixels look scaled to [0, 1] (max {high:g}); pass raw [0, 255] pixels "
                             "(multiply by 255): models carry their own preprocessing")
    if y.dtype.kind == "f" or regression:
        return x, _float_targets(y, where), ["target"]
    if y.dtype.kind in "USO":
        names = sorted({str(v) for v in y}) if class_names is None else list(class_names)
        index = {n: i for i, n in enumerate(names)}
        y = np.array([index[str(v)] for v in y], dtype=np.int64)
    else:
        y = y.astype(np.int64).reshape(-1)
        names = list(class_names) if class_names is not None else [str(i) for i in range(int(y.max()) + 1)]
        if y.min() < 0 or y.max() >= len(names):
            raise ValueError(f"{where}: labels must be integers in [0, {len(names) - 1}], got [{y.min()}, {y.max()}]")
    return x, y, names


def _float_targets(y: np.ndarray, where: str) -> np.ndarray:
    if y.dtype.kind in "USO":
        raise ValueError(f"{where}: model.task: regression needs numeric targets y; got text labels "
                         f"(e.g. {str(y.reshape(-1)[0])!r})")
    if y.ndim > 1 and (y.ndim > 2 or y.shape[1] != 1):
        raise ValueError(f"{where}: regression targets y must be one number per image, shape [N]; got {y.shape}")
    y = y.astype(np.float32).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        raise ValueError(f"{where}: y[{bad[0]}] is {y[bad[0]]}; every regression target must be a finite number "
                         f"({len(bad)} are not)")
    return y


def _from_npz(config: DataConfig, path: Path, regression: bool = False) -> DataBundle:
    if not path.is_file():
        raise ValueError(f"npz file {path} does not exist")
    with np.load(path, allow_pickle=False) as archive:  # never unpickle: an .npz can carry objects
        keys = set(archive.files)
        x_key = "x" if "x" in keys else "images" if "images" in keys else None
        y_key = "y" if "y" in keys else "labels" if "labels" in keys else None
        if x_key is None or y_key is None:
            raise ValueError(f"{path}: expected arrays 'x' and 'y' (or 'images' and 'labels'); found {sorted(keys)}")
        names = [str(n) for n in archive["class_names"]] if "class_names" in keys else None
        images, labels, names = _arrays(archive[x_key], archive[y_key], names, where=str(path), regression=regression)
    return _from_examples(config, {"train": _Split(labels, images=images)}, names, _array_task(labels), [])


def _from_tfds(config: DataConfig, name: str) -> DataBundle:
    import tensorflow_datasets as tfds

    if config.few_shot or config.balance in ("oversample", "undersample"):
        raise ValueError("data.few_shot and data.balance: oversample/undersample need a countable source; "
                         "for tfds use balance: class_weight, or export the examples to a folder")
    builder = tfds.builder(name, data_dir=config.data_dir)
    if config.download and not builder.is_prepared():
        _check_download_reachable(name, builder.data_dir)
    splits_available = set(builder.info.splits) if builder.info.splits else set()
    wanted = {"train": config.split}
    if "validation" in splits_available:
        wanted["val"] = "validation"
    if "test" in splits_available and config.split != "test":
        wanted["test"] = "test"
    if "val" not in wanted and config.val_split:
        v = int(round(config.val_split * 100))
        wanted["train"], wanted["val"] = f"{config.split}[{v}%:]", f"{config.split}[:{v}%]"
    loaded = tfds.load(name, split=list(wanted.values()), data_dir=config.data_dir, as_supervised=True,
                       download=config.download, with_info=False)
    label_feature = builder.info.features[builder.info.supervised_keys[1]]
    names = list(label_feature.names)
    splits = {key: _Split(np.zeros(0, dtype=np.int64), tfds=ds) for key, ds in zip(wanted, loaded)}
    return DataBundle(config, names, "multiclass", splits, [], None)


def _check_download_reachable(name: str, data_dir) -> None:
    """Fail in seconds, not after minutes of retries, when TFDS would have to download offline."""
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
    except OSError:
        raise ValueError(
            f"tfds:{name} is not prepared in {data_dir} and the download servers cannot be reached "
            "(no internet?). Prepare it once on a machine online (tfds build, or tfds.load) and copy the "
            "data_dir here, set data.download: false with data.data_dir pointing at it, or use "
            "folder:PATH with the images in class folders."
        ) from None


def _examples(split: _Split):
    """The split's undecoded examples: (path, label), (pixels, label) or a TFDS (image, label) stream."""
    import tensorflow as tf

    if split.tfds is not None:
        return split.tfds
    if split.paths is not None:
        return tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    return tf.data.Dataset.from_tensor_slices((split.images, split.labels))


def _decode(ds, split: _Split, config: DataConfig):
    """Map undecoded examples to (uint8 pixels at image_size, label), in parallel."""
    import tensorflow as tf

    size, policy = config.image_size, config.resize

    def resize(image):
        return tf.cast(tf.round(resize_image(image, size, policy)), tf.uint8)

    if split.tfds is not None:
        return ds.map(lambda x, y: (resize(_rgb(x)), y), num_parallel_calls=tf.data.AUTOTUNE)
    if split.paths is not None:
        def decode(path, label):  # the one decoder: alpha on white, EXIF orientation applied
            return resize(decode_image_tensor(tf.io.read_file(path))), label

        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if tuple(split.images.shape[1:3]) == tuple(size):
        return ds.map(lambda x, y: (tf.cast(x, tf.uint8), y))
    return ds.map(lambda x, y: (resize(x), y), num_parallel_calls=tf.data.AUTOTUNE)


def _rgb(image):
    """A TFDS image (grey, grey+alpha, RGB or RGBA) as RGB, transparent pixels on white."""
    image = on_white(image)
    image.set_shape([None, None, 3])
    return image
