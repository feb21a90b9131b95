"""Data sources -> train / validation / test tf.data pipelines of raw RGB pixels."""

from keras_transfer.config import AUGMENTATIONS, DataConfig
from keras_transfer.data.augment import augmentation_layers, augmentation_model
from keras_transfer.data.embedded import EMBEDDED, load_embedded
from keras_transfer.data.pipeline import DataBundle, DataChangedError, load_data

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
