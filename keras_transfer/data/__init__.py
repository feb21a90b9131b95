"""Data sources -> train / validation / test tf.data pipelines of raw RGB pixels."""

from keras_transfer.data.augment import AUGMENTATIONS, augmentation_layers, augmentation_model
from keras_transfer.data.embedded import EMBEDDED, load_embedded
from keras_transfer.data.pipeline import DataBundle, DataChangedError, DataConfig, load_data

__all__ = [
    "AUGMENTATIONS",
    "EMBEDDED",
    "DataBundle",
    "DataChangedError",
    "DataConfig",
    "augmentation_layers",
    "augmentation_model",
    "load_data",
    "load_embedded",
]
