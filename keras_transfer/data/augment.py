"""Augmentation from a list of names, as Keras preprocessing layers (in tf.data or in the model).

The geometric augmentations (flip, rotation, zoom, translation) are fused into one
`RandomGeometry` layer that resamples each image once; contrast and brightness are Keras's own
layers. Pixel values stay in [0, 255]. In the tf.data pipeline the layers draw statelessly from a
seed per batch (`augment_statelessly`), so the same config and data augment the same way on
every run; inside the model (`augment_in: model`) they draw from their seeded generators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from keras_transfer.config import augmentation_strengths
from keras_transfer.core.layers import RandomGeometry

_GEOMETRIC = ("flip", "rotation", "zoom", "translation")


def augmentation_layers(spec: Sequence[str] | Mapping[str, float | None], seed: int = 0) -> list[keras.layers.Layer]:
    """Build augmentation layers from names (`["flip", "rotation"]`) or names with strengths
    (`{"rotation": 0.2}`). Unknown names raise ValueError naming the closest valid one."""
    chosen = augmentation_strengths(spec)
    layers: list[keras.layers.Layer] = []
    if any(name in chosen for name in _GEOMETRIC):
        layers.append(RandomGeometry(
            flip="flip" in chosen, rotation=chosen.get("rotation") or 0.0, zoom=chosen.get("zoom") or 0.0,
            translation=chosen.get("translation") or 0.0, seed=seed, name="augment_geometry"))
    if "contrast" in chosen:
        layers.append(keras.layers.RandomContrast(chosen["contrast"], value_range=(0, 255), seed=seed + 1,
                                                  name="augment_contrast"))
    if "brightness" in chosen:
        layers.append(keras.layers.RandomBrightness(chosen["brightness"], value_range=(0, 255), seed=seed + 2,
                                                    name="augment_brightness"))
    return layers


def augment_statelessly(layers: Sequence[keras.layers.Layer], images, seed):
    """Apply `augmentation_layers` to a float batch with every draw made from `seed` alone.

    `seed` is an integer tensor of shape [2]. Keras's random layers draw from a SeedGenerator's
    state, and tf.data's parallel map advances that state in whatever order its threads run, so
    two runs with the same seed augmented differently. Here each layer's random factors come
    from `tf.random.stateless_uniform` keyed by (`seed`, layer), and the layer's own
    `transform_images` applies them: the same seed gives the same images, in any order.
    """
    import tensorflow as tf

    for index, layer in enumerate(layers):
        key = tf.random.experimental.stateless_fold_in(seed, index)
        if isinstance(layer, RandomGeometry):
            images = layer.stateless(images, key)
            continue
        shape = (tf.shape(images)[0], 1, 1, 1)
        low, high = layer.factor
        if isinstance(layer, keras.layers.RandomContrast):
            factor = tf.random.stateless_uniform(shape, key, 1.0 - low, 1.0 + high, dtype=images.dtype)
            images = layer.transform_images(images, {"contrast_factor": factor}, training=True)
        elif isinstance(layer, keras.layers.RandomBrightness):
            delta = tf.random.stateless_uniform(shape, key, low, high, dtype=images.dtype)
            span = layer.value_range[1] - layer.value_range[0]
            images = layer.transform_images(images, {"rgb_delta": delta * span}, training=True)
        else:  # every layer augmentation_layers makes is one of the three above
            raise TypeError(f"no stateless form of augmentation layer {layer.name}")
    return images


def augmentation_model(spec, seed: int = 0) -> keras.Sequential | None:
    """Wrap the augmentation layers in one `keras.Sequential` named `augment`, or None if empty."""
    layers = augmentation_layers(spec, seed)
    return keras.Sequential(layers, name="augment") if layers else None
