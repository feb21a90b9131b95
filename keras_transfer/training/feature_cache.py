"""Feature caching for head-only stages: run the frozen backbone once, train the head on arrays.

When only the head trains and the inputs are not augmented, every epoch would push the same
images through the same frozen backbone. Instead the backbone (and the head's pooling) runs once
over train and validation, and the head's own layers, shared with the full model, train on the
cached features, so the trained head *is* the full model's head.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks
from keras_transfer.core.progress import MIN_BATCHES, batches_of, with_progress

_DETERMINISTIC_LEADERS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten)


def split_at_head(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Split a classifier into (feature extractor, head model) sharing the classifier's layers.

    The head's leading pooling layer has no weights and no randomness, so it joins the extractor:
    the cache then holds pooled vectors, not feature maps. Dropout and everything trainable stay
    in the head model.
    """
    head = backbone_blocks(model)[HEAD_BLOCK]
    lead = 0
    while lead < len(head) and isinstance(head[lead], _DETERMINISTIC_LEADERS):
        lead += 1
    rest = head[lead:]
    if not rest:
        raise ValueError("the head has no trainable layers to train on cached features")
    features = head[lead - 1].output if lead else rest[0].input
    extractor = keras.Model(model.input, features, name="feature_extractor")
    inputs = keras.Input(tuple(features.shape[1:]), name="features")
    x = inputs
    for layer in rest:  # build_classifier's heads are a chain
        x = layer(x)
    return extractor, keras.Model(inputs, x, name="head_on_features")


def extract(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` once over a (pixels, labels) dataset; return (outputs, labels) in dataset order.

    Serves feature caching (a backbone's features) and evaluation (a classifier's probabilities).
    """
    features, labels = [], []
    step = compiled_forward(model)
    for x, y in with_progress(dataset, batches_of(dataset), "batch", at_least=MIN_BATCHES):
        features.append(np.asarray(step(x)))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)


def compiled_forward(model: keras.Model, *, as_list: bool = False):
    """`model`'s inference forward pass as one traced `tf.function`.

    With `as_list=True` the outputs always come back as a list, also for a model with one
    output (which Keras returns bare).
    """
    step = _FORWARDS.get(model)
    if step is None:
        step = _FORWARDS[model] = _trace_forward(weakref.ref(model))

    def forward(x, _model=model):  # holds the model: callers may pass one built just for this call
        outputs = step(x)
        if not as_list:
            return outputs
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    return forward


# One traced function per model, reused by every caller (val, then test, then the report): a new
# tf.function per call retraced each time, and TensorFlow warned about it. Weak keys, and a weak
# reference inside the function, so that the cache never keeps a model alive (nor becomes one of
# its attributes, which SavedModel export would pick up).
_FORWARDS: "weakref.WeakKeyDictionary[keras.Model, object]" = weakref.WeakKeyDictionary()


def _trace_forward(model_ref: "weakref.ref[keras.Model]"):
    import tensorflow as tf

    # A compiled tf.function forward is the fastest way through a frozen backbone on CPU
    # (measured: ~2.4x eager calls); XLA stays off, it is slower for depthwise models on CPU.
    def forward(x):
        return model_ref()(x, training=False)

    return tf.function(forward, reduce_retracing=True)
