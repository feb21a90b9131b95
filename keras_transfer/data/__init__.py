"""Data sources -> train / validation / test tf.data pipelines of raw RGB pixels.

`load_data(DataConfig(...))` reads any source (a folder, a CSV, TFDS, an `.npz`, arrays, or an
embedded dataset), drops and reports bad files, carves seeded stratified splits (random ones for
regression targets), applies few-shot sampling and class balancing, and returns a `DataBundle`
whose datasets yield `(float32 pixels in [0, 255] of shape [batch, H, W, 3], labels)`, which the
toolkit's models take directly. The `data:` section itself, `DataConfig`, is the config's.

The modules, by job: `load` (the sources, image files), `arrays` (arrays and `.npz`), `tfds`,
`split` (carving the splits), `bundle` (the `DataBundle` and the task), `pipeline` (tf.data),
with `records` and `manifest` (the pre-scan), `images` (the one decoder), `augment`, `cache`,
`health`, `fingerprint` (the split a run recorded), `embedded`, `synthetic` and `unlabeled`.
"""

from keras_transfer.config import AUGMENTATIONS, DataConfig
from keras_transfer.data.augment import augmentation_layers, augmentation_model
from keras_transfer.data.bundle import DataBundle, DataChangedError
from keras_transfer.data.embedded import EMBEDDED, load_embedded
from keras_transfer.data.load import load_data

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
