"""One registry of backbone families: a new family is one entry here, not a new code path.

Each entry answers the same questions (after timm's `create_model` registry): how to build it,
which preprocessing it expects, its default and smallest input size, and how its layers group
into blocks.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras

from keras_transfer.backbones.blocks import AnchorRule, BlockRule, NameRule
from keras_transfer.backbones.weights_home import WeightsUnavailableError


@dataclass(frozen=True)
class Pretrained:
    """Where a family's ImageNet weights come from (timm's `PretrainedCfg`, reduced to our cases).

    `source` is "keras" (keras.applications downloads them on first use), "package" (a pip
    package ships them; `resolver` names the "module:function" that returns a Keras weights
    file, imported only when asked, so the registry stays free of converter imports) or "file"
    (no known ImageNet weights: only `weights=PATH`).
    """

    source: str = "keras"
    resolver: str | None = None


KERAS_DOWNLOAD = Pretrained("keras")


@dataclass(frozen=True)
class Family:
    """A registered backbone: constructor, preprocessing mode, input sizes and block rule.

    `constructor` has the keras.applications signature (include_top, weights, input_tensor,
    input_shape). `preprocessing` is a mode of `keras_transfer.core.layers.preprocessing_layers`
    ("none" where the Keras model already rescales its input).
    """

    name: str
    constructor: Callable[..., keras.Model]
    preprocessing: str
    default_size: int
    min_size: int
    blocks: BlockRule
    pretrained: Pretrained = field(default=KERAS_DOWNLOAD)
    # Set for families whose weights file holds the full model (classifier included): the model
    # is always built with its top, and this layer is the default cut when no top is wanted.
    feature_layer: str | None = None


_VGG = NameRule(((r"^(block\d+)_", r"\1"), (r"^fc\d", "fc")))
_RESNET = NameRule(((r"^(conv\d+)_", r"\1"),))
_DENSENET = NameRule(((r"^(conv\d+)_", r"\1"), (r"^pool(\d+)_", r"conv\1")))
_XCEPTION = NameRule(((r"^(block\d+)_", r"\1"),))
_MOBILENET = NameRule(((r"^conv1", "stem"), (r"^conv_(?:dw|pw|pad)_(\d+)", r"block\1")))
_MOBILENET_V2 = NameRule((
    (r"^(Conv1|bn_Conv1|Conv1_relu)$", "stem"),
    (r"^expanded_conv_", "block0"),
    (r"^block_(\d+)_", r"block\1"),
    (r"^(Conv_1|Conv_1_bn|out_relu)$", "top"),
))
_MOBILENET_V3 = NameRule((
    (r"^conv(_bn)?$", "stem"),
    (r"^expanded_conv_(\d+)_", r"block\1"),
    (r"^expanded_conv_", "block0"),
    (r"^conv_\d", "top"),
))
_EFFICIENTNET = NameRule((
    (r"^stem_", "stem"),
    (r"^block(\d+)[a-z]+_", r"block\1"),
    (r"^top_", "top"),
))
# NASNet suffixes every cell's layers with its id (`_stem_1`, `_reduce_4`, `_7`); auto-named
# helpers (`activation_45`) must not be read as cell ids, hence the named prefixes.
_NASNET_CELL = r"^(?:normal|reduction|adjust|separable_conv)_.*_"
_NASNET = NameRule((
    (r"^stem_(conv|bn)1$", "stem"),
    (_NASNET_CELL + r"(stem_\d+|reduce_\d+)$", r"\1"),
    (_NASNET_CELL + r"(\d+)$", r"cell\1"),
))
_INCEPTION_V3 = AnchorRule(r"^mixed\d+$")
_INCEPTION_RESNET_V2 = AnchorRule(
    r"^(?P<b>mixed_\w+|block\d+_\d+|conv_7b)(_ac)?$", template=r"\g<b>"
)


def _convnext_rule(prefix: str) -> NameRule:
    # The downsampling layer i sits in front of stage i+1 (Keras's ConvNeXt code), so it opens
    # that stage rather than closing the previous one.
    return NameRule((
        (rf"^{prefix}_stem$", "stem"),
        (rf"^{prefix}_stage_(\d+)_", r"stage\1"),
        (rf"^{prefix}_downsampling_block_0$", "stage1"),
        (rf"^{prefix}_downsampling_block_1$", "stage2"),
        (rf"^{prefix}_downsampling_block_2$", "stage3"),
    ))


def _efficientnet_lite(variant: int) -> Callable[..., keras.Model]:
    def build(**kwargs):
        from keras_transfer.backbones.efficientnet_lite import EfficientNetLite

        return EfficientNetLite(variant, **kwargs)

    return build


_LITE0_PACKAGE = Pretrained("package", "keras_transfer.backbones.lite_weights:imagenet_weights_path")


def _families() -> dict[str, Family]:
    apps = keras.applications
    entries: list[Family] = [
        Family("vgg16", apps.VGG16, "caffe", 224, 32, _VGG),
        Family("vgg19", apps.VGG19, "caffe", 224, 32, _VGG),
        Family("resnet50", apps.ResNet50, "caffe", 224, 32, _RESNET),
        Family("resnet101", apps.ResNet101, "caffe", 224, 32, _RESNET),
        Family("resnet152", apps.ResNet152, "caffe", 224, 32, _RESNET),
        Family("resnet50_v2", apps.ResNet50V2, "tf", 224, 32, _RESNET),
        Family("resnet101_v2", apps.ResNet101V2, "tf", 224, 32, _RESNET),
        Family("resnet152_v2", apps.ResNet152V2, "tf", 224, 32, _RESNET),
        Family("inception_v3", apps.InceptionV3, "tf", 299, 75, _INCEPTION_V3),
        Family("inception_resnet_v2", apps.InceptionResNetV2, "tf", 299, 75, _INCEPTION_RESNET_V2),
        Family("xception", apps.Xception, "tf", 299, 71, _XCEPTION),
        Family("mobilenet", apps.MobileNet, "tf", 224, 32, _MOBILENET),
        Family("mobilenet_v2", apps.MobileNetV2, "tf", 224, 32, _MOBILENET_V2),
        Family("mobilenet_v3_small", apps.MobileNetV3Small, "none", 224, 32, _MOBILENET_V3),
        Family("mobilenet_v3_large", apps.MobileNetV3Large, "none", 224, 32, _MOBILENET_V3),
        Family("densenet121", apps.DenseNet121, "torch", 224, 32, _DENSENET),
        Family("densenet169", apps.DenseNet169, "torch", 224, 32, _DENSENET),
        Family("densenet201", apps.DenseNet201, "torch", 224, 32, _DENSENET),
        Family("nasnet_mobile", apps.NASNetMobile, "tf", 224, 32, _NASNET),
        Family("nasnet_large", apps.NASNetLarge, "tf", 331, 32, _NASNET),
    ]
    b_sizes = (224, 240, 260, 300, 380, 456, 528, 600)
    for i, size in enumerate(b_sizes):
        ctor = getattr(apps, f"EfficientNetB{i}")
        entries.append(Family(f"efficientnet_b{i}", ctor, "none", size, 32, _EFFICIENTNET))
    for suffix, size in (("b0", 224), ("b1", 240), ("b2", 260), ("b3", 300), ("s", 384), ("m", 480), ("l", 480)):
        ctor = getattr(apps, f"EfficientNetV2{suffix.upper()}")
        entries.append(Family(f"efficientnet_v2_{suffix}", ctor, "none", size, 32, _EFFICIENTNET))
    for size, cls in (("tiny", "Tiny"), ("small", "Small"), ("base", "Base"), ("large", "Large"), ("xlarge", "XLarge")):
        ctor = getattr(apps, f"ConvNeXt{cls}")
        entries.append(Family(f"convnext_{size}", ctor, "none", 224, 32, _convnext_rule(f"convnext_{size}")))
    for i, size in enumerate((224, 240, 260, 280, 300)):
        entries.append(Family(f"efficientnet_lite{i}", _efficientnet_lite(i), "none", size, 32,
                              _EFFICIENTNET, pretrained=_LITE0_PACKAGE if i == 0 else Pretrained("file"),
                              feature_layer="top_activation"))
    return {family.name: family for family in entries}


FAMILIES: dict[str, Family] = _families()


def available_backbones() -> list[str]:
    """Return the names of every registered backbone family, in registry order."""
    return list(FAMILIES)


def family_of_model_name(model_name: str) -> Family | None:
    """Return the family whose name is the longest prefix of `model_name`, or None.

    Models built by the toolkit are named after their family (`resnet50_v2`,
    `resnet50_v2_classifier`), so the family survives saving and reloading.
    """
    matches = [name for name in FAMILIES if model_name == name or model_name.startswith(name + "_")]
    return FAMILIES[max(matches, key=len)] if matches else None


def resolve_pretrained(family: Family, weights: str | os.PathLike | None, *, rebuild: bool = False) -> str | None:
    """Turn a `weights` argument into what the family's constructor takes: None, "imagenet" or a path.

    "imagenet" follows the family's `pretrained` entry: a Keras download, a file a pip package
    ships (converted and cached on first use), or an error that says how to get weights offline.
    Any other value must be an existing weights file. `rebuild=True` asks a package source to
    convert its cache anew (after the cached file failed to load).
    """
    if weights is None:
        return None
    if weights == "imagenet":
        if family.pretrained.source == "package":
            module, _, function = family.pretrained.resolver.partition(":")
            return os.fspath(getattr(importlib.import_module(module), function)(family.name, rebuild=rebuild))
        if family.pretrained.source == "file" or family.feature_layer is not None:
            raise WeightsUnavailableError(
                f"no ImageNet weights are available offline for {family.name}: pass "
                f"weights='/path/to/{family.name}.weights.h5' (a full model with its top), or use "
                "backbone 'efficientnet_lite0', whose ImageNet weights install with pip"
            )
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {os.fspath(path)!r} for {family.name} does not exist; "
            "weights must be 'imagenet', None or the path of an existing weights file"
        )
    return os.fspath(path)
