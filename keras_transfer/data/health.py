"""What can be known about a data set without a model: exact duplicates, class balance, exclusions.

A photo copied into two class folders is label noise; a photo copied into train and test is
scored against its own copy. Both are found here by content hash (BLAKE2b of the file's bytes,
or of an array image's pixels), cheap enough to run at every load: the toolkit keeps every
group of identical images on one side of a split it carves (`split.stratified_split(groups=)`),
and warns when a user's own test/ folder shares images with train/. Class balance decides
`data.balance: auto` (class weights when the largest class has more than `IMBALANCE_RATIO`
times the images of the smallest). `read_exclude` reads `data.exclude`, a list of files to
leave out. The feature-based checks (near-duplicates, suspect labels, outliers) live in
`keras_transfer.features.health`.
"""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from keras_transfer.data.records import Records

# Above this ratio of the largest class to the smallest, `balance: auto` weights the loss and an
# evaluation says its split is imbalanced (the rule; 234 against 390 images is 1.67x).
IMBALANCE_RATIO = 1.5


def file_digest(path: str) -> str:
    """The BLAKE2b hex digest (16 bytes) of a file's bytes: equal digests mean identical files."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digests(paths: Sequence[str] | None = None, images: np.ndarray | None = None,
                    threads: int = 8) -> list[str]:
    """One digest per example: of each file in `paths`, or of each image's pixels (shape included).

    Files are hashed in threads (reading is I/O; hashlib releases the GIL), about 0.1 s for the
    4,317 flower JPEGs. Two array images have equal digests only if their pixels are identical.
    """
    if paths is not None:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(file_digest, paths))
    if images is None:
        return []
    return [hashlib.blake2b(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes(),
                            digest_size=16).hexdigest() for image in images]


def group_ids(digests: Sequence[str]) -> np.ndarray:
    """An integer per example, equal for examples with equal digests (the first one's index)."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(d, i) for i, d in enumerate(digests)], dtype=np.int64)


def duplicate_groups(digests: Sequence[str]) -> list[list[int]]:
    """Indices of every group of two or more identical examples, each group sorted, groups in order."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def describe_duplicates(groups: list[list[int]], names: Sequence[str], labels: Sequence[str],
                        splits: Sequence[str]) -> list[dict[str, Any]]:
    """Each group as {kind, files, labels, splits}: kind is `cross-split` (leakage) when its copies
    lie in different splits, else `cross-class` (conflicting labels) or `within-class`."""
    out = []
    for members in groups:
        member_labels = [labels[i] for i in members]
        member_splits = [splits[i] for i in members]
        kind = ("cross-split" if len(set(member_splits)) > 1 else
                "cross-class" if len(set(member_labels)) > 1 else "within-class")
        out.append({"kind": kind, "files": [names[i] for i in members], "labels": member_labels,
                    "splits": member_splits})
    return out


def class_balance(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Counts per class, the ratio of the largest class to the smallest, and whether it exceeds
    `IMBALANCE_RATIO` (an empty class makes the ratio infinite, reported as None)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=len(class_names))
    smallest, largest = int(counts.min()), int(counts.max())
    ratio = largest / smallest if smallest else None
    return {"counts": {name: int(c) for name, c in zip(class_names, counts)},
            "ratio": round(ratio, 3) if ratio is not None else None,
            "imbalanced": ratio is None or ratio > IMBALANCE_RATIO,
            "largest": class_names[int(counts.argmax())], "smallest": class_names[int(counts.argmin())]}


def auto_balance(labels: np.ndarray, num_classes: int) -> str:
    """What `balance: auto` means for these training labels: `class_weight` above the ratio, else `none`."""
    return "class_weight" if class_balance(labels, [str(i) for i in range(num_classes)])["imbalanced"] else "none"


def read_exclude(path: str | os.PathLike) -> list[str]:
    """The entries of a `data.exclude` file: one path per line; blank lines and `#` comments skipped.

    A CSV written by the check (`suspects.csv`, `duplicates.csv`, ...) may be given as it is: a
    header line starting with `path` is skipped and only the first column of each row is read.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"data.exclude: {path} does not exist (expected a text file with one image path per line)")
    entries = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = next(csv.reader([line]))[0].strip()  # a quoted path may hold commas
        if number == 1 and first.lower() in ("path", "file", "files"):
            continue
        entries.append(first)
    return entries


