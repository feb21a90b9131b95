"""Read one image file of any format and mode into RGB pixels at a requested size.

Grayscale, RGBA, palette, CMYK and 16-bit files all become uint8 RGB; the resize policy is the
same one the data pipelines and exported models use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

RESIZE_POLICIES = ("resize", "crop_to_aspect_ratio", "pad")


class ImageReadError(ValueError):
    """An image file could not be read (missing, empty, not an image, truncated, unreadable)."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into a uint8 RGB array [H, W, 3], whatever its mode or bit depth."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            return np.asarray(_to_rgb(image), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: unreadable image ({error})") from None


def _to_rgb(image):
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit integer images: scale the full range to 8 bits, not clip it.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        from PIL import Image

        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        from PIL import Image

        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")  # transparent -> white, not black
    return image.convert("RGB")


def resize_image(image, size: tuple[int, int], policy: str = "resize"):
    """Resize an RGB image [H, W, 3] (or a batch [N, H, W, 3]) to `size` (height, width) by `policy`.

    "resize" stretches (aspect ratio not kept), "crop_to_aspect_ratio" centre-crops to the target
    aspect ratio first, "pad" letterboxes with black. Bilinear with antialiasing; returns float32
    in [0, 255]. Graph-safe: the data pipelines, `predict` and exported models all use it, so an
    image is resized the same way in training and in deployment.
    """
    import tensorflow as tf

    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; expected one of {', '.join(RESIZE_POLICIES)}")
    image = tf.cast(image, tf.float32)
    if policy == "crop_to_aspect_ratio":
        image = _centre_crop(image, size)
    if policy == "pad":
        out = tf.image.resize_with_pad(image, size[0], size[1], antialias=True)
    else:
        out = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.clip_by_value(out, 0.0, 255.0)


def resize_rgb(pixels: np.ndarray, size: tuple[int, int], policy: str = "resize") -> np.ndarray:
    """Numpy wrapper of `resize_image`: uint8 RGB [H, W, 3] -> float32 [height, width, 3] in [0, 255]."""
    return resize_image(pixels, size, policy).numpy()


def _centre_crop(image, size):
    import tensorflow as tf

    shape = tf.shape(image)
    height, width = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
    target = size[1] / size[0]
    crop_w = tf.minimum(width, tf.round(height * target))
    crop_h = tf.minimum(height, tf.round(width / target))
    crop_w, crop_h = tf.maximum(tf.cast(crop_w, tf.int32), 1), tf.maximum(tf.cast(crop_h, tf.int32), 1)
    top, left = (shape[-3] - crop_h) // 2, (shape[-2] - crop_w) // 2
    return tf.image.crop_to_bounding_box(image, top, left, crop_h, crop_w)
