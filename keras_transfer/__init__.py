"""keras_transfer: transfer learning with pretrained CNN backbones for Keras 3 / TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow logs (CUDA probing on CPU-only machines) drown the output users came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_transfer import layers as _layers  # noqa: E402,F401  (registers serialisable layers)
from keras_transfer.training import optimizers as _optimizers  # noqa: E402,F401  (and optimizers)
from keras_transfer.backbones import available_backbones, backbone_blocks, build_backbone  # noqa: E402

__version__ = "0.1.0"

__all__ = ["available_backbones", "backbone_blocks", "build_backbone", "__version__"]
