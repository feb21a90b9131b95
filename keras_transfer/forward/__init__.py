"""The inference forward pass every frozen pass shares.

Training's cached head stage, feature extraction, evaluation, the error analysis and the
suggestions all run a model over a dataset without training it; they share this pass (and its
trace) instead of each tracing its own. `compiled_forward` is the Keras pass, one traced
`tf.function` per model; `frozen_forward` may run the same model on onnxruntime instead, where
that is faster and gives the same outputs (see `keras_transfer.forward.runtime`).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_transfer.core.progress import MIN_BATCHES, batches_of, with_progress
from keras_transfer.forward.compiled import compiled_forward
from keras_transfer.forward.runtime import (
    RUNTIME_ENV,
    RUNTIMES,
    FrozenForward,
    convert_to_onnx,
    frozen_cache_dir,
    frozen_forward,
    onnx_session_options,
)

__all__ = ["RUNTIME_ENV", "RUNTIMES", "FrozenForward", "compiled_forward", "convert_to_onnx", "extract",
           "frozen_cache_dir", "frozen_forward", "onnx_session_options"]


def extract(model: keras.Model, dataset, *, step=None, log=None, phase: str = "frozen pass") -> tuple[np.ndarray, np.ndarray]:
    """Run `model` once over a (pixels, labels) dataset; return (outputs, labels) in dataset order.

    Serves feature caching (a backbone's features) and evaluation (a classifier's probabilities).
    `step` is a `frozen_forward(model, ...)` to run instead of the Keras pass (made once, it can
    serve several splits). With `log`, a long pass says once, from its first batches, how long it
    has left, named `phase`.
    """
    features, labels = [], []
    step = step or compiled_forward(model, as_list=True)
    for x, y in with_progress(dataset, batches_of(dataset), "batch", at_least=MIN_BATCHES, eta=log, phase=phase):
        outputs = step(x)
        features.append(np.asarray(outputs[0] if len(outputs) == 1 else outputs))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)
