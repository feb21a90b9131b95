"""Test-time augmentation: average the model's probabilities over a few views of each image.

The views are the original, its horizontal mirror (only where a mirrored image is still of the
same class: the default follows the run's own training augmentation, so digits are never flipped),
and two crops of 90% of the image, top-left and bottom-right, resized back. Every view is a plain
resize of the same pixels, so the model sees nothing it was not trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

TTA_VIEWS = ("flip", "crop")
_CROP = 0.9


def default_views(augment: Any) -> tuple[str, ...]:
    """The TTA views for a run trained with data augmentation `augment` (a list or mapping of names).

    Flipping is only a valid view when the model was trained on flips; crops always are.
    """
    names = set(augment or ())
    return ("flip", "crop") if any(name in names for name in ("flip", "horizontal_flip")) else ("crop",)


def augmented_views(images, views: Iterable[str] = TTA_VIEWS) -> list:
    """The views of a batch of images [N, H, W, 3] (tensors in, tensors out): the original first."""
    import tensorflow as tf

    from keras_transfer.core.names import unknown_name_message

    views = tuple(views)
    for view in views:
        if view not in TTA_VIEWS:
            raise ValueError(unknown_name_message("TTA view", view, TTA_VIEWS))
    images = tf.convert_to_tensor(images, tf.float32)
    size = tf.shape(images)[1:3]
    out = [images]
    if "flip" in views:
        out.append(tf.image.flip_left_right(images))
    if "crop" in views:
        height, width = images.shape[1], images.shape[2]
        h, w = round(height * _CROP), round(width * _CROP)
        for top, left in ((0, 0), (height - h, width - w)):
            crop = images[:, top:top + h, left:left + w, :]
            out.append(tf.clip_by_value(tf.image.resize(crop, size, method="bilinear", antialias=True), 0.0, 255.0))
    return out


def tta_forward(model, views: Iterable[str] = TTA_VIEWS) -> Callable:
    """A function pixels [N, H, W, 3] -> probabilities averaged over the views (one traced call)."""
    import tensorflow as tf

    views = tuple(views)

    @tf.function(reduce_retracing=True)
    def forward(x):
        batch = augmented_views(x, views)
        n = tf.shape(x)[0]
        outputs = model(tf.concat(batch, axis=0), training=False)  # one batch: one trip through the graph
        return tf.reduce_mean(tf.reshape(outputs, (len(batch), n, -1)), axis=0)

    return forward


def tta_predict(model, images, views: Iterable[str] = TTA_VIEWS, batch_size: int = 32) -> np.ndarray:
    """Probabilities of `images` (an array [N, H, W, 3] in [0, 255] or a (pixels, labels) dataset),
    averaged over the original and its `views`; shaped like `model`'s own outputs."""
    forward = tta_forward(model, views)
    if isinstance(images, np.ndarray):
        return np.concatenate([np.asarray(forward(images[i:i + batch_size]))
                               for i in range(0, len(images), batch_size)])
    return np.concatenate([np.asarray(forward(x)) for x, *_ in images])
