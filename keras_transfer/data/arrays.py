"""Images given as arrays: `load_data(config, x=..., y=...)` and `.npz` files.

Pixels are checked (shape, dtype, range: raw [0, 255], never scaled to [0, 1]); labels are class
indices or names, or float regression targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_transfer.config import DataConfig
from keras_transfer.data.bundle import DataBundle, Examples
from keras_transfer.data.split import split_examples


def from_arrays(config: DataConfig, x, y, class_names: list[str] | None, *, where: str = "arrays x, y",
                regression: bool = False) -> DataBundle:
    """The bundle of images `x` with labels (or targets) `y`: the one split "train", carved as configured."""
    images, labels, names = _arrays(x, y, class_names, where=where, regression=regression)
    kind = "regression" if labels.dtype == np.float32 else "multiclass"
    return split_examples(config, {"train": Examples(labels, images=images)}, names, kind, [])


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


def from_npz(config: DataConfig, path: Path, regression: bool = False) -> DataBundle:
    """The bundle of an `.npz` holding `x` and `y` (or `images` and `labels`), and optionally `class_names`."""
    if not path.is_file():
        raise ValueError(f"npz file {path} does not exist")
    with np.load(path, allow_pickle=False) as archive:  # never unpickle: an .npz can carry objects
        keys = set(archive.files)
        x_key = "x" if "x" in keys else "images" if "images" in keys else None
        y_key = "y" if "y" in keys else "labels" if "labels" in keys else None
        if x_key is None or y_key is None:
            raise ValueError(f"{path}: expected arrays 'x' and 'y' (or 'images' and 'labels'); found {sorted(keys)}")
        names = [str(n) for n in archive["class_names"]] if "class_names" in keys else None
        return from_arrays(config, archive[x_key], archive[y_key], names, where=str(path), regression=regression)
