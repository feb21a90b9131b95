"""Image records from folders and CSV files, checked before any training starts.

A record is an image path and its labels. Every file is decoded once up front, by the decoder
training uses (in threads, at reduced size for JPEGs): zero-byte files, text files named .jpg,
truncated images, formats TensorFlow cannot decode (a TIFF named .png), images whose header
declares more than `max_pixels`, and unreadable files are skipped and reported, so training
never dies mid-epoch on one.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from keras_transfer.data.manifest import ScanManifest
from keras_transfer.data.images import DEFAULT_MAX_PIXELS, ImageReadError, image_decoder, image_header

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TRAINING_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # what tf.io.decode_image reads (PIL's names)
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
TARGET_COLUMN = "target"  # `path,target`: a numeric target per image, always regression


@dataclass
class Records:
    """Image paths with their labels (a tuple of class names each; one for single-label data).

    Regression records carry `targets` (one finite float per image) and `target_name`, the CSV
    column they came from; their `labels` are then empty tuples.
    """

    paths: list[str] = field(default_factory=list)
    labels: list[tuple[str, ...]] = field(default_factory=list)
    targets: list[float] | None = None
    target_name: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> "Records":
        """Return the records at `indices`, in that order."""
        targets = [self.targets[i] for i in indices] if self.targets is not None else None
        return Records([self.paths[i] for i in indices], [self.labels[i] for i in indices], targets,
                       self.target_name)


@dataclass
class Skipped:
    """A file left out before training, and why."""

    path: str
    reason: str


def folder_records(root: Path) -> tuple[dict[str, Records], list[str]]:
    """Read `root/<class>/*.jpg` or `root/{train,val,test}/<class>/*`; return records by split and empty classes.

    Splits absent from the folder are missing from the returned mapping (the caller carves them
    from train). Raises ValueError naming the folder if it does not exist or holds no class folders.
    """
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist or is not a folder")
    children: dict[str, Path] = {}
    split_names = {name for names in SPLIT_FOLDERS.values() for name in names}
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        key = child.name.lower()
        if key in children and key in split_names:  # Validation/ beside validation/: one was ignored silently
            raise ValueError(f"{root} has both {children[key].name}/ and {child.name}/; keep one of them")
        children[key] = child
    split_dirs = {}
    for split, names in SPLIT_FOLDERS.items():
        found = [children[name] for name in names if name in children]
        if len(found) > 1:
            raise ValueError(f"{root} has both {found[0].name}/ and {found[1].name}/ for the {split} split; "
                             "keep one of them")
        if found:
            split_dirs[split] = found[0]
    if "train" not in split_dirs and split_dirs:
        raise ValueError(f"{root} has {', '.join(sorted(split_dirs))}/ but no train/ folder")
    if not split_dirs:
        split_dirs = {"train": root}
    result, empty = {}, []
    for split, folder in split_dirs.items():
        records = Records()
        classes = sorted(child for child in folder.iterdir() if child.is_dir())
        if not classes:
            raise ValueError(f"{folder} holds no class folders: expected {folder}/<class name>/<image files>")
        check_distinct_names([c.name for c in classes], folder)
        for class_dir in classes:
            files = _image_files(class_dir)
            if not files:
                empty.append(str(class_dir))
            records.paths.extend(files)
            records.labels.extend([(class_dir.name,)] * len(files))
        result[split] = records
    return result, empty


def check_distinct_names(names: list[str], where: str | os.PathLike) -> None:
    """Raise ValueError when two class names look the same: equal once Unicode-normalised (NFC).

    `café` typed on Linux (NFC) and copied from macOS (NFD) are two folders and two classes that
    print identically; a model trained on them splits one class in two, and nobody can tell which
    is which. Names that differ in case stay two classes: they look different.
    """
    import unicodedata

    seen: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name)
        if key in seen and seen[key] != name:
            from keras_transfer.core.names import printable

            raise ValueError(f"{where}: class names {ascii(seen[key])} and {ascii(name)} look identical ({printable(key)}) "
                             "but are spelt with different Unicode code points (NFC and NFD); rename or merge "
                             "one of them")
        seen.setdefault(key, name)


def _image_files(folder: Path) -> list[str]:
    """The image files directly in `folder`, sorted, as strings.

    `os.scandir` knows each entry's type from the directory listing and strings sort without
    building Path objects: listing 50,000 files took 2.5 s with `iterdir` + `is_file`, most of a
    rerun that the manifest otherwise answers in a fraction of that.
    """
    with os.scandir(folder) as entries:
        return sorted(entry.path for entry in entries
                      if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS)


def csv_records(path: Path, root: str | os.PathLike | None = None, *, regression: bool = False) -> Records:
    """Read a CSV with a `path,label` or `path,target` header; paths relative to the CSV or absolute.

    Labels are class names, `a|b` for several. The column holds regression targets (finite
    numbers, returned in `Records.targets`) when it is named `target`, when `regression` is set
    (`model.task: regression`), or when every value is a number and at least one has a fractional
    part (`2.5`): integer-valued labels stay class names. A target that is not a finite number is
    a ValueError naming the line. With `root`, every path (relative or absolute, after resolving
    `..` and symlinks) must lie inside that folder: a CSV from someone else cannot point training
    at `../../etc/passwd`. A path outside it is a ValueError naming the line and the path.
    """
    if not path.is_file():
        raise ValueError(f"CSV file {path} does not exist")
    confine = Path(root).resolve() if root is not None else None
    if confine is not None and not confine.is_dir():
        raise ValueError(f"data.csv_root {root} does not exist or is not a folder")
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        column = TARGET_COLUMN if TARGET_COLUMN in columns else "label"
        expected = ("path", column)
        unknown = [c for c in columns if c not in expected]
        if unknown or set(columns) != set(expected):
            raise ValueError(
                f"{path}: the header must be exactly 'path,label' (classes) or 'path,target' (regression); "
                f"got {','.join(columns) or '(empty file)'}" + (f" (unknown column {unknown[0]!r})" if unknown else "")
            )
        rows = [(line, row["path"] or "", (row[column] or "").strip()) for line, row in enumerate(reader, start=2)]
    records = Records()
    for line, name, value in rows:
        image = Path(name)
        image = image if image.is_absolute() else path.parent / image
        if not name or not value:
            raise ValueError(f"{path}, line {line}: every row needs a path and "
                             + ("a target" if column == TARGET_COLUMN else "at least one label"))
        if confine is not None and not image.resolve().is_relative_to(confine):
            raise ValueError(f"{path}, line {line}: image path {name!r} is outside data.csv_root {confine}")
        if not image.is_file():
            special = image.exists() and not image.is_dir()  # a FIFO would block the start-up check
            what = "is not a regular file (a pipe, socket or device)" if special else "does not exist"
            raise ValueError(f"{path}, line {line}: image file {image} {what}")
        records.paths.append(str(image))
    if not records.paths:
        raise ValueError(f"{path} has a header but no rows")
    why = ("model.task: regression" if regression else "a 'target' column" if column == TARGET_COLUMN
           else _numeric_column(path, rows))
    if why is None:
        records.labels = [tuple(label.strip() for label in value.split("|") if label.strip()) for _, _, value in rows]
        empty = next((line for (line, _, _), labels in zip(rows, records.labels) if not labels), None)
        if empty is not None:
            raise ValueError(f"{path}, line {empty}: every row needs a path and at least one label")
        check_distinct_names(sorted({label for labels in records.labels for label in labels}), path)
        return records
    records.labels = [() for _ in rows]
    records.targets = [_target(path, line, column, value, why) for line, _, value in rows]
    records.target_name = column
    return records


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _numeric_column(path: Path, rows: list[tuple[int, str, str]]) -> str | None:
    """Why a `label` column holds regression targets (some value has a fraction), or None for class names.

    A column of numbers with fractions and a few words is a typo in a target column, not a
    set of classes named `0.37`, `cat` and `1.25`: it is refused, naming the first word's line.
    """
    numbers = [_number(value) for _, _, value in rows]
    if not any(n is not None and not (math.isfinite(n) and n.is_integer()) for n in numbers):
        return None
    line, _, value = next((row for row, n in zip(rows, numbers) if n is None), (None, None, None))
    if line is not None:
        raise ValueError(f"{path}, line {line}: label {value!r} is not a number, but other rows hold numbers "
                         "with fractions (regression targets); fix the value, or name every row's class in words")
    return "labels with fractions"


def _target(path: Path, line: int, column: str, value: str, why: str) -> float:
    number = _number(value)
    if number is None:
        fix = "name the column 'label'" if column == TARGET_COLUMN else "drop model.task: regression"
        raise ValueError(f"{path}, line {line}: {column} {value!r} is not a number; regression ({why}) needs a "
                         f"numeric {column} on every row (for class names, {fix})")
    if not math.isfinite(number):
        raise ValueError(f"{path}, line {line}: {column} is {value!r}; every regression target must be a finite number")
    return number


def scan_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str | None, tuple[int, int] | None]:
    """Return (why `path` cannot be trained on, None) or (None, its (height, width)) when training reads it.

    The header's size is checked first (a decompression bomb is refused before any decoding),
    then the file is decoded by TensorFlow's decoder, the one the pipeline uses: PIL reads TIFF,
    WebP variants or damaged PNGs that TensorFlow refuses, and such a file would otherwise stop
    training mid-epoch. JPEGs decode at 1/8 scale, which still reads every byte, so the pre-scan
    stays cheap. Reasons are our own words, never a decoder's message (which may quote the file).
    """
    import tensorflow as tf

    try:
        header = image_header(path, max_pixels)
    except ImageReadError as error:
        return error.reason, None
    try:
        data = tf.io.read_file(path)
        if header.format in ("JPEG", "MPO"):
            tf.io.decode_jpeg(data, channels=3, ratio=8)
        else:
            image_decoder()(data)  # training's own decoder
        return None, (header.height, header.width)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, tf.errors.UnimplementedError):
        if header.format in TRAINING_FORMATS:
            return f"unreadable image (truncated or corrupt {header.format} data)", None
        return (f"{header.format} image, which training cannot decode (it reads "
                f"{', '.join(TRAINING_FORMATS)}); convert it, e.g. to PNG"), None
    except tf.errors.OpError:
        return "unreadable file", None


def drop_bad_files(records: Records, threads: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS,
                   manifest: ScanManifest | None = None) -> tuple[Records, list[Skipped]]:
    """Decode every file once; return the usable records and the skipped files with reasons.

    With a `manifest`, a file whose size and modification time match its entry takes the entry's
    verdict without decoding; every other file is decoded and recorded in the manifest (the
    caller saves it).
    """
    from keras_transfer.core.progress import MIN_FILES, with_progress

    problems: list[str | None] = [None] * len(records.paths)
    unknown: list[tuple[int, os.stat_result | None]] = []
    for i, path in enumerate(records.paths):
        try:
            stat = os.stat(path)
        except OSError:
            unknown.append((i, None))  # scan_image reports it in its own words
            continue
        hit, reason = manifest.known(path, stat) if manifest is not None else (False, None)
        if hit:
            problems[i] = reason
        else:
            unknown.append((i, stat))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        checked = pool.map(lambda item: scan_image(records.paths[item[0]], max_pixels), unknown)
        for (i, stat), (reason, size) in with_progress(zip(unknown, checked), len(unknown), "file", at_least=MIN_FILES):
            problems[i] = reason
            if manifest is not None and stat is not None:
                manifest.record(records.paths[i], stat, reason, size)
    keep = [i for i, problem in enumerate(problems) if problem is None]
    skipped = [Skipped(path, problem) for path, problem in zip(records.paths, problems) if problem is not None]
    return records.subset(keep), skipped