def excluded_mask(paths: Sequence[str], entries: Sequence[str], root: str | os.PathLike,
                  log: Callable[[str], None] = print) -> np.ndarray:
    """A boolean per path, True where `entries` (relative to `root`, or absolute) names it.

    Entries that name no file of the data are reported once, in one line with the first few, so
    a typo or a list made for other data is seen; they are otherwise ignored.
    """
    base = Path(root).expanduser().resolve()
    wanted = {os.path.normpath(str(p if Path(p).is_absolute() else base / p)) for p in entries}
    resolved = [os.path.normpath(str(Path(p).resolve())) for p in paths]
    mask = np.array([p in wanted for p in resolved], dtype=bool)
    unknown = sorted(wanted - set(resolved))
    if unknown:
        shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        log(f"warning: data.exclude: {len(unknown)} of {len(wanted)} listed path(s) are not in the data, "
            f"ignored: {shown}")
    return mask


def leave_out(by_split: dict[str, Records], exclude: str | os.PathLike, root: str | os.PathLike,
              log: Callable[[str], None] = print) -> tuple[dict[str, Records], list[str]]:
    """The records of every split without the files listed in `exclude` (see `read_exclude`), and
    the paths left out; entries relative to `root` (the data folder, or the CSV's folder)."""
    everything = [path for records in by_split.values() for path in records.paths]
    mask = iter(excluded_mask(everything, read_exclude(exclude), root, log))
    kept, excluded = {}, []
    for split, records in by_split.items():
        drop = [next(mask) for _ in records.paths]
        excluded += [path for path, d in zip(records.paths, drop) if d]
        kept[split] = records.subset([i for i, d in enumerate(drop) if not d])
    log(f"left out {len(excluded)} file(s) listed in data.exclude ({exclude})")
    return kept, excluded


def leakage_warning(groups: list[dict[str, Any]]) -> str | None:
    """One line naming how many images a given test/ (or val/) folder shares with train/, or None."""
    leaks = [g for g in groups if g["kind"] == "cross-split"]
    if not leaks:
        return None
    pairs = sorted({"/".join(sorted(set(g["splits"]))) for g in leaks})
    return (f"warning: {len(leaks)} image(s) appear in more than one split ({', '.join(pairs)}), e.g. "
            f"{leaks[0]['files'][0]} == {leaks[0]['files'][1]}: those scores are measured on copies of "
            "training images; remove the copies from one folder (data_health.json lists them)")


def health_lines(health: dict[str, Any]) -> list[str]:
    """The log lines of a run's data health: duplicates found, a leakage warning, the balance chosen."""
    if not health:
        return []
    lines = []
    groups = health.get("duplicates") or []
    if groups:
        kinds = {k: sum(g["kind"] == k for g in groups) for k in ("within-class", "cross-class", "cross-split")}
        lines.append(f"data health: {len(groups)} group(s) of identical images ({kinds['within-class']} within a "
                     f"class, {kinds['cross-class']} across classes, {kinds['cross-split']} across given splits); "
                     "a split carved from train keeps each group together (data_health.json lists them)")
    warning = leakage_warning(groups)
    if warning:
        lines.append(warning)
    balance = health.get("balance") or {}
    if balance.get("imbalanced"):
        ratio = f"{balance['ratio']:.2f}x" if balance.get("ratio") else "an empty class"
        lines.append(f"class balance: largest {balance['largest']} / smallest {balance['smallest']} = {ratio}; "
                     f"data.balance came to {health.get('balance_applied', 'none')}")
    return lines
