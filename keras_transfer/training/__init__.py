"""Fine-tuning in stages: per-block learning rates, feature caching, checkpoints and resume.

Names load on first use (PEP 562): importing `keras_transfer.training.optimizers` (to register
the block-wise optimizers) does not load the engine.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "BlockAdam": "optimizers", "BlockAdamW": "optimizers", "BlockSGD": "optimizers",
    "block_multipliers": "optimizers", "make_optimizer": "optimizers",
    "RunResult": "engine", "build_model": "engine", "run": "engine", "start_run_dir": "engine",
    "write_results": "engine",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"keras_transfer.training.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'keras_transfer.training' has no attribute {name!r}")
