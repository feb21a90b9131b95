"""A SavedModel for TensorFlow Serving: two signatures, labels inside, versioned folders.

`serving_default` takes a uint8 image batch of any height and width and resizes it inside with
the training policy; `serve_bytes` takes encoded JPEG/PNG/GIF/BMP strings and reads each image's
size from its header before decoding it, so a small file that would decode into gigabytes (a
decompression bomb) is refused with an error instead, then decodes it with training's own decoder
(`keras_transfer.data.images.decode_image_tensor`: transparent pixels on white, a JPEG's EXIF
orientation applied in the graph). Both return `probabilities`, `class_id` and
`label`, with the class names stored as an asset. TensorFlow Serving wants a numbered version
folder under the model's base path: `export_run` writes `export/saved_model/<version>/`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from keras_transfer.core.files import atomic_folder, write_labels
from keras_transfer.data.images import DEFAULT_MAX_PIXELS

# 50 megapixels: a 48 MP phone photo passes; decoding one costs ~150 MB. A 20000x20000 PNG
# (400 MP, 1.2 GB decoded, far more inside the resize) does not.


def _header_pixels(data):
    """Width x height from an encoded image's header, without decoding it (0 when unknown)."""
    import tensorflow as tf

    def be32(offset):  # PNG stores its size big-endian
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, 4), tf.uint8), tf.int64)
        return ((raw[0] * 256 + raw[1]) * 256 + raw[2]) * 256 + raw[3]

    def le(offset, n):  # GIF (16-bit) and BMP (32-bit, signed height) store it little-endian
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, n), tf.uint8), tf.int64)
        value = tf.reduce_sum(raw * tf.constant([256 ** i for i in range(n)], tf.int64))
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value)) if n == 4 else value

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    magic = tf.strings.substr(data, 0, 4)
    long_enough = tf.strings.length(data) >= 26
    return tf.case([
        (tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff"), jpeg),
        (tf.logical_and(tf.equal(magic, b"\x89PNG"), long_enough), lambda: be32(16) * be32(20)),
        (tf.logical_and(tf.equal(tf.strings.substr(data, 0, 3), b"GIF"), long_enough), lambda: le(6, 2) * le(8, 2)),
        (tf.logical_and(tf.equal(tf.strings.substr(data, 0, 2), b"BM"), long_enough), lambda: le(18, 4) * le(22, 4)),
    ], default=lambda: tf.constant(0, tf.int64))


def _serving_module(model, labels_file: Path, resize: str, max_pixels: int):
    import tensorflow as tf

    from keras_transfer.data.images import decode_image_tensor, resize_image

    from keras_transfer.core.files import is_regression, read_labels

    height, width = (int(d) for d in model.input.shape[1:3])
    regression = is_regression(read_labels(labels_file))
    binary = int(model.output.shape[-1]) == 1 and not regression

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.labels = tf.saved_model.Asset(str(labels_file))
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(self.labels, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                              tf.string, tf.lookup.TextFileIndex.WHOLE_LINE), default_value="")

        def outputs(self, pixels):
            scores = tf.cast(self.model(pixels, training=False), tf.float32)
            if regression:  # labels.txt names the one target: values in its units, no classes
                return {"values": scores}
            if binary:
                scores = tf.concat([1.0 - scores, scores], axis=-1)
            class_id = tf.argmax(scores, axis=-1)
            return {"probabilities": scores, "class_id": class_id, "label": self.table.lookup(class_id)}

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def serve_images(self, images):
            return self.outputs(resize_image(images, (height, width), resize))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
        def serve_bytes(self, encoded):
            def decode(data):
                pixels = _header_pixels(data)
                check = tf.debugging.assert_less_equal(
                    pixels, tf.constant(max_pixels, tf.int64),
                    message=f"image too large: its header declares more than {max_pixels} pixels "
                            "(a decompression bomb?); resize it before sending")
                with tf.control_dependencies([check]):
                    image = decode_image_tensor(data)  # training's decoder: alpha on white, EXIF applied
                return resize_image(image, (height, width), resize)

            pixels = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
            return self.outputs(pixels)

    return Serving()


def export_saved_model(model, path: str | os.PathLike, class_names: Sequence[str], *, resize: str = "resize",
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Write a SavedModel with `serving_default` (uint8 images) and `serve_bytes` (encoded images) at `path`.

    Both signatures return `probabilities` [N, C], `class_id` [N] and `label` [N] (a regression
    model, whose `class_names` is its one target's name, returns `values` [N, 1]); images of any
    size are resized inside with `resize` (the training policy), and `serve_bytes` refuses an image
    whose header declares more than `max_pixels` pixels before decoding it. Needs no keras_transfer
    to serve. The folder is written atomically; for TensorFlow Serving, pass a numbered version
    folder (see `next_version_dir`).
    """
    import tensorflow as tf

    def write(tmp: Path):
        with tempfile.TemporaryDirectory() as folder:
            labels = write_labels(Path(folder) / "labels.txt", class_names)
            module = _serving_module(model, labels, resize, int(max_pixels))
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve_images,
                                                              "serve_bytes": module.serve_bytes})

    return atomic_folder(Path(path), write)


def _versions(base: Path) -> list[int]:
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())


def next_version_dir(base: str | os.PathLike) -> Path:
    """`base/<n>`: version 1 for a new base path, else one past the highest version already there.

    TensorFlow Serving watches `base` and serves the highest numbered version, so a re-export
    becomes the new version without touching the one being served.
    """
    versions = _versions(Path(base))
    return Path(base) / str(versions[-1] + 1 if versions else 1)


def latest_version_dir(base: str | os.PathLike) -> Path | None:
    """The highest numbered SavedModel version under `base` (what TF Serving would serve), or None."""
    versions = _versions(Path(base))
    return Path(base) / str(versions[-1]) if versions else None
