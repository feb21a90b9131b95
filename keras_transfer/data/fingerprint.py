"""The split a run started with, recorded in its folder, so `--resume` and `evaluate` see the same data.

A run splits its data once, at its start, by its seed. Redone on `--resume`, the split moved
whenever the data or the config had changed in between: with six photos added, three of the six
test images had been training images and the run reported test accuracy 1.0; with a class
folder added, the run rewrote its `labels.txt` with four names for a three-output model. So a
run records its split in `split.json`: the settings that decide it, the class names, and each
split's files with their labels (paths relative to the data folder or CSV), or, for arrays
(embedded sets, `.npz`), a digest of each split's pixels and labels.

`recorded_data` rebuilds the data from that record. It refuses, in one line and before anything
is written, a config whose split settings were edited and a record whose files are gone or whose
arrays changed; files and classes added since are left out, and said so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from keras_transfer.config import DataConfig, source_kind
from keras_transfer.data.bundle import SINGLE_LABEL, DataBundle, Examples, resolve_task
from keras_transfer.data.load import load_data
from keras_transfer.data.records import Skipped
from keras_transfer.data.split import class_weights

RECORD_VERSION = 1
# Settings that only change speed or augmentation; every other data setting decides which images
# a run sees, in which split, at which size.
_FREE = ("batch_size", "cache", "cache_dir", "download", "augment", "augment_in")
# Where the data lives may change (a moved folder): recorded files are found relative to it, and
# arrays are compared by digest, so the source itself is recorded but not required to match.
_MOVABLE = ("source",)


def split_settings(config: DataConfig) -> dict[str, Any]:
    """The data settings that decide a run's examples and split, as plain JSON values."""
    return json.loads(json.dumps({k: v for k, v in dataclasses.asdict(config).items() if k not in _FREE}))


def split_record(bundle: DataBundle) -> dict[str, Any]:
    """What `split.json` holds for `bundle`: settings, task, class names, skipped files and each split."""
    base = _base(bundle.config)
    splits = {}
    for name, split in bundle.splits.items():
        if split.tfds is not None:
            splits[name] = {"streamed": True}  # TFDS decides its own splits by name
        elif split.paths is not None:
            splits[name] = {"paths": [os.path.relpath(p, base) for p in split.paths], "labels": split.labels.tolist()}
        else:
            splits[name] = {"examples": len(split), "digest": _digest(split)}
    return {"version": RECORD_VERSION, "settings": split_settings(bundle.config), "task": bundle.task,
            "class_names": list(bundle.class_names), "skipped": [dataclasses.asdict(s) for s in bundle.skipped],
            "splits": splits}


def write_split_record(bundle: DataBundle, path: str | os.PathLike) -> None:
    """Write `split_record(bundle)` to `path` (atomic)."""
    from keras_transfer.core.files import atomic_write_text

    atomic_write_text(path, json.dumps(split_record(bundle), separators=(",", ":")))


def read_split_record(path: str | os.PathLike) -> dict[str, Any]:
    """The record in `path`, or a one-line ValueError when it is damaged."""
    try:
        record = json.loads(Path(path).read_bytes())
        if record.get("version") != RECORD_VERSION or not isinstance(record.get("splits"), dict):
            raise ValueError("unknown layout")
        return record
    except (OSError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} is damaged ({error}); the run's split is unknown: start a new run "
                         "in a new --output-dir") from None


