"""Backbone builders: every family builds, cuts at a named layer like keras.applications, and
maps every weighted layer to exactly one block; names that do not exist get helpful errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

import keras
from keras_transfer.backbones.blocks import assign_blocks
from keras_transfer.backbones import (
    FAMILIES,
    WeightsUnavailableError,
    available_backbones,
    backbone_blocks,
    build_backbone,
)

REQUIRED = (
    ["vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50_v2", "resnet101_v2", "resnet152_v2",
     "inception_v3", "inception_resnet_v2", "xception", "mobilenet", "mobilenet_v2", "mobilenet_v3_small",
     "mobilenet_v3_large", "densenet121", "densenet169", "densenet201", "nasnet_mobile", "nasnet_large"]
    + [f"efficientnet_b{i}" for i in range(8)]
    + [f"efficientnet_v2_{s}" for s in ("b0", "b1", "b2", "b3", "s", "m", "l")]
    + [f"convnext_{s}" for s in ("tiny", "small", "base", "large", "xlarge")]
    + [f"efficientnet_lite{i}" for i in range(5)]
)


def test_every_keras_applications_family_is_registered():
    assert set(REQUIRED) <= set(available_backbones())


def _reference(name: str, shape) -> keras.Model:
    """The plain keras.applications model, built independently of the toolkit."""
    family = FAMILIES[name]
    return family.constructor(include_top=False, weights=None, input_shape=shape)


def _auto_named(layer) -> bool:
    """Keras auto-names unnamed layers (`add_16`); such names differ between two builds."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()
    return re.fullmatch(rf"{snake}(_\d+)?", layer.name) is not None


def _assert_blocks_cover_weighted_layers_once(model, blocks):
    weighted = [layer for layer in model.layers if layer.weights]
    in_blocks = [layer for layers in blocks.values() for layer in layers if layer.weights]
    assert sorted(map(id, in_blocks)) == sorted(map(id, weighted)), "each weighted layer in exactly one block"


def _one_per_block_rule() -> list:
    """Every family, with all but the first of each block rule marked `slow`.

    The block rule is what this test checks; families that share one (ResNet50/101/152, the
    EfficientNets) differ only in depth. `pytest -m slow` (or `-m ""`) runs the other families too.
    """
    seen, params = set(), []
    for name, family in FAMILIES.items():
        rule = repr(family.blocks).replace(name, "<family>")  # ConvNeXt rules differ only by prefix
        params.append(pytest.param(name, marks=[pytest.mark.slow] if rule in seen else []))
        seen.add(rule)
    return params


@pytest.mark.parametrize("name", _one_per_block_rule())
def test_family_cuts_at_a_mid_network_layer_like_keras_applications(name):
    family = FAMILIES[name]
    shape = (family.min_size, family.min_size, 3)
    if family.feature_layer is None:
        reference = _reference(name, shape)
    else:  # EfficientNet-Lite is ours: its layout is checked against ImageNet predictions instead
        reference = build_backbone(name, weights=None, input_shape=shape)
    blocks = assign_blocks(reference, family.blocks)
    _assert_blocks_cover_weighted_layers_once(reference, blocks)
    assert len(blocks) >= 4, f"{name}: expected the architecture's blocks, got {list(blocks)}"

    middle = list(blocks)[len(blocks) // 2]
    cut_layer = [layer for layer in blocks[middle] if not _auto_named(layer)][-1].name
    expected = tuple(reference.get_layer(cut_layer).output.shape)
    del reference
    keras.backend.clear_session()
    cut = build_backbone(name, weights=None, input_shape=shape, cut_at=cut_layer)
    assert cut.layers[-1].name == cut_layer
    assert tuple(cut.output.shape) == expected
    cut_blocks = backbone_blocks(cut)
    _assert_blocks_cover_weighted_layers_once(cut, cut_blocks)
    assert list(cut_blocks)[-1] == middle


def test_cut_at_a_block_name_takes_that_blocks_output():
    model = build_backbone("vgg16", weights=None, input_shape=(32, 32, 3), cut_at="block3")
    assert model.layers[-1].name == "block3_pool"
    assert list(backbone_blocks(model)) == ["block1", "block2", "block3"]


def test_misspelt_family_names_the_closest_one():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet5'.*'resnet50'"):
        build_backbone("resnet5", weights=None)


def test_misspelt_layer_names_the_closest_layer_and_lists_blocks():
    with pytest.raises(ValueError) as info:
        build_backbone("vgg16", weights=None, input_shape=(32, 32, 3), cut_at="block4_pol")
    message = str(info.value)
    assert "'block4_pool'" in message and "block1, block2, block3, block4, block5" in message
    assert not isinstance(info.value, KeyError)


def test_input_smaller_than_the_family_minimum_is_refused():
    with pytest.raises(ValueError, match="at least 75x75"):
        build_backbone("inception_v3", weights=None, input_shape=(32, 32, 3))


@pytest.mark.parametrize(
    "name, preprocess",
    [
        ("vgg16", keras.applications.vgg16.preprocess_input),
        ("mobilenet_v2", keras.applications.mobilenet_v2.preprocess_input),
        ("densenet121", keras.applications.densenet.preprocess_input),
    ],
)
def test_backbone_takes_raw_pixels_because_preprocessing_is_inside(name, preprocess):
    shape = (32, 32, 3)
    ours = build_backbone(name, weights=None, input_shape=shape)
    reference = _reference(name, shape)
    for layer in reference.layers:
        if layer.weights:
            layer.set_weights(ours.get_layer(layer.name).get_weights())
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, *shape)).astype("float32")
    expected = np.asarray(reference(preprocess(pixels.copy()), training=False))
    np.testing.assert_allclose(np.asarray(ours(pixels, training=False)), expected, rtol=1e-4, atol=1e-4)


def test_imagenet_download_offline_fails_fast_with_what_to_do():
    with pytest.raises(WeightsUnavailableError) as info:
        build_backbone("vgg16", weights="imagenet", input_shape=(32, 32, 3))
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "weights=" in message and "efficientnet_lite0" in message


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        build_backbone("vgg16", weights=missing, input_shape=(32, 32, 3))


def test_lite_variants_without_packaged_weights_say_how_to_get_them():
    with pytest.raises(WeightsUnavailableError, match="efficientnet_lite2.*weights="):
        build_backbone("efficientnet_lite2", weights="imagenet")


def test_weights_from_a_local_file_are_loaded(tmp_path):
    source = build_backbone("mobilenet_v2", weights=None, input_shape=(32, 32, 3))
    reference = _reference("mobilenet_v2", (32, 32, 3))
    for layer in reference.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    path = tmp_path / "mobilenet_v2_notop.weights.h5"
    reference.save_weights(path)
    loaded = build_backbone("mobilenet_v2", weights=path, input_shape=(32, 32, 3))
    for name in ("Conv1", "block_16_project_BN"):
        for got, want in zip(loaded.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
