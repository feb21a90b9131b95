"""The data check: everything `data.health` and `features.health` find, written for a person to read.

`check_data(source, out_dir)` loads the source as training would (bad files skipped, the
user's own train/val/test folders kept), hashes every file, extracts pooled features of a frozen
backbone once (cached), and writes `data_health.json`, one CSV per list (first column `path`,
relative to the data folder, so an edited copy serves as `data.exclude`) and contact sheets of
the top suspects and outliers. It reads the data and never moves, changes or deletes a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from keras_transfer.config import source_kind
from keras_transfer.data import DataConfig, load_data
from keras_transfer.data.health import class_balance, describe_duplicates
from keras_transfer.features.health import NEAR_DUPLICATE_COSINE, feature_health
from keras_transfer.core.files import atomic_write_text

# Lite0 at 128 px: ImageNet features good enough to rank suspects, at a quarter of 224 px's cost
# (the 4,317 flowers in about 25 s on 2 cores); the flowers are 128 px already.
CHECK_BACKBONE = "efficientnet_lite0"
CHECK_IMAGE_SIZE = 128
SHEET_SIZE = 24  # tiles per contact sheet


@dataclass
class DataCheck:
    """The check's findings (`report`, as written to data_health.json) and the files written."""

    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """A few lines: the counts of each finding and where the lists are."""
        r = self.report
        exact, near = r["exact_duplicates"], r["near_duplicates"]
        kinds = lambda groups: ", ".join(f"{sum(g['kind'] == k for g in groups)} {k}"  # noqa: E731
                                         for k in ("within-class", "cross-class", "cross-split"))
        balance = r["balance"]
        ratio = f"{balance['ratio']:.2f}x" if balance["ratio"] is not None else "an empty class"
        lines = [
            f"checked {r['examples']:,} images in {len(r['class_names'])} classes of {r['source']} "
            f"in {r['seconds']:.1f} s ({r['backbone']} features at {r['image_size'][0]} px)",
            f"exact duplicates: {len(exact)} group(s) ({kinds(exact)})",
            f"near-duplicates (cosine >= {r['near_duplicate_threshold']:.2f}): {len(near)} pair(s) ({kinds(near)})",
            f"suspect labels: {r['suspect_count']} (confident learning on out-of-fold probabilities, "
            f"out-of-fold accuracy {r['out_of_fold_accuracy']:.3f})",
            f"outliers (far from every class, or blank): {len(r['outliers'])}",
            f"class balance: largest {balance['largest']} {balance['counts'][balance['largest']]}, smallest "
            f"{balance['smallest']} {balance['counts'][balance['smallest']]}: {ratio}"
            + (" (imbalanced: balance: auto weights the loss)" if balance["imbalanced"] else ""),
        ]
        if self.files:
            folder = self.files["json"].parent
            lines.append(f"wrote {folder}/: " + ", ".join(p.name for p in self.files.values())
                         + " (nothing in the data folder was changed)")
        return lines


def check_data(source: str, out_dir: str | os.PathLike, *, backbone: str = CHECK_BACKBONE,
               weights: str | None = "imagenet", image_size: int = CHECK_IMAGE_SIZE,
               threshold: float = NEAR_DUPLICATE_COSINE, cache_dir: str | os.PathLike | None = None,
               seed: int = 0, log: Callable[[str], None] = print) -> DataCheck:
    """Check the images of `source` (a folder, `csv:`, `npz:` or embedded name) and write the findings.

    `backbone` (a registered name or a saved source model) with `weights` gives the features,
    at `image_size` pixels; `threshold` is the near-duplicate cosine; features are cached under
    `cache_dir` (see `extract_features`). `out_dir` must not lie inside the data folder.
    """
    from keras_transfer.backbones import build_backbone
    from keras_transfer.features.extract import extract_features

    started = time.perf_counter()
    config = DataConfig(source=source, image_size=image_size, val_split=0.0, test_split=0.0, augment=(),
                        balance="none", cache="none", seed=seed)
    root = _data_root(config.source)
    out_dir = Path(out_dir)
    if root is not None and out_dir.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"--output-dir {out_dir} lies inside the data folder {root}; the check never writes "
                         "there: choose a folder outside it")
    phases = {}
    data = load_data(config)
    phases["load_and_hash"] = time.perf_counter() - started
    if data.task != "multiclass":
        raise ValueError(f"the check ranks one class per image, and {config.source} holds {data.task} labels")
    model = build_backbone(backbone, weights=weights, input_shape=(image_size, image_size, 3))
    features = extract_features(model, data, cache_dir=cache_dir, log=log)
    phases["features"] = time.perf_counter() - started - sum(phases.values())
    splits = features.splits
    x = np.concatenate([features.xy(s)[0] for s in splits])
    y = np.concatenate([data.splits[s].labels for s in splits]).astype(np.int64)
    where = [s for s in splits for _ in range(len(data.splits[s]))]
    files = [_shown(p, root) for s in splits for p in (data.splits[s].paths or
                                                         [f"{s}[{i}]" for i in range(len(data.splits[s]))])]
    digests = [d for s in splits for d in data.splits[s].digests]
    names = data.class_names
    found = feature_health(x, y, threshold=threshold, seed=seed)
    phases["near_duplicates_suspects_outliers"] = time.perf_counter() - started - sum(phases.values())
    label_of = [names[int(c)] for c in y]
    near = [{**describe_duplicates([[i, j]], files, label_of, where)[0], "cosine": round(cos, 4)}
            for i, j, cos in found.near_duplicates
            if digests[i] != digests[j]]  # identical files are listed as exact duplicates
    exact = [{**g, "files": [_shown(f, root) for f in g["files"]]} for g in data.health["duplicates"]]
    suspects = [{"path": files[s["index"]], "split": where[s["index"]], "given": names[s["given"]],
                 "suggested": names[s["suggested"]], "self_confidence": s["self_confidence"],
                 "suggested_probability": s["suggested_probability"]} for s in found.suspects]
    outliers = [{"path": files[o["index"]], "split": where[o["index"]], "label": label_of[o["index"]],
                 "reason": o["reason"], "robust_z": o["robust_z"], "quiet_z": o["quiet_z"]} for o in found.outliers]
    report = {
        "source": config.source, "backbone": model.name, "image_size": list(config.image_size),
        "examples": int(len(y)), "class_names": names, "counts": data.counts(),
        "balance": class_balance(y, names), "skipped": len(data.skipped),
        "exact_duplicates": exact, "near_duplicate_threshold": threshold, "near_duplicates": near,
        "suspect_count": len(suspects), "suspects": suspects,
        "out_of_fold_accuracy": round(float((found.probabilities.argmax(axis=1) == y).mean()), 4),
        "outliers": outliers, "seconds": 0.0, "phase_seconds": {},
    }
    result = DataCheck(report)
    sheets = _thumbnails(data, splits, found, outliers)
    report["seconds"] = round(time.perf_counter() - started, 2)
    phases["lists"] = report["seconds"] - sum(phases.values())
    report["phase_seconds"] = {k: round(v, 2) for k, v in phases.items()}  # the sheets are drawn after this
    result.files = write_check(result, out_dir, sheets)
    return result


