"""Read one image file of any format and mode into RGB pixels at a requested size.

Grayscale, RGBA, palette, CMYK and 16-bit files all become uint8 RGB; the resize policy is the
same one the data pipelines and exported models use.

One decoder for every reader: `decode_image_tensor` (TensorFlow ops only, so it runs in tf.data
and inside an exported SavedModel) decodes JPEG, PNG, GIF, BMP and WebP for training, the
pre-scan, `evaluate`, `predict` and the SavedModel's `serve_bytes`. Transparent pixels are
composited on white (PNG and GIF alpha, grey+alpha, palette transparency), and a JPEG's EXIF
orientation is applied, so a phone photo is upright everywhere. Formats TensorFlow cannot read
(TIFF, ...) are read by PIL for `predict` with the same two rules. The image's size is read from its header and
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

from keras_transfer.config import DEFAULT_MAX_PIXELS, RESIZE_POLICIES

# Bumped whenever decoding changes the pixels of some file, so caches of decoded pixels or of
# features computed from them are never read across the change (2: alpha on white, EXIF applied).
DECODER_VERSION = 2
# What tf.io.decode_image reads, by PIL's format names (MPO: a JPEG with extra frames, from cameras).
TENSORFLOW_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")


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
        if image.format in TENSORFLOW_FORMATS:  # what training reads: decoded by training's decoder
            return _decode_file(path, image.format)
        try:
            image.load()  # decode now, so a truncated file fails here and not later
            return np.asarray(_to_rgb(_upright(image)), dtype=np.uint8)
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
        rgba = np.asarray(image.convert("RGBA"), dtype=np.int32)
        return _on_white_numpy(rgba[..., :3], rgba[..., 3:])  # transparent -> white, not black
    return image.convert("RGB")


def _on_white_numpy(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # The integer arithmetic of `on_white`, so PIL-read and TensorFlow-read pixels agree exactly.
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _upright(image):
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _decode_file(path: Path, fmt: str) -> np.ndarray:
    import tensorflow as tf

    try:
        return image_decoder()(tf.constant(path.read_bytes())).numpy()
    except OSError as error:
        raise ImageReadError(path, f"unreadable file ({error.strerror or type(error).__name__})") from None
    except tf.errors.OpError:
        raise ImageReadError(path, f"unreadable image (truncated or corrupt {fmt} data)") from None


_DECODER = []


def image_decoder():
    """`decode_image_tensor` traced once per process, for eager callers (`predict`, the start-up
    check): one graph call per file instead of some fifty eager operations."""
    if not _DECODER:
        import tensorflow as tf

        _DECODER.append(tf.function(decode_image_tensor, input_signature=[tf.TensorSpec([], tf.string)]))
    return _DECODER[0]


def decode_image_tensor(data):
    """Decode encoded JPEG/PNG/GIF/BMP/WebP bytes (a scalar string tensor) into uint8 RGB [H, W, 3].

    The toolkit's one decoder, graph-safe (tf.data, SavedModel signatures): the first frame of
    an animation; transparent pixels composited on white (RGBA, grey+alpha, a GIF's transparent
    colour); grey made RGB; a JPEG's EXIF orientation applied. Raises TensorFlow's
    InvalidArgumentError for data it cannot decode.
    """
    import tensorflow as tf

    # Plain graph building: AutoGraph would rewrite every helper below on each trace (seconds per
    # tf.data pipeline) and they hold no Python control flow on tensors for it to convert.
    return tf.autograph.experimental.do_not_convert(_decode)(data)


def _decode(data):
    import tensorflow as tf

    data = _gif_transparency_to_white(data)
    image = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.uint8)
    image = upright(_to_rgb_on_white(image), exif_orientation(data))
    image.set_shape([None, None, 3])
    return image


def on_white(image):
    """Decoded uint8 pixels with 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels -> RGB,
    transparent pixels composited on white (graph-safe; channels may be known only at run time)."""
    import tensorflow as tf

    last = tf.shape(image)[-1] - 1
    # Channels without branches (cheap to trace in every tf.data map): grey is repeated, alpha is last.
    rgb = tf.gather(image, tf.gather(tf.constant([[0, 0, 0], [0, 0, 0], [0, 1, 2], [0, 1, 2]]), last), axis=2)

    def blend():
        colour, alpha = tf.cast(rgb, tf.int32), tf.cast(tf.gather(image, [last], axis=2), tf.int32)
        return tf.cast((colour * alpha + 255 * (255 - alpha) + 127) // 255, tf.uint8)

    return tf.cond(tf.equal(last % 2, 1), blend, lambda: rgb)


def _to_rgb_on_white(image):
    """`on_white` with a fast path for the common case, an RGB image, which needs nothing."""
    import tensorflow as tf

    return tf.cond(tf.equal(tf.shape(image)[-1], 3), lambda: image, lambda: on_white(image))


# A GIF's first graphic control extension follows its palette (768 bytes at most) and the
# application extensions (looping, XMP metadata) that some programs put before it.
_GIF_WINDOW = 1 << 16


def _bytes(data, length: int):
    """The first `length` bytes of `data` as int32 values, zero-padded to `length` + 32 (so reads
    just past the end of a short or damaged file stay in range)."""
    import tensorflow as tf

    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 0, length), tf.uint8), tf.int32)
    return tf.pad(raw, [[0, length + 32 - tf.shape(raw)[0]]])


def _find(values, pattern, start):
    """(found, position) of the first occurrence of `pattern` in `values` at or after `start`."""
    import tensorflow as tf

    n = tf.shape(values)[0] - len(pattern)
    hit = tf.range(n) >= start
    for k, byte in enumerate(pattern):
        hit = tf.logical_and(hit, tf.equal(values[k:k + n], byte))
    return tf.reduce_any(hit), tf.cast(tf.argmax(tf.cast(hit, tf.int32)), tf.int32)


def _read(data, offset, size: int):
    """`size` bytes of `data` from `offset` as int32 values, zero-padded past the end of the data."""
    import tensorflow as tf

    offset = tf.clip_by_value(offset, 0, tf.strings.length(data))
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int32)
    raw = tf.pad(raw, [[0, size - tf.shape(raw)[0]]])
    raw.set_shape([size])
    return raw


def _number(raw, little):
    """Unsigned integer from bytes [..., n] in the byte order `little` says."""
    import tensorflow as tf

    n = raw.shape[-1]
    weights = tf.constant([256 ** i for i in range(n)], tf.int32)
    return tf.where(little, tf.reduce_sum(raw * weights, axis=-1), tf.reduce_sum(raw * weights[::-1], axis=-1))


def exif_orientation(data):
    """The EXIF orientation (1-8) of encoded JPEG bytes, read in-graph; 1 when absent or not a JPEG.

    The EXIF block is an APP1 segment among the first application segments after the JPEG's
    start marker (cameras put it first, some programs after a JFIF APP0): a few small reads, not a
    scan of the file.
    """
    import tensorflow as tf

    jpeg = tf.reduce_all(tf.equal(_read(data, 0, 2), [0xFF, 0xD8]))
    position, going, tiff = tf.constant(2), jpeg, tf.constant(-1)
    for _ in range(4):  # APP0 (JFIF), APP1 (EXIF), APP2 (ICC), ...: the EXIF block is among the first
        head = _read(data, position, 10)
        application = tf.logical_and(tf.equal(head[0], 0xFF), tf.equal(head[1] // 16, 0xE))
        exif = tf.logical_and(tf.equal(head[1], 0xE1), tf.reduce_all(tf.equal(head[4:10], [0x45, 0x78, 0x69, 0x66, 0, 0])))
        tiff = tf.where(tf.logical_and(going, tf.logical_and(exif, tiff < 0)), position + 10, tiff)
        going = tf.logical_and(going, application)
        position = position + 2 + head[2] * 256 + head[3]
    header = _read(data, tiff, 8)
    little = tf.equal(header[0], 0x49)  # "II": little-endian; "MM": big-endian
    ifd = tf.clip_by_value(_number(header[4:8], little), 0, 1 << 20)
    table = _read(data, tiff + ifd, 2 + 12 * 64)  # IFD0 lists the orientation among its first entries
    count = _number(table[:2], little)
    entries = tf.reshape(table[2:], [64, 12])
    tags, values = _number(entries[:, 0:2], little), _number(entries[:, 8:10], little)
    match = tf.logical_and(tf.equal(tags, 0x0112), tf.range(64) < count)
    value = tf.reduce_max(tf.where(match, values, 0))
    valid = tf.logical_and(tiff >= 0, tf.logical_and(value >= 1, value <= 8))
    return tf.where(valid, value, 1)


def upright(image, orientation):
    """`image` turned as its EXIF `orientation` (1-8) says, as PIL's `ImageOps.exif_transpose` does.

    Orientations 5-8 transpose first; then rows and/or columns are reversed (2: mirror, 3: 180
    degrees, 4: upside down, 6: 90 degrees clockwise, 8: counter-clockwise, 5 and 7: transposes).
    """
    import tensorflow as tf

    def maybe(condition, turn):
        return lambda x: tf.cond(condition, lambda: turn(x), lambda: x)

    o = tf.convert_to_tensor(orientation, tf.int32)
    image = maybe(o >= 5, lambda x: tf.transpose(x, [1, 0, 2]))(image)
    rows = tf.reduce_any(tf.equal(o, [3, 4, 7, 8]))
    columns = tf.reduce_any(tf.equal(o, [2, 3, 6, 7]))
    image = maybe(rows, lambda x: tf.reverse(x, [0]))(image)
    return maybe(columns, lambda x: tf.reverse(x, [1]))(image)


def _gif_transparency_to_white(data):
    """GIF bytes whose transparent colour is made opaque white; other data unchanged.

    TensorFlow's GIF decoder gives transparent pixels as black and no alpha, so the first
    frame's transparency flag is cleared and its palette entry set to white before decoding.
    """
    import tensorflow as tf

    def patch():
        b = _bytes(data, _GIF_WINDOW)
        flags = b[10]
        global_table = tf.bitwise.bitwise_and(flags, 0x80) > 0
        table_bytes = tf.where(global_table, 3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(flags, 7)), 0)
        found, gce = _find(b, [0x21, 0xF9, 0x04], 13 + table_bytes)  # graphic control extension
        packed, index = b[gce + 3], b[gce + 6]
        transparent = tf.logical_and(found, tf.bitwise.bitwise_and(packed, 1) > 0)
        descriptor = gce + 8
        local_flags = b[descriptor + 9]
        local_table = tf.logical_and(tf.equal(b[descriptor], 0x2C), tf.bitwise.bitwise_and(local_flags, 0x80) > 0)
        entry = tf.where(local_table, descriptor + 10, 13) + 3 * index
        patchable = tf.logical_and(transparent, tf.logical_or(local_table, global_table))

        def opaque_white():
            cleared = _replace(data, gce + 3, tf.gather(_BYTE_STRINGS(), tf.bitwise.bitwise_and(packed, 0xFE)))
            return _replace(cleared, entry, tf.constant(bytes([255, 255, 255])))

        return tf.cond(patchable, opaque_white, lambda: data)

    return tf.cond(tf.equal(tf.strings.substr(data, 0, 3), b"GIF"), patch, lambda: data)


def _replace(data, offset, piece):
    import tensorflow as tf

    rest = offset + tf.strings.length(piece)
    return tf.strings.join([tf.strings.substr(data, 0, offset), piece,
                            tf.strings.substr(data, rest, tf.strings.length(data) - rest)])


def _BYTE_STRINGS():  # noqa: N802 - a constant, built lazily (TensorFlow loads on first use)
    import tensorflow as tf

    return tf.constant([bytes([i]) for i in range(256)])


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