def recorded_data(config: DataConfig, path: str | os.PathLike, *, task: str | None = None,
                  log: Callable[[str], None] = print) -> DataBundle:
    """The data of the run whose `split.json` is `path`, with `config` (the run's config.yaml's data).

    Files recorded are used as recorded: no scan, no split. Raises ValueError, before anything
    is written, when a split setting differs from the record, a recorded file is gone, or
    (arrays, TFDS) the data loaded again differs from the record.
    """
    record = read_split_record(path)
    now = split_settings(config)
    for key, then in record["settings"].items():
        if now.get(key) != then and key not in _MOVABLE:
            raise ValueError(f"data.{key} is {now.get(key)!r} in the run's config.yaml but the run started with "
                             f"{then!r}; a resumed run keeps the split it started with: put data.{key} back, "
                             "or start a new run in a new --output-dir")
    # Numeric targets make a regression run whatever model.task says (load_data infers it), so only
    # a config that now asks for regression on a run that started on classes is a contradiction.
    if task == "regression" and record["task"] != "regression":
        raise ValueError(f"model.task is {task!r} in the run's config.yaml but the run started on "
                         f"{record['task']} data; put model.task back, or start a new run in a new --output-dir")
    entries = record["splits"]
    if not all("paths" in entry for entry in entries.values()):
        return _reloaded(config, record, task, path)
    base = _base(config)
    splits, missing, kept = {}, [], set()
    labels = "multiclass" if record["task"] in SINGLE_LABEL else record["task"]  # what the labels are
    dtype = np.int64 if labels == "multiclass" else np.float32
    for name, entry in entries.items():
        paths = [os.path.join(base, p) for p in entry["paths"]]
        missing.extend(p for p in paths if not os.path.isfile(p))
        kept.update(paths)
        splits[name] = Examples(np.asarray(entry["labels"], dtype=dtype), paths=paths)
    if missing:
        raise ValueError(f"{len(set(missing))} image(s) of the split this run started with are gone (first: "
                         f"{missing[0]}); put them back to resume, or start a new run in a new --output-dir")
    names = list(record["class_names"])
    _say_what_is_new(config, names, kept, record, log)
    weights = None
    if config.balance == "class_weight" and labels == "multiclass":
        weights = class_weights(splits["train"].labels, len(names))
    skipped = [Skipped(s["path"], s["reason"]) for s in record.get("skipped", [])]
    return DataBundle(config, names, resolve_task(labels, task, names, config.source), splits, skipped, weights)


def check_run_classes(labels: Path, bundle: DataBundle) -> None:
    """For a run from before split.json: refuse to resume on data whose classes differ from its `labels.txt`."""
    from keras_transfer.core.names import printable
    from keras_transfer.core.files import read_labels

    if labels.is_file() and read_labels(labels) != bundle.class_names:
        raise ValueError(f"the classes of {bundle.config.source} ({printable(', '.join(bundle.class_names))}) "
                         f"differ from the run's {labels}; a resumed run must train on the classes it started "
                         "with: restore the data, or start a new run in a new --output-dir")


def _reloaded(config: DataConfig, record: dict[str, Any], task: str | None, path) -> DataBundle:
    """Arrays and TFDS: load again, and refuse unless the examples match the record."""
    bundle = load_data(config, task=task)
    fresh = split_record(bundle)
    if fresh["class_names"] != record["class_names"] or fresh["splits"] != record["splits"]:
        what = ("its classes" if fresh["class_names"] != record["class_names"] else "the examples of its splits")
        raise ValueError(f"the data of {config.source} changed since the run started ({what} differ from {path}); "
                         "a resumed run must train on the data it started with: restore it, or start a new run "
                         "in a new --output-dir")
    return bundle


def _say_what_is_new(config: DataConfig, names: list[str], kept: set[str], record, log) -> None:
    """Log the files and classes of a data folder that the run does not use because they are new."""
    from keras_transfer.data.records import folder_records

    kind, argument = source_kind(config.source)
    if kind != "folder":
        return
    try:
        by_split, _ = folder_records(Path(argument))
    except ValueError:
        return
    known = kept | {os.path.abspath(s["path"]) for s in record.get("skipped", [])}
    new = [p for records in by_split.values() for p in records.paths if os.path.abspath(p) not in known]
    classes = sorted({label for records in by_split.values() for labels in records.labels for label in labels}
                     - set(names))
    if new or classes:
        from keras_transfer.core.names import printable

        extra = f", in new class folder(s) {printable(', '.join(classes))}" if classes else ""
        log(f"{len(new)} image(s) added to {config.source} since the run started{extra} are not used: the run "
            "keeps the split it started with (start a new run to train on them)")


def _base(config: DataConfig) -> str:
    """The folder recorded paths are relative to: the data folder, or the CSV's folder."""
    kind, argument = source_kind(config.source)
    where = Path(argument).expanduser()
    return os.path.abspath(where if kind == "folder" else where.parent)


def _digest(split: Examples) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in (split.labels, split.images):
        array = np.ascontiguousarray(array)
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(array)
    return digest.hexdigest()