def write_check(check: DataCheck, out_dir: Path, sheets: dict[str, list[tuple[np.ndarray, str]]]) -> dict[str, Path]:
    """Write data_health.json, the CSV lists and the contact sheets into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    r = check.report
    paths = {"json": atomic_write_text(out_dir / "data_health.json", json.dumps(r, indent=1))}
    rows = [[f, g["labels"][k], g["splits"][k], n, g["kind"]] for n, g in enumerate(r["exact_duplicates"])
            for k, f in enumerate(g["files"])]
    paths["duplicates"] = _csv(out_dir / "duplicates.csv", ["path", "label", "split", "group", "kind"], rows)
    paths["near_duplicates"] = _csv(out_dir / "near_duplicates.csv",
                                    ["path", "other", "cosine", "label", "other_label", "kind"],
                                    [[g["files"][0], g["files"][1], g["cosine"], g["labels"][0], g["labels"][1],
                                      g["kind"]] for g in r["near_duplicates"]])
    paths["suspects"] = _csv(out_dir / "suspects.csv", ["path", "split", "given", "suggested", "self_confidence",
                                                        "suggested_probability"],
                             [list(s.values()) for s in r["suspects"]])
    paths["outliers"] = _csv(out_dir / "outliers.csv", ["path", "split", "label", "reason", "robust_z", "quiet_z"],
                             [list(o.values()) for o in r["outliers"]])
    for name, tiles in sheets.items():
        if tiles:
            paths[f"{name}_sheet"] = contact_sheet(tiles, out_dir / f"{name}.png")
    return paths


def contact_sheet(tiles: list[tuple[np.ndarray, str]], path: Path, columns: int = 6) -> Path:
    """A grid of images with a caption under each, saved as a PNG."""
    from keras_transfer.core.plots import new_figure, save_figure

    rows = -(-len(tiles) // columns)
    fig, axes = new_figure(rows, columns, size=(2.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, caption) in zip(axes.ravel(), tiles):
        ax.imshow(image)
        ax.set_title(caption, fontsize=7)
    return save_figure(fig, path)


def _thumbnails(data, splits, found, outliers) -> dict[str, list[tuple[np.ndarray, str]]]:
    names = data.class_names
    index = [(s, i) for s in splits for i in range(len(data.splits[s]))]
    suspects = [(_image(data, *index[s["index"]]), f"{names[s['given']]} -> {names[s['suggested']]}\n"
                 f"p(given) {s['self_confidence']:.2f}\n{_tail(data, *index[s['index']])}")
                for s in found.suspects[:SHEET_SIZE]]
    far = [(_image(data, *index[o["index"]]), f"{outliers[k]['label']}: {o['reason']}\n"
            f"{_tail(data, *index[o['index']])}") for k, o in enumerate(found.outliers[:SHEET_SIZE])]
    return {"suspects": suspects, "outliers": far}


def _image(data, split: str, i: int) -> np.ndarray:
    examples = data.splits[split]
    if examples.paths is None:
        return np.asarray(examples.images[i], dtype=np.uint8)
    from PIL import Image

    with Image.open(examples.paths[i]) as image:
        image.thumbnail((160, 160))
        return np.asarray(image.convert("RGB"))


def _tail(data, split: str, i: int) -> str:
    paths = data.splits[split].paths
    return Path(paths[i]).name[-24:] if paths is not None else f"{split}[{i}]"


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _data_root(source: str) -> Path | None:
    kind, argument = source_kind(source)
    if kind == "folder":
        return Path(argument)
    return Path(argument).parent if kind == "csv" else None


def _shown(path: str, root: Path | None) -> str:
    """`path` relative to the data folder when it lies inside it (what data.exclude accepts), else as is."""
    if root is None or "[" in path and not os.path.exists(path):
        return path
    relative = os.path.relpath(path, root)
    return path if relative.startswith("..") else relative
