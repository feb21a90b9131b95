"""Data sources for the toolkit: embedded offline datasets (and, later, folders, CSV, TFDS, arrays)."""

from keras_transfer.data.embedded import EMBEDDED, load_embedded

__all__ = ["EMBEDDED", "load_embedded"]
