"""The batched `tf.data` pipeline of one split: decode, resize, cache, shuffle, augment, batch.

`split_dataset` is what `DataBundle.dataset` returns. Files are decoded by the one decoder
(`keras_transfer.data.images`), pixels cached before shuffling so files are read once, and the
augmentation draws from (seed, epoch, batch) alone, so a run is reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_transfer.config import DataConfig
from keras_transfer.data.augment import augment_statelessly, augmentation_layers
from keras_transfer.data.cache import cache, cache_mode
from keras_transfer.data.images import decode_image_tensor, on_white, resize_image

if TYPE_CHECKING:
    from keras_transfer.data.bundle import Examples


def split_dataset(examples: Examples, config: DataConfig, split: str, *, training: bool, batch_size: int,
                  in_memory: int):
    """The batched `tf.data.Dataset` of one split's `examples` (named `split`, for the cache).

    `training` shuffles with the seed and applies tf.data augmentation. `in_memory` counts the
    examples of every split that shares the memory cache's budget.
    """
    import tensorflow as tf

    cached = cache_mode(examples, config, in_memory) != "none"
    ds = _examples(examples)
    shuffled = training and examples.tfds is None
    if shuffled:
        # Shuffle the (cheap) paths or indices before decoding: a shuffle buffer of decoded
        # images would hold the whole set in memory and decode it all before the first batch.
        ds = ds.shuffle(len(examples), seed=config.seed, reshuffle_each_iteration=not cached)
    order = ("shuffled", config.seed) if shuffled else "in order"
    if examples.tfds is None and cache_mode(examples, config, in_memory) == "disk":
        # A disk cache holds pixels only; the labels always come from this scan, zipped back in
        # the same (unreshuffled) order. A cache file that says something else about the labels,
        # planted or stale, cannot pair an image with a wrong class.
        pixels = cache(_decode(ds, examples, config).map(lambda x, y: x), examples, config, split, order, in_memory)
        ds = tf.data.Dataset.zip((pixels, ds.map(lambda _, y: y)))
    else:
        ds = cache(_decode(ds, examples, config), examples, config, split, order, in_memory)
    if training and (cached or examples.tfds is not None):
        ds = ds.shuffle(min(len(examples) or 1024, 1024), seed=config.seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    layers = augmentation_layers(config.augment, config.seed) if training and config.augment_in == "data" else []
    options = tf.data.Options()
    options.deterministic = True
    if not layers:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
    # One key per batch from a seeded stream that starts anew, differently, on each pass
    # (epoch): the draws depend on (seed, epoch, batch), never on which thread ran first.
    keys = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)

    def augment(batch, key):
        x, y = batch
        seed = tf.stack([key, tf.constant(config.seed, tf.int64)])
        return tf.clip_by_value(augment_statelessly(layers, tf.cast(x, tf.float32), seed), 0.0, 255.0), y

    # Without AutoGraph: it would rewrite the Keras layers' code on every trace (seconds).
    augment = tf.autograph.experimental.do_not_convert(augment)
    ds = tf.data.Dataset.zip((ds, keys)).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _examples(split: Examples):
    """The split's undecoded examples: (path, label), (pixels, label) or a TFDS (image, label) stream."""
    import tensorflow as tf

    if split.tfds is not None:
        return split.tfds
    if split.paths is not None:
        return tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    return tf.data.Dataset.from_tensor_slices((split.images, split.labels))


def _decode(ds, split: Examples, config: DataConfig):
    """Map undecoded examples to (uint8 pixels at image_size, label), in parallel."""
    import tensorflow as tf

    size, policy = config.image_size, config.resize

    def resize(image):
        return tf.cast(tf.round(resize_image(image, size, policy)), tf.uint8)

    if split.tfds is not None:
        return ds.map(lambda x, y: (resize(_rgb(x)), y), num_parallel_calls=tf.data.AUTOTUNE)
    if split.paths is not None:
        def decode(path, label):  # the one decoder: alpha on white, EXIF orientation applied
            return resize(decode_image_tensor(tf.io.read_file(path))), label

        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if tuple(split.images.shape[1:3]) == tuple(size):
        return ds.map(lambda x, y: (tf.cast(x, tf.uint8), y))
    return ds.map(lambda x, y: (resize(x), y), num_parallel_calls=tf.data.AUTOTUNE)


def _rgb(image):
    """A TFDS image (grey, grey+alpha, RGB or RGBA) as RGB, transparent pixels on white."""
    image = on_white(image)
    image.set_shape([None, None, 3])
    return image
