"""The toolkit's own Keras layers, registered so saved models reload without custom objects.

Built-in layers are used wherever they suffice (`Rescaling`, `Normalization`); this module holds
only what Keras has no layer for.
"""

from __future__ import annotations

import keras
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
