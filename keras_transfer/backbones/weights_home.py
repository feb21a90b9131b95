"""What every backbone module may import without cycles: the weights error and the Keras cache root.

This module imports nothing of the toolkit, so the registry, the builder and the weight
converters can all depend on it and never on each other.
"""

from __future__ import annotations

import os
from pathlib import Path


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (typically: no internet for a Keras download)."""


def keras_home() -> Path:
    """Return the Keras cache root: `$KERAS_HOME` if set, else `~/.keras`, read at call time."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
