"""Optimizers with a real learning rate per variable, for per-block (differential) rates.

Scaling gradients is not a per-block learning rate for Adam: Adam divides by the gradient's own
running magnitude, so a scaled gradient gives almost the same step. These optimizers instead
scale the learning rate handed to each variable's update (and AdamW's decoupled weight decay with
it), which is what "small rates at the bottom, larger at the top" means for every optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
from keras import ops

from keras_transfer.core.names import unknown_name_message
from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks
from keras_transfer.freeze import resolve_trainable


class _BlockLearningRates:
    """Mixin: multiply the learning rate of each variable by `lr_multipliers[variable.path]`."""

    def __init__(self, *args, lr_multipliers: Mapping[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}

    def build(self, variables):
        super().build(variables)
        # TF hands update_step raw tf.Variables without Keras paths: index by position instead.
        self._multiplier_at = [self.lr_multipliers.get(v.path, 1.0) for v in variables]
        self._decay_at = [self.weight_decay is not None and self._use_weight_decay(v) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        multiplier = self._multiplier_at[index]
        if multiplier == 0.0:
            return  # a zero rate leaves the variable bitwise unchanged (no momentum or decay drift)
        learning_rate = ops.cast(learning_rate, variable.dtype) * multiplier
        if self._decay_at[index]:
            variable.assign_sub(variable * ops.cast(self.weight_decay, variable.dtype) * learning_rate)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        return  # applied per variable in update_step, scaled by that variable's multiplier

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}


@keras.saving.register_keras_serializable(package="keras_transfer")
class BlockSGD(_BlockLearningRates, keras.optimizers.SGD):
    """SGD (with momentum) with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="keras_transfer")
class BlockAdam(_BlockLearningRates, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="keras_transfer")
class BlockAdamW(_BlockLearningRates, keras.optimizers.AdamW):
    """AdamW with per-variable learning-rate (and weight-decay) multipliers."""


_CLASSES = {"sgd": BlockSGD, "adam": BlockAdam, "adamw": BlockAdamW}


def make_optimizer(name: str, learning_rate, *, lr_multipliers: Mapping[str, float] | None = None,
                   momentum: float = 0.9, weight_decay: float | None = None) -> keras.optimizers.Optimizer:
    """Build `sgd` (with momentum), `adam` or `adamw` with optional per-variable rate multipliers."""
    kwargs: dict = {"learning_rate": learning_rate, "lr_multipliers": lr_multipliers}
    if name == "sgd":
        kwargs["momentum"] = momentum
    if name == "adamw":
        kwargs["weight_decay"] = 0.004 if weight_decay is None else weight_decay
    elif weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    return _CLASSES[name](**kwargs)


def block_multipliers(model: keras.Model, train, *, decay: float | None = None,
                      block_lr: Mapping[str, float] | None = None, base_lr: float = 1.0) -> dict[str, float]:
    """Return {variable path: multiplier} for the trained blocks of `model`.

    With `decay` d, the top backbone block gets d, the next d**2 and so on down; the head keeps 1.
    With `block_lr` {block: rate}, each named block gets rate / base_lr (unnamed blocks keep 1).
    Block names are checked against the model's blocks.
    """
    blocks = backbone_blocks(model)
    trained = set(resolve_trainable(train, list(blocks)))
    factor: dict[str, float] = {}
    if block_lr:
        for name in block_lr:
            if name not in blocks:
                raise ValueError(unknown_name_message("block", name, list(blocks), where="block_lr"))
        factor = {name: rate / base_lr for name, rate in block_lr.items()}
    elif decay is not None:
        body = [b for b in blocks if b != HEAD_BLOCK]
        factor = {name: decay ** (depth + 1) for depth, name in enumerate(reversed(body))}
    out = {}
    for name, layers in blocks.items():
        if name in trained and name in factor:
            for layer in layers:
                for variable in layer.trainable_weights:
                    out[variable.path] = factor[name]
    return out
