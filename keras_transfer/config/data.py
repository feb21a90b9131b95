"""The `data:` section: what the model sees, checked on construction without reading any image.

This module owns the section's names and limits (source kinds, embedded datasets, augmentations
and their strengths, balance, resize and cache modes, the pixel limit); `keras_transfer.data`
imports them from here to load, decode and augment.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_transfer.core.constraints import Interval, OneOf, check_constraints
from keras_transfer.core.names import unknown_name_message

SOURCE_KINDS = ("folder", "csv", "tfds", "npz")
# The datasets shipped inside scikit-learn, scikit-image and matplotlib's fonts
# (`keras_transfer.data.embedded` holds their loaders, in this order).
EMBEDDED_DATASETS = ("digits", "digits_0_4", "digits_5_9", "faces", "plates_0_4", "letters")
MAX_IMAGE_SIDE = 4096  # data.image_size per side: one 4096x4096 RGB float batch of 32 is 6.4 GB already
# PIL's own default limit (Image.MAX_IMAGE_PIXELS): about 9500 x 9500, 268 MB of decoded RGB;
# images whose header declares more pixels are refused (decompression bombs).
DEFAULT_MAX_PIXELS = 89_478_485
AUGMENT_PLACES = ("data", "model")
BALANCE_MODES = ("auto", "none", "class_weight", "oversample", "undersample")
RESIZE_POLICIES = ("resize", "crop_to_aspect_ratio", "pad")
CACHE_MODES = ("auto", "memory", "disk", "none")
# Augmentation name -> default strength (the Keras layers' own factors; flip has none).
DEFAULT_STRENGTH = {"flip": None, "rotation": 0.1, "zoom": 0.1, "translation": 0.1, "contrast": 0.2, "brightness": 0.2}
AUGMENTATIONS = tuple(DEFAULT_STRENGTH)
# The ranges Keras's RandomContrast and RandomBrightness accept for their factor.
STRENGTH_RANGES = {"contrast": Interval(0, 1), "brightness": Interval(-1, 1)}
DATA_CONSTRAINTS = {
    "batch_size": Interval(1, integer=True),
    "val_split": Interval(0, 1, closed="left"),
    "test_split": Interval(0, 1, closed="left"),
    "few_shot": Interval(1, integer=True),
    "balance": OneOf(BALANCE_MODES),
    "augment_in": OneOf(AUGMENT_PLACES),
    "resize": OneOf(RESIZE_POLICIES),
    "cache": OneOf(CACHE_MODES),
    "seed": Interval(0, integer=True),
    "max_pixels": Interval(1, integer=True),
}


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides what the model sees; validated on construction.

    `source`: `digits` | `digits_0_4` | `digits_5_9` | `faces` | `plates_0_4` | `letters` |
    `folder:PATH` | `csv:PATH` | `tfds:NAME` | `npz:PATH` (or arrays passed to `load_data`); the path of an existing folder,
    `.csv` or `.npz` file alone means that kind. `image_size` is (height, width), or one number
    for a square.
    `val_split` / `test_split` are fractions carved from train when the source has no such split.
    `few_shot: k` keeps k training examples per class. `balance`: auto (class weights when the
    largest class has more than 1.5x the images of the smallest, else none) | none | class_weight |
    oversample | undersample. `exclude`: a text file of image paths (relative to the data folder,
    or absolute) to leave out, e.g. edited from `keras-transfer check`'s CSVs. `augment`
    lists augmentations (or maps them to strengths), applied in the tf.data map on CPU
    (`augment_in: data`) or inside the model on the accelerator (`model`).
    `resize`: resize | crop_to_aspect_ratio | pad. `cache`: auto (memory if it fits, else disk) |
    memory | disk | none. `split`, `data_dir` and `download` are for TFDS. `max_pixels`: images
    whose header declares more pixels are skipped and reported (decompression bombs).
    `csv_root`: a folder every CSV path must lie inside (for CSVs from others).
    `unlabeled`: target-domain images whose labels training never reads (`model.adapt: adabn`,
    `training.self_training`): a folder of images (flat, or class folders whose names are only
    kept to score pseudo-labels), or any source above; see `keras_transfer.data.unlabeled`.
    """

    source: str = "digits"
    image_size: tuple[int, int] | int = (96, 96)
    batch_size: int = 32
    val_split: float = 0.15
    test_split: float = 0.15
    few_shot: int | None = None
    balance: str = "auto"
    augment: Any = ("flip", "rotation")
    augment_in: str = "data"
    resize: str = "resize"
    cache: str = "auto"
    cache_dir: str | None = None
    seed: int = 0
    split: str = "train"
    data_dir: str | None = None
    download: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    csv_root: str | None = None
    exclude: str | None = None
    unlabeled: str | None = None

    def __post_init__(self):
        check_constraints(self, DATA_CONSTRAINTS, prefix="data")
        if isinstance(self.image_size, numbers.Integral) and not isinstance(self.image_size, bool):
            object.__setattr__(self, "image_size", (self.image_size, self.image_size))  # 96 means 96x96
        given = self.image_size
        if (not isinstance(given, (tuple, list)) or len(given) != 2
                or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in given)):
            raise ValueError(f"data.image_size must be [height, width] in whole pixels (or one number for a "
                             f"square), got {given!r}")
        size = tuple(int(s) for s in given)
        object.__setattr__(self, "image_size", size)
        if isinstance(self.augment, list):
            object.__setattr__(self, "augment", tuple(self.augment))
        if min(size) < 8 or max(size) > MAX_IMAGE_SIDE:
            # [100000, 100000] once passed and died out of memory with a half-made run folder.
            raise ValueError(f"data.image_size must be [height, width] of at least 8 pixels and at most "
                             f"{MAX_IMAGE_SIDE} per side, got {list(given)!r}")
        if self.val_split + self.test_split >= 0.9:
            raise ValueError("data.val_split + data.test_split leave almost nothing to train on")
        augmentation_strengths(self.augment)  # names and strengths checked now, before any work
        object.__setattr__(self, "source", expand_source(self.source))
        source_kind(self.source)
        if self.unlabeled is not None:
            object.__setattr__(self, "unlabeled", check_unlabeled_source(self.unlabeled))


