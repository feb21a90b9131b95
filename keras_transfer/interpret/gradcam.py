"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The class score's gradient with respect to the last convolutional block's feature maps, averaged
over space, weighs those maps; their weighted sum, rectified and scaled to [0, 1], is the heat
map. It works for every backbone the toolkit builds because the feature layer is found through
`backbone_blocks(model)`, the same block map freezing and per-block rates use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from keras_transfer.core.names import unknown_name_message
from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks
from keras_transfer.core.layers import single_view_model


def _spatial(layer: keras.layers.Layer) -> bool:
    shape = getattr(layer, "output", None)
    return shape is not None and not isinstance(shape, (list, tuple)) and len(shape.shape) == 4


def feature_layer(model: keras.Model, block: str | None = None) -> keras.layers.Layer:
    """The layer whose feature maps Grad-CAM weighs: the last spatial layer of `block`.

    `block` is a block name of `backbone_blocks(model)` (e.g. `block6`, `conv4`) or a layer name;
    the default is the last block before the head that still has a spatial [N, H, W, C] output.
    """
    blocks = backbone_blocks(single_view_model(model))
    if block is None:
        names = [name for name in blocks if name != HEAD_BLOCK]
        for name in reversed(names):
            spatial = [layer for layer in blocks[name] if _spatial(layer)]
            if spatial:
                return spatial[-1]
        raise ValueError(f"model {model.name!r} has no layer with a spatial [N, H, W, C] output for Grad-CAM")
    if block in blocks:
        spatial = [layer for layer in blocks[block] if _spatial(layer)]
        if not spatial:
            raise ValueError(f"block {block!r} of {model.name!r} has no spatial output (it is after the pooling)")
        return spatial[-1]
    names = [layer.name for layer in model.layers]
    if block in names:
        layer = model.get_layer(block)
        if not _spatial(layer):
            raise ValueError(f"layer {block!r} of {model.name!r} has no spatial [N, H, W, C] output")
        return layer
    raise ValueError(unknown_name_message("block or layer", block, [*blocks, *names], where=model.name))


class NoGradientError(ValueError):
    """The model's score does not depend differentiably on the feature maps (e.g. a kNN head)."""


class GradCAM:
    """A reusable Grad-CAM for one model and feature layer: `cam(images, classes)` -> heat maps.

    Images are raw pixels in [0, 255], as the toolkit's models take them. `compiled=True` traces
    the gradient computation once as a `tf.function`: worth it for many batches (Lite0, 16 images
    at 224x224 on 2 cores: 0.3 s per call against 1.6 s eager, after a 2.7 s trace), not for one,
    so eager is the default.
    """

    def __init__(self, model: keras.Model, block: str | None = None, *, compiled: bool = False):
        import tensorflow as tf

        model = single_view_model(model)  # a model averaging views: the evidence in the image as given
        self.model = model
        self.layer = feature_layer(model, block)
        # One model with two outputs, the feature maps and the prediction, sharing the weights. The
        # class score is the pre-softmax logit where the head exposes it: a saturated probability
        # (p = 1 - 1e-8) has a float32 gradient of zero, and its map would be blank.
        last = model.layers[-1]
        activation = getattr(getattr(last, "activation", None), "__name__", "")
        self._dense = last if isinstance(last, keras.layers.Dense) and activation in ("softmax", "sigmoid") else None
        top = self._dense.input if self._dense is not None else model.output
        self._both = keras.Model(model.inputs, [self.layer.output, top], name="gradcam")

        def maps(images, classes):
            with tf.GradientTape() as tape:
                features, outputs = self._both(images, training=False)
                features = tf.cast(features, tf.float32)
                if self._dense is not None:
                    outputs = tf.matmul(tf.cast(outputs, tf.float32), tf.cast(self._dense.kernel, tf.float32))
                    if self._dense.use_bias:
                        outputs = outputs + tf.cast(self._dense.bias, tf.float32)
                outputs = tf.cast(outputs, tf.float32)
                # A negative class means "the predicted one": decided in the same pass, not a second forward.
                if outputs.shape[-1] == 1:  # one sigmoid unit: class 1 at p >= 0.5, i.e. logit >= 0
                    predicted = tf.cast(outputs[:, 0] >= (0.0 if self._dense is not None else 0.5), tf.int32)
                else:
                    predicted = tf.argmax(outputs, axis=-1, output_type=tf.int32)
                classes = tf.where(classes < 0, predicted, classes)
                if outputs.shape[-1] == 1:  # binary: one sigmoid unit; the evidence for class 0 is -logit
                    score = tf.where(tf.equal(classes, 1), outputs[:, 0], -outputs[:, 0])
                else:
                    score = tf.gather(outputs, classes, batch_dims=1)
            grads = tape.gradient(score, features)
            if grads is None:
                raise NoGradientError(f"{model.name!r}'s output has no gradient with respect to {self.layer.name!r} "
                                      "(a kNN head?): Grad-CAM needs a differentiable classifier")
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
            peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
            return cam / tf.maximum(peak, 1e-12)

        # No autograph: the branches in `maps` are on static shapes, and an error raised while
        # tracing (NoGradientError) should reach the caller as itself.
        self._maps = tf.function(maps, reduce_retracing=True, autograph=False) if compiled else maps

    def __call__(self, images: np.ndarray, classes: Sequence[int] | None = None) -> np.ndarray:
        """Heat maps [N, H, W] in [0, 1] at the images' size, one per image.

        `classes` are the class indices to explain (default: each image's predicted class).
        """
        import tensorflow as tf

        images = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        if classes is None:
            classes = np.full(len(images), -1)
        cams = self._maps(images, tf.convert_to_tensor(np.asarray(classes, dtype=np.int32)))
        size = tuple(int(d) for d in images.shape[1:3])
        return tf.image.resize(cams[..., None], size, method="bilinear")[..., 0].numpy()


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Class indices from model outputs: argmax, or p >= 0.5 for a single sigmoid unit."""
    outputs = np.asarray(outputs)
    return (outputs[:, 0] >= 0.5).astype(int) if outputs.shape[-1] == 1 else outputs.argmax(axis=1)


def gradcam(model: keras.Model, images: np.ndarray, classes: Sequence[int] | None = None,
            block: str | None = None) -> np.ndarray:
    """Grad-CAM heat maps [N, H, W] in [0, 1] of `images` for `classes` (default: predicted).

    One-shot form of `GradCAM(model, block)(images, classes)`; `block` names a block or layer
    (default: the last convolutional block).
    """
    return GradCAM(model, block)(images, classes)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image (uint8 or [0, 255] floats) with the heat map blended on top in the 'jet' colours."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * np.asarray(image, np.float32) + alpha * colours, 0, 255).astype(np.uint8)


def plot_gradcam(images: np.ndarray, heatmaps: np.ndarray, titles: Sequence[str], path: str | Path,
                 *, columns: int = 4, suptitle: str = "") -> Path:
    """Save a grid of Grad-CAM overlays, each titled (e.g. 'true: rose / pred: tulip 0.81')."""
    from keras_transfer.core.plots import new_figure, save_figure

    n = len(images)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    fig, axes = new_figure(rows, columns, size=(2.4 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, heat, title in zip(axes.ravel(), images, heatmaps, titles):
        ax.imshow(overlay(image, heat))
        ax.set_title(title, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path)
