"""Notebook support: small mode, where the photos are, image folders, a source CNN, figures.

Only the notebooks (and docs/make_figures.py through them) use this module; it is not part of
the toolkit's API. `KT_SMALL=1` (set by the test suite) shrinks epochs and sizes so every notebook
runs in well under a minute on two CPU cores; without it the notebooks run in full mode on the
real flower photos of `../shared/data/flowers5` when that folder exists, and on `tfds:tf_flowers`
otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
from matplotlib.figure import Figure

from keras_transfer.core import plots


def small_mode() -> bool:
    """True when `KT_SMALL=1`: notebooks shrink epochs, sizes and example counts."""
    return os.environ.get("KT_SMALL") == "1"


def notebook_seed() -> int:
    """The notebooks' seed: `$KT_SEED` (default 0), for runs that measure the spread across seeds."""
    return int(os.environ.get("KT_SEED", "0"))


def photo_source() -> str:
    """The flower photos as a data source: `$KT_PHOTOS`, `../shared/data/flowers5`, or TFDS online."""
    candidates = [os.environ.get("KT_PHOTOS")] + [str(Path.cwd().joinpath(*[".."] * up, "shared", "data", "flowers5"))
                                                  for up in (1, 2, 3)]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return f"folder:{Path(candidate).resolve()}"
    return "tfds:tf_flowers"


def write_image_folder(folder: str | os.PathLike, dataset: str = "digits", per_class: int | None = None,
                       image_size: tuple[int, int] = (32, 32)) -> Path:
    """Write an embedded dataset as PNG files in class folders (`folder/<class>/<n>.png`): a `folder:` source."""
    from PIL import Image

    from keras_transfer.data import load_embedded

    data = load_embedded(dataset, image_size)
    folder = Path(folder)
    for index, name in enumerate(data.class_names):
        (folder / name).mkdir(parents=True, exist_ok=True)
        chosen = np.flatnonzero(data.labels == index)[:per_class]
        for n, i in enumerate(chosen):
            Image.fromarray(data.images[i]).save(folder / name / f"{n:04d}.png")
    return folder


def digits_cnn(input_shape: tuple[int, int, int] = (32, 32, 3), name: str = "digits_cnn",
               seed: int | None = 0, batch_norm: bool = False) -> keras.Model:
    """A small source CNN (blocks conv1, conv2, conv3) for the digits scenario, randomly initialised.

    The scale layer maps paper to 0 and ink to 1. The digits are dark ink on white paper; with
    paper at 1, the blank background drives every unit and the strokes are small dips in it: after
    5 epochs that CNN reached only 0.53-0.61 test accuracy on digits 0-4 (0.94-0.97 with ink at 1).
    `seed` fixes the random weights (None: fresh ones), so the notebook's scratch baseline and
    source CNN are the same on every run; it seeds Keras' global generators as a side effect.
    Train it with the toolkit on a source task (save it, then use the path as `model.backbone`),
    and transfer it to the target task by cutting it at a block. `batch_norm=True` puts a
    BatchNormalization (`convN_bn`) and a ReLU (`convN_relu`) after each convolution, which AdaBN
    (`model.adapt: adabn`) re-estimates on a new domain; cut that network at `conv3_relu`.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="pixels")
    x = keras.layers.Rescaling(-1 / 255.0, offset=1.0, name="scale")(inputs)
    for i, filters in enumerate((32, 64, 128), start=1):
        if batch_norm:
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
            x = keras.layers.ReLU(name=f"conv{i}_relu")(x)
        else:
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.Model(inputs, x, name=name)


def show_images(images: np.ndarray, titles: Sequence[str], columns: int = 8,
                path: str | os.PathLike | None = None) -> Figure:
    """A grid of images with a title under each, as a Figure (saved to `path` when given)."""
    rows = -(-len(images) // columns)
    fig, axes = plots.new_figure(rows, columns, size=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(np.asarray(image).astype("uint8"))
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    if path is not None:
        plots.save_figure(fig, path)
    return fig


def save_figure(fig: Figure, name: str) -> Figure:
    """Save `fig` as `$KT_FIGURES/<name>.png` when `KT_FIGURES` is set; return `fig` to show it.

    docs/make_figures.py and the test suite set `KT_FIGURES`. Returning the figure lets a
    notebook cell end with `save_figure(fig, name)` and show the figure inline as well.
    """
    folder = os.environ.get("KT_FIGURES")
    if folder:
        plots.save_figure(fig, Path(folder) / f"{name}.png")
    return fig
