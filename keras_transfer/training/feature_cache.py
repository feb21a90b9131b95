"""Feature caching for head-only stages: run the frozen backbone once, train the head on arrays.

When only the head trains and the inputs are not augmented, every epoch would push the same
images through the same frozen backbone. Instead the backbone (and the head's pooling) runs once
over train and validation, and the head's own layers, shared with the full model, train on the
cached features, so the trained head *is* the full model's head.
"""

from __future__ import annotations

import keras

from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks

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
