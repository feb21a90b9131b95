"""The toolkit's own Keras layers, registered so saved models reload without custom objects.

Built-in layers are used wherever they suffice (`Rescaling`, `Normalization`); this module holds
only what Keras has no layer for.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

# ImageNet channel means in BGR order, as the original Caffe VGG/ResNet models expect.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="keras_transfer")
class CaffePreprocess(keras.layers.Layer):
    """Turn raw RGB pixels in [0, 255] into the BGR, mean-subtracted input of Caffe-era models.

    VGG16/19 and ResNet50/101/152 (v1) were trained on BGR images with the ImageNet channel mean
    removed; putting this inside the model means callers never call `preprocess_input`.
    """

    def call(self, inputs):
        bgr = ops.flip(ops.cast(inputs, self.compute_dtype), axis=-1)
        return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def preprocessing_layers(mode: str) -> list[keras.layers.Layer]:
    """Return the layers that map raw RGB [0, 255] pixels to a family's expected input.

    Modes follow `keras.applications.imagenet_utils`: "caffe" (BGR minus mean), "tf" (to [-1, 1]),
    "torch" (to [0, 1], then ImageNet mean/std), and "none" for families that already carry their
    preprocessing inside the model.
    """
    if mode == "caffe":
        return [CaffePreprocess(name="preprocess")]
    if mode == "tf":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")]
    if mode == "torch":
        mean = [0.485, 0.456, 0.406]
        std = [0.229, 0.224, 0.225]
        return [
            keras.layers.Rescaling(1.0 / 255.0, name="preprocess_scale"),
            keras.layers.Normalization(mean=mean, variance=[s * s for s in std], name="preprocess"),
        ]
    if mode == "none":
        return []
    raise ValueError(f"unknown preprocessing mode {mode!r}; expected caffe, tf, torch or none")


@keras.saving.register_keras_serializable(package="keras_transfer")
class RandomGeometry(keras.layers.Layer):
    """Random flip, rotation, zoom and translation fused into one affine resample per image.

    Keras's RandomFlip, RandomRotation, RandomZoom and RandomTranslation each pass over every
    pixel (measured here: 18, 46 and 38 ms for a 32x224x224 batch on 2 cores); composing their
    matrices and resampling once costs about one of them, which keeps the input pipeline ahead of
    training. Strengths follow the Keras layers: `rotation` and `zoom` are fractions (of a full
    turn, and of the size), `translation` a fraction of height and width. Active only in training.
    """

    def __init__(self, flip: bool = False, rotation: float = 0.0, zoom: float = 0.0, translation: float = 0.0,
                 fill_mode: str = "reflect", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.flip, self.rotation, self.zoom, self.translation = bool(flip), float(rotation), float(zoom), float(translation)
        self.fill_mode, self.seed = fill_mode, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images

        def uniform(n, low, high):
            return keras.random.uniform((n,), low, high, seed=self.seed_generator)

        return self.resample(images, uniform)

    def stateless(self, images, seed):
        """The same augmentation with every draw made from `seed` (an integer tensor of shape [2])
        alone, TensorFlow only: the same seed gives the same images in any order of execution,
        as tf.data's parallel map needs (see `keras_transfer.data.augment.augment_statelessly`)."""
        import tensorflow as tf

        draws = iter(range(16))

        def uniform(n, low, high):
            key = tf.random.experimental.stateless_fold_in(seed, next(draws))
            return tf.random.stateless_uniform((n,), key, low, high)

        return self.resample(images, uniform)

    def resample(self, images, uniform):
        """Draw each image's flip, rotation, zoom and shift with `uniform(n, low, high)`; resample once."""
        images = ops.convert_to_tensor(images, dtype=self.compute_dtype)
        unbatched = len(images.shape) == 3
        if unbatched:
            images = ops.expand_dims(images, 0)
        n = ops.shape(images)[0]
        height, width = ops.cast(ops.shape(images)[1], "float32"), ops.cast(ops.shape(images)[2], "float32")

        def uniform(low, high, draw=uniform):
            return draw(n, low, high)

        angle = uniform(-self.rotation, self.rotation) * 2.0 * math.pi if self.rotation else ops.zeros((n,))
        scale = 1.0 + (uniform(-self.zoom, self.zoom) if self.zoom else ops.zeros((n,)))
        mirror = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.flip else ops.ones((n,))
        shift_x = uniform(-self.translation, self.translation) * width if self.translation else ops.zeros((n,))
        shift_y = uniform(-self.translation, self.translation) * height if self.translation else ops.zeros((n,))
        # Output pixel p samples input c + M (p - c) - shift, with M = R(angle) diag(mirror, 1) / scale.
        cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
        m00, m01, m10, m11 = cos * mirror, -sin, sin * mirror, cos
        cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        off_x = cx - m00 * cx - m01 * cy - shift_x
        off_y = cy - m10 * cx - m11 * cy - shift_y
        zeros = ops.zeros((n,))
        transform = ops.stack([m00, m01, off_x, m10, m11, off_y, zeros, zeros], axis=1)
        out = ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode=self.fill_mode)
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "rotation": self.rotation, "zoom": self.zoom,
                "translation": self.translation, "fill_mode": self.fill_mode, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_transfer")
