"""Read one image file of any format and mode into RGB pixels at a requested size.

Grayscale, RGBA, palette, CMYK and 16-bit files all become uint8 RGB; the resize policy is the
same one the data pipelines and exported models use. The image's size is read from its header and
checked against a pixel limit before anything is decoded: a 400 KB PNG can declare 20000 x 20000
pixels and cost gigabytes to decode (a decompression bomb).

Error reasons are written by us, never copied from a decoder's message: decoders quote header
bytes in theirs, and a path from someone else's CSV may name a file that is not an image at all.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESIZE_POLICIES = ("resize", "crop_to_aspect_ratio", "pad")
# PIL's own default limit (Image.MAX_IMAGE_PIXELS): about 9500 x 9500, 268 MB of decoded RGB.
DEFAULT_MAX_PIXELS = 89_478_485


class ImageReadError(ValueError):
    """An image file could not be read (missing, empty, not an image, too large, truncated, unreadable).

    `str(error)` is `path: reason`; `error.path` and `error.reason` hold the two parts.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header declares: its format (PIL's name, e.g. "PNG") and size."""

    format: str
    width: int
    height: int


def image_header(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Read only the header of the image at `path` and refuse it if it declares more than `max_pixels`.

    Nothing is decoded, so the check costs the same for a bomb as for a thumbnail. Raises
    ImageReadError with a one-line reason (`path: reason`) for a missing, empty, unreadable,
    non-image or too large file; the predict CLI and the data pre-check call it per file.
    """
    path = Path(path)
    with _opened(path, max_pixels) as image:
        return ImageHeader(str(image.format), *image.size)


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file into a uint8 RGB array [H, W, 3], whatever its mode or bit depth.

    The header's size is checked against `max_pixels` first (see `image_header`); every failure is
    an ImageReadError with a one-line reason.
    """
    path = Path(path)
    with _opened(path, max_pixels) as image:
        try:
            image.load()  # decode now, so a truncated file fails here and not later
            return np.asarray(_to_rgb(image), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError):
            reason = f"unreadable image (truncated or corrupt {image.format} data)"
            raise ImageReadError(path, reason) from None


class _opened:
    """`with _opened(path, max_pixels) as image`: PIL's lazily opened image, its size checked.

    Every failure is an ImageReadError with a reason in our own words.
    """

    def __init__(self, path: Path, max_pixels: int):
        self.path, self.max_pixels, self.image = path, int(max_pixels), None

    def __enter__(self):
        from PIL import Image, UnidentifiedImageError

        # PIL refuses images above twice its own global limit inside open() itself; the limit here
        # is ours, so PIL's is raised to it (never lowered: other code in the process may rely on it).
        if Image.MAX_IMAGE_PIXELS is not None and self.max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = self.max_pixels
        path = self.path
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
                # A FIFO named photo.jpg would block open() for ever; a device could stream without end.
                raise ImageReadError(path, f"not a regular file ({_file_kind(info.st_mode)}), skipped")
            if stat.S_ISREG(info.st_mode) and info.st_size == 0:
                raise ImageReadError(path, "empty file (0 bytes)")
            self.image = Image.open(path)
        except ImageReadError:
            raise
        except FileNotFoundError:
            raise ImageReadError(path, "no such file") from None
        except PermissionError:
            raise ImageReadError(path, "permission denied") from None
        except IsADirectoryError:
            raise ImageReadError(path, "a folder, not an image file") from None
        except Image.DecompressionBombError:
            raise ImageReadError(path, _too_many(None, self.max_pixels)) from None
        except (UnidentifiedImageError, SyntaxError, ValueError, EOFError):
            raise ImageReadError(path, "not an image file") from None
        except OSError as error:
            raise ImageReadError(path, f"unreadable file ({error.strerror or type(error).__name__})") from None
        width, height = self.image.size
        if width * height > self.max_pixels:
            self.image.close()
            raise ImageReadError(path, _too_many((width, height), self.max_pixels))
        return self.image

    def __exit__(self, *exc) -> None:
        if self.image is not None:
            self.image.close()


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def _too_many(size: tuple[int, int] | None, max_pixels: int) -> str:
    declared = f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels" if size else "far more pixels"
    return (f"image too large: its header declares {declared}, over the limit of {max_pixels:,} "
            "(a decompression bomb?); raise data.max_pixels (or --max-pixels) to allow it")


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
