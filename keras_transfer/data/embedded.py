"""Datasets that need no download: real images shipped inside scikit-learn and scikit-image.

- `digits`: scikit-learn's 1,797 handwritten digit scans (8x8, 17 grey levels), shown as dark ink
  on white paper, upsampled to the requested size and repeated to RGB. `digits_0_4` and
  `digits_5_9` are the source material's source and target tasks (labels 0-4 in both).
- `faces`: scikit-image's `lfw_subset`, 200 greyscale 25x25 crops: 100 faces, 100 non-faces.
- `plates_0_4` and `letters`: the digits scenario's other targets (digits 0-4 on number plates,
  the capitals A-E), rendered from matplotlib's fonts with seed 0 (`keras_transfer.data.synthetic`),
  200 images per class.

Every loader returns uint8 RGB pixels in [0, 255] of shape [N, H, W, 3], integer labels and the
class names, which is what the toolkit's models take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_transfer.core.names import unknown_name_message


@dataclass(frozen=True)
class Embedded:
    """An embedded dataset: its arrays and class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def _resize_grey(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upsample [N, h, w] greys in [0, 255] to uint8 RGB [N, H, W, 3] (bilinear, like tf.image)."""
    import tensorflow as tf

    resized = tf.image.resize(grey[..., None].astype("float32"), size, method="bilinear")
    rgb = tf.repeat(tf.clip_by_value(tf.round(resized), 0, 255), 3, axis=-1)
    return rgb.numpy().astype(np.uint8)


def _digits(size: tuple[int, int], keep: range) -> Embedded:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    mask = np.isin(bunch.target, list(keep))
    ink = bunch.images[mask] / 16.0  # 0 = no ink, 1 = full ink
    images = _resize_grey(255.0 * (1.0 - ink), size)
    labels = (bunch.target[mask] - keep.start).astype(np.int64)
    return Embedded(images, labels, tuple(str(d) for d in keep))


def _faces(size: tuple[int, int]) -> Embedded:
    from skimage.data import lfw_subset

    grey = lfw_subset()  # first 100 are faces, last 100 are not
    images = _resize_grey(255.0 * grey, size)
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)
    return Embedded(images, labels, ("non_face", "face"))


def _synthetic(kind: str, size: tuple[int, int]) -> Embedded:
    from keras_transfer.data.synthetic import render

    images, labels, names = render(kind, size)
    return Embedded(images, labels, names)


EMBEDDED: dict[str, Callable[[tuple[int, int]], Embedded]] = {
    "digits": lambda size: _digits(size, range(0, 10)),
    "digits_0_4": lambda size: _digits(size, range(0, 5)),
    "digits_5_9": lambda size: _digits(size, range(5, 10)),
    "faces": _faces,
    "plates_0_4": lambda size: _synthetic("plates", size),
    "letters": lambda size: _synthetic("letters", size),
}


def load_embedded(name: str, image_size: tuple[int, int] = (96, 96)) -> Embedded:
    """Load an embedded dataset by name at `image_size` (height, width); no download ever happens."""
    if name not in EMBEDDED:
        raise ValueError(unknown_name_message("embedded dataset", name, EMBEDDED))
    return EMBEDDED[name](tuple(int(s) for s in image_size))