class NearestNeighbours(keras.layers.Layer):
    """k-nearest-neighbour vote shares over stored, standardised reference features.

    The references are weights of the layer, so a saved model carries them and loads in safe
    mode; distances are Euclidean after standardisation, as in `keras_transfer.features.fit_classifier("knn", ...)`.
    """

    def __init__(self, references: int, features: int, num_classes: int, k: int, name: str = "head_knn", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        self.references, self.features, self.num_classes, self.k = references, features, num_classes, k
        self.points = self.add_weight(shape=(references, features), initializer="zeros", trainable=False, name="points")
        self.onehot = self.add_weight(shape=(references, num_classes), initializer="zeros", trainable=False, name="onehot")
        self.mean = self.add_weight(shape=(features,), initializer="zeros", trainable=False, name="mean")
        self.scale = self.add_weight(shape=(features,), initializer="ones", trainable=False, name="scale")

    @classmethod
    def from_points(cls, points, labels, num_classes: int, k: int, mean, scale) -> "NearestNeighbours":
        """A layer voting among standardised reference `points` with integer `labels`."""
        layer = cls(len(points), points.shape[1], num_classes, k)
        layer.points.assign(np.asarray(points, dtype=np.float32))
        layer.onehot.assign(np.eye(num_classes, dtype=np.float32)[np.asarray(labels)])
        layer.mean.assign(np.asarray(mean, dtype=np.float32))
        layer.scale.assign(np.asarray(scale, dtype=np.float32))
        return layer

    def call(self, x):
        ops = keras.ops
        z = (ops.cast(x, "float32") - self.mean) / self.scale
        distances = (ops.sum(z * z, axis=1, keepdims=True) - 2.0 * ops.matmul(z, ops.transpose(self.points))
                     + ops.sum(self.points * self.points, axis=1)[None, :])
        _, nearest = ops.top_k(-distances, k=self.k)
        return ops.mean(ops.take(self.onehot, nearest, axis=0), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "references": self.references, "features": self.features,
                "num_classes": self.num_classes, "k": self.k}


# Fixed views for feature extraction with augmentation (Razavian et al. 2014 averaged the features
# of crops and mirrors of each image): the whole image, its mirror, a centred crop of `VIEW_ZOOM`
# of each side scaled back up, and the mirror of that crop.
VIEWS = ("full", "flip", "zoom", "flip_zoom")
VIEW_ZOOM = 0.8


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiView(keras.layers.Layer):
    """Stack fixed views of every image along the batch axis, view by view: [B, H, W, C] -> [V*B, H, W, C].

    Unlike augmentation, the views are the same in training and inference, so a model that
    averages its features over them (`ViewMean`) predicts the same way in `evaluate`, `predict`
    and every export.
    """

    def __init__(self, views: tuple[str, ...] | list[str] = ("full",), zoom: float = VIEW_ZOOM, **kwargs):
        super().__init__(**kwargs)
        unknown = [v for v in views if v not in VIEWS]
        if unknown or not views:
            raise ValueError(f"unknown view {unknown[0]!r}; expected some of {', '.join(VIEWS)}" if unknown
                             else "MultiView needs at least one view")
        self.views, self.zoom = tuple(views), float(zoom)

    def call(self, images):
        images = ops.convert_to_tensor(images, dtype=self.compute_dtype)
        height, width = int(images.shape[1]), int(images.shape[2])
        crop_h, crop_w = max(1, round(height * self.zoom)), max(1, round(width * self.zoom))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        out = []
        for view in self.views:
            x = images
            if "zoom" in view:
                x = ops.image.resize(x[:, top:top + crop_h, left:left + crop_w, :], (height, width),
                                     interpolation="bilinear", antialias=False)
            if "flip" in view:
                x = ops.flip(x, axis=2)
            out.append(x)
        return out[0] if len(out) == 1 else ops.concatenate(out, axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * len(self.views)
        return (batch, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "views": list(self.views), "zoom": self.zoom}


@keras.saving.register_keras_serializable(package="keras_transfer")
class ViewMean(keras.layers.Layer):
    """Average view-stacked feature vectors back to one per image: [V*B, D] -> [B, D] (see `MultiView`)."""

    def __init__(self, views: int, **kwargs):
        super().__init__(**kwargs)
        self.views = int(views)

    def call(self, x):
        return ops.mean(ops.reshape(x, (self.views, -1, int(x.shape[-1]))), axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.views
        return (batch, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "views": self.views}


def single_view_model(model: keras.Model) -> keras.Model:
    """A model that averages views (`classifier_model(..., views=...)`) as the same classifier on the whole image.

    Grad-CAM and the block views need the backbone's layers in the model's own graph; the
    averaged model runs them inside a nested feature extractor. Its twin shares every weight and
    skips the views, so a heat map shows the evidence in the image as given. Any other model comes
    back unchanged.
    """
    if not any(isinstance(layer, MultiView) for layer in model.layers):
        return model
    extractor = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    after = model.layers[[type(layer) for layer in model.layers].index(ViewMean) + 1:]
    x = extractor.output
    for layer in after:  # the classifier after the mean is a chain
        # A copy with the same weights: a layer called in two graphs has no single `.input`, and
        # Grad-CAM reads the classifier's input to take the score before the softmax.
        twin = type(layer).from_config(layer.get_config())
        x = twin(x)
        twin.set_weights(layer.get_weights())
    return keras.Model(extractor.input, x, name=f"{model.name}_single_view")
