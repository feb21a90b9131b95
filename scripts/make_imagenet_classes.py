"""Regenerate keras_transfer/backbones/data/imagenet_classes.txt from files TFDS installs.

The WordNet ids come from TFDS's imagenet2012 `labels.txt` (in class-index order) and the
human-readable names from SI-Score's `labels.py` (IMAGENET_LABELS_LIST, same order). The list is
read with `ast.literal_eval`, so nothing from the file is executed. Run:
    python scripts/make_imagenet_classes.py
"""

from __future__ import annotations

import ast
from pathlib import Path

import tensorflow_datasets

ROOT = Path(tensorflow_datasets.__file__).parent / "datasets"
TARGET = Path(__file__).resolve().parents[1] / "keras_transfer" / "backbones" / "data" / "imagenet_classes.txt"


def tfds_wordnet_ids() -> list[str]:
    return (ROOT / "imagenet2012" / "labels.txt").read_text().split()


def tfds_class_names() -> list[str]:
    tree = ast.parse((ROOT / "siscore" / "labels.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "IMAGENET_LABELS_LIST" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("IMAGENET_LABELS_LIST not found in SI-Score labels.py")


def main() -> None:
    ids, names = tfds_wordnet_ids(), tfds_class_names()
    assert len(ids) == len(names) == 1000, (len(ids), len(names))
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text("".join(f"{i}\t{n}\n" for i, n in zip(ids, names)))
    print(f"wrote {TARGET} ({len(ids)} classes)")


if __name__ == "__main__":
    main()
