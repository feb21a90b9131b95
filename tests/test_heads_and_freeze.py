"""Heads for each task, per-block trainable flags with the BatchNorm policy, and `block_summary`."""

from __future__ import annotations


import numpy as np
import pytest

import keras
from keras_transfer.backbones import backbone_blocks, build_backbone
from keras_transfer.freeze import block_summary, format_table, resolve_trainable, set_trainable
from keras_transfer.config import HeadConfig
from keras_transfer.heads import build_classifier

SHAPE = (32, 32, 3)


@pytest.fixture
def lite_backbone(lite0_imagenet_path):
    # Pretrained weights, as users fine-tune them: a random Lite0 with inference-mode BatchNorm
    # saturates its ReLU6 units and passes no gradient to the top block.
    return build_backbone("efficientnet_lite0", weights="imagenet", input_shape=SHAPE)


def _pixels(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, *SHAPE)).astype("float32")


@pytest.mark.parametrize("task, classes, width", [("multiclass", 4, 4), ("binary", 2, 1), ("multilabel", 3, 3), ("regression", 2, 2)])
def test_each_task_gets_its_output_layer(lite_backbone, task, classes, width):
    model = build_classifier(lite_backbone, classes, task=task)
    out = np.asarray(model(_pixels(), training=False))
    assert out.shape == (4, width)
    if task == "multiclass":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    elif task in ("binary", "multilabel"):
        assert ((out > 0) & (out < 1)).all()
    assert model.get_layer("head_predictions").dtype_policy.compute_dtype == "float32"


def test_head_layers_form_the_head_block_and_follow_the_spec(lite_backbone):
    spec = HeadConfig(pooling="max", units=[16, 8], dropout=0.1, batch_norm=True)
    model = build_classifier(lite_backbone, 3, head=spec)
    blocks = backbone_blocks(model)
    assert list(blocks)[-1] == "head"
    names = [layer.name for layer in blocks["head"]]
    assert names[0] == "head_pool" and isinstance(blocks["head"][0], keras.layers.GlobalMaxPooling2D)
    assert {"head_dense1", "head_bn1", "head_dense2", "head_bn2", "head_predictions"} <= set(names)
    assert model.get_layer("head_dense2").units == 8
    assert all(not n.startswith("head_") for b, ls in blocks.items() if b != "head" for n in (l.name for l in ls))


def test_bad_head_config_names_the_key_and_the_closest_choice():
    with pytest.raises(ValueError, match=r"unknown key 'unitz' in model\.head.*'units'"):
        build_classifier(keras.Sequential(), 3, head={"unitz": [8]})
    with pytest.raises(ValueError, match=r"unknown value 'mean' in model\.head\.pooling"):
        HeadConfig(pooling="mean")
    with pytest.raises(ValueError, match=r"model\.head\.dropout"):
        HeadConfig(dropout=1.5)


def test_keep_source_top_refuses_a_label_count_that_differs(lite_backbone):
    with pytest.raises(ValueError, match="keep_source_top.*include_top=True"):
        build_classifier(lite_backbone, 5, keep_source_top=True)


def test_keep_source_top_keeps_the_imagenet_classifier_as_the_head_block():
    backbone = build_backbone("efficientnet_lite0", weights=None, input_shape=SHAPE, include_top=True)
    model = build_classifier(backbone, 1000, keep_source_top=True)
    assert [l.name for l in backbone_blocks(model)["head"]] == ["predictions"]
    assert set_trainable(model, "head") == ["head"]


def _snapshot(model):
    return {v.path: np.array(v.numpy(), copy=True) for v in model.weights}


def _one_step(model, seed=0):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    model.train_on_batch(_pixels(8, seed), rng.integers(0, 3, size=8))


def test_frozen_block_weights_are_bitwise_unchanged_after_a_step(lite_backbone):
    model = build_classifier(lite_backbone, 3)
    trained = set_trainable(model, "top:1")
    assert trained == ["top", "head"]
    before = _snapshot(model)
    _one_step(model)
    after = _snapshot(model)

    trainable = {v.path for v in model.trainable_weights}
    top_conv = model.get_layer("top_conv").kernel.path
    assert top_conv in trainable and model.get_layer("head_predictions").kernel.path in trainable
    assert not any("_bn" in p for p in trainable), "BatchNorm stays frozen by default"
    for path, value in before.items():
        if path in trainable:
            assert not np.array_equal(value, after[path]), f"{path} should have moved"
        else:
            assert np.array_equal(value, after[path]), f"{path} is frozen (moving statistics too) but changed"


def test_train_bn_lets_batchnorm_of_trained_blocks_learn_and_update_statistics(lite_backbone):
    model = build_classifier(lite_backbone, 3)
    set_trainable(model, "top:1", train_bn=True)
    bn = model.get_layer("top_bn")
    frozen_bn = model.get_layer("block7a_project_bn")
    before = [w.numpy().copy() for w in bn.weights], [w.numpy().copy() for w in frozen_bn.weights]
    _one_step(model)
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before[0], bn.weights))
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before[1], frozen_bn.weights))


def test_trainable_specs_resolve_to_blocks_and_reject_unknown_names():
    blocks = ["stem", "block1", "block2", "top", "head"]
    assert resolve_trainable("all", blocks) == blocks
    assert resolve_trainable("none", blocks) == []
    assert resolve_trainable("top:2", blocks) == ["head", "block2", "top"]
    assert resolve_trainable(["block1", "head"], blocks) == ["block1", "head"]
    with pytest.raises(ValueError, match="unknown block 'blok2'.*'block2'"):
        resolve_trainable(["blok2"], blocks)
    with pytest.raises(ValueError, match="asks for 9 blocks but the backbone has 4"):
        resolve_trainable("top:9", blocks)
    with pytest.raises(ValueError, match="no head block"):
        resolve_trainable("head", blocks[:-1])


def test_describe_counts_every_parameter_once_by_block(lite_backbone):
    model = build_classifier(lite_backbone, 3)
    set_trainable(model, "top:2")
    rows = block_summary(model)
    assert [r.block for r in rows][-3:] == ["block7", "top", "head"]
    assert sum(r.params for r in rows) == model.count_params()
    assert sum(r.trainable_params for r in rows) == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert next(r for r in rows if r.block == "block1").trainable_params == 0
    table = format_table(rows)
    assert "block7a_project_bn" in table and table.splitlines()[-1].startswith("total")


def _cli(capsys, *args) -> tuple[int, str, str]:
    """The describe CLI in this process: (exit status, stdout, stderr)."""
    from keras_transfer.cli import describe
    from keras_transfer.cli.common import run_cli

    status = run_cli(lambda: describe.main(list(args)))
    out, err = capsys.readouterr()
    return status, out, err


def test_describe_cli_prints_blocks_and_names_a_misspelt_layer(capsys):
    status, out, err = _cli(capsys, "vgg16", "--input-size", "32")
    assert status == 0, err
    assert "block5_pool" in out and "total" in out
    status, out, err = _cli(capsys, "vgg16", "--input-size", "32", "--cut-at", "block4_pol")
    assert status == 2
    assert "did you mean 'block4_pool'" in err and err.count("\n") == 1
