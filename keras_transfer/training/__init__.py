"""Staged training: per-block learning rates, feature caching, checkpoints and resume."""

from keras_transfer.training.engine import RunResult, build_model, run, start_run_dir, write_results
from keras_transfer.training.optimizers import BlockAdam, BlockAdamW, BlockSGD, block_multipliers, make_optimizer

__all__ = ["BlockAdam", "BlockAdamW", "BlockSGD", "RunResult", "block_multipliers", "build_model",
           "make_optimizer", "run", "start_run_dir", "write_results"]
