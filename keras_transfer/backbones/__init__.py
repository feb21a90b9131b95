"""Backbones: the registry of families, `build_backbone`, and `backbone_blocks`."""

from __future__ import annotations

from collections import OrderedDict

import keras

from keras_transfer.backbones.blocks import HEAD_BLOCK, LayerRule, assign_blocks
from keras_transfer.backbones.build import build_backbone
from keras_transfer.backbones.weights_home import WeightsUnavailableError, keras_home
from keras_transfer.backbones.registry import FAMILIES, Family, available_backbones, family_of_model_name


def backbone_blocks(model: keras.Model) -> "OrderedDict[str, list[keras.layers.Layer]]":
    """Return the ordered blocks of a backbone or classifier: block name -> its layers.

    Blocks follow the family's own naming (VGG `block1`..`block5`, ResNet `conv1`..`conv5`,
    EfficientNet `stem`, `block1`..`block7`, `top`, ...); a user's own model gets one block per
    top-level layer with weights. A toolkit head is the last block, `head`. Every layer belongs to
    exactly one block.
    """
    family = family_of_model_name(model.name)
    return assign_blocks(model, family.blocks if family else LayerRule())


__all__ = [
    "FAMILIES",
    "HEAD_BLOCK",
    "Family",
    "WeightsUnavailableError",
    "available_backbones",
    "backbone_blocks",
    "build_backbone",
    "family_of_model_name",
    "keras_home",
]