def augmentation_strengths(spec) -> dict[str, float | None]:
    """`data.augment` as {name: strength}: names (`["flip", "rotation"]`) take their default strength,
    a mapping (`{"rotation": 0.2}`) its own. Unknown names raise ValueError naming the closest valid one."""
    if isinstance(spec, str) or not isinstance(spec, (Mapping, list, tuple)):
        raise ValueError(f"data.augment must be a list of augmentations (some of {', '.join(AUGMENTATIONS)}) or a "
                         f"mapping of them to strengths, got {spec!r}")
    items = spec.items() if isinstance(spec, Mapping) else ((name, None) for name in spec)
    chosen = {}
    for name, strength in items:
        if not isinstance(name, str) or name not in DEFAULT_STRENGTH:
            raise ValueError(unknown_name_message("augmentation", str(name), AUGMENTATIONS, where="data.augment"))
        if strength is None:
            chosen[name] = DEFAULT_STRENGTH[name]
            continue
        try:
            chosen[name] = float(strength)
        except (TypeError, ValueError):
            raise ValueError(f"data.augment.{name} must be a number (its strength), got {strength!r}") from None
        problem = name in STRENGTH_RANGES and STRENGTH_RANGES[name].violation(chosen[name], f"data.augment.{name}")
        if problem:
            raise ValueError(problem)
    return chosen


def expand_source(source: str) -> str:
    """`source` with its kind spelt out: the path of an existing folder means `folder:PATH`, of a
    `.csv` or `.npz` file `csv:PATH` / `npz:PATH`; anything else comes back unchanged.

    Embedded names and `kind:` prefixes win over a file of the same name, so the meaning of a
    source never depends on the working directory unless it can only be a path.
    """
    if source in EMBEDDED_DATASETS or source.partition(":")[0] in SOURCE_KINDS:
        return source
    path = Path(source).expanduser()
    if path.is_dir():
        return f"folder:{source}"
    if path.is_file() and path.suffix.lower() in (".csv", ".npz"):
        return f"{path.suffix.lower()[1:]}:{source}"
    return source


def source_kind(source: str, key: str = "data.source") -> tuple[str, str]:
    """Split `source` into (kind, argument): ("embedded", "digits"), ("folder", "/data/x"), ...

    `key` is the config key named in the error (data.source, data.unlabeled)."""
    if source in EMBEDDED_DATASETS:
        return "embedded", source
    kind, sep, argument = source.partition(":")
    if sep and kind in SOURCE_KINDS and argument:
        return kind, argument
    if not sep and ("/" in source or os.sep in source):
        raise ValueError(f"{key}: {source} does not exist (give a folder with one subfolder per class, "
                         "a .csv or an .npz file)")
    valid = [*EMBEDDED_DATASETS, *(f"{k}:PATH" for k in SOURCE_KINDS if k != "tfds"), "tfds:NAME"]
    raise ValueError(unknown_name_message(key, source, valid))


def check_unlabeled_source(source: str) -> str:
    """`data.unlabeled` expanded and checked without reading images: one error naming the key and
    the source when it is misspelt, or a path that does not exist."""
    expanded = expand_source(source)
    kind, argument = source_kind(expanded, key="data.unlabeled")
    if kind == "tfds":
        raise ValueError(f"data.unlabeled: {source} is streamed from TFDS; give a folder, .npz, .csv or an "
                         "embedded dataset (unlabelled images are counted and revisited)")
    if kind in ("folder", "csv", "npz") and not Path(argument).expanduser().exists():
        raise ValueError(f"data.unlabeled: {argument} does not exist (give a folder of images, a .csv, an .npz "
                         "or an embedded dataset such as plates_0_4)")
    return expanded
