"""How closely an exported model agrees with the Keras model it came from."""

from __future__ import annotations

import numpy as np

from keras_transfer.metrics import two_column

# Below this top-1 agreement on validation images an export changes answers users will notice.
AGREEMENT_WARNING = 0.99


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max absolute probability gap and top-1 agreement of `candidate` against `reference` ([N, C] each)."""
    reference, candidate = two_column(reference, np.float32), two_column(candidate, np.float32)
    return {"images": len(reference), "max_abs_diff": float(np.abs(reference - candidate).max()),
            "top1_agreement": float((reference.argmax(-1) == candidate.argmax(-1)).mean())}


def keras_probabilities(model, pixels: np.ndarray) -> np.ndarray:
    """The Keras model's probabilities for float pixels [N, H, W, 3]: the reference for every parity check."""
    return np.asarray(model.predict(np.asarray(pixels, dtype=np.float32), verbose=0, batch_size=32), dtype=np.float32)
