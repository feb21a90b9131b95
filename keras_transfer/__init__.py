"""keras_transfer: transfer learning with pretrained CNN backbones for Keras 3 / TensorFlow."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# A command (`python -m keras_transfer.X`, where argv[0] is "-m" while the package is imported, or
# the `keras-transfer` console script) starts quietly: TensorFlow's start-up lines are dropped
# unless --verbose or KT_VERBOSE=1 asks for them. A library user's process is left as it is.
_COMMAND = sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0]) in ("keras-transfer", "keras-transfer.exe")
if _COMMAND:
    from keras_transfer.core.quiet import quiet_tensorflow_start, wants_verbose

    if not wants_verbose(sys.argv):
        quiet_tensorflow_start()
else:
    # TensorFlow's own notices (CUDA probing on CPU-only machines, oneDNN) drown a notebook's
    # output; TensorFlow reads this once, when imported, so it is set before.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["available_backbones", "backbone_blocks", "build_backbone", "register_serializables", "__version__"]

# The backbone helpers import TensorFlow (seconds); they load on first use (PEP 562), so that
# `python -m keras_transfer.X --help` answers at once.
_LAZY = {"available_backbones": "keras_transfer.backbones", "backbone_blocks": "keras_transfer.backbones",
         "build_backbone": "keras_transfer.backbones"}


def register_serializables() -> None:
    """Register the toolkit's Keras layers and optimizers, so saved models load without custom objects.

    Idempotent. Every place in the package that loads a model calls it; user code gets it from
    `import keras_transfer`.
    """
    from keras_transfer.core import layers  # noqa: F401  (registers serialisable layers)
    from keras_transfer.training import optimizers  # noqa: F401  (and optimizers)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_transfer' has no attribute {name!r}")


# `import keras_transfer` registers the layers, as the README promises to users who load a saved
# model. A command registers where it loads or builds a model instead, and its --help stays instant.
if not _COMMAND:
    register_serializables()
