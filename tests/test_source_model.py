"""The user's own saved source model (h_S) as a backbone: loaded safely, cut, and fine-tuned."""

from __future__ import annotations

import numpy as np
import pytest

import keras
from keras_transfer.backbones import backbone_blocks, build_backbone
from keras_transfer.freeze import set_trainable
from keras_transfer.heads import build_classifier


def _source_model() -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_source")


@pytest.fixture(params=[".keras", ".h5"])
def saved_source(tmp_path, request):
    model = _source_model()
    path = tmp_path / f"source{request.param}"
    model.save(path)
    return model, path


def test_source_model_loads_cuts_at_its_layer_and_trains(saved_source):
    source, path = saved_source
    backbone = build_backbone(path, cut_at="conv2")
    assert tuple(backbone.output.shape) == tuple(source.get_layer("conv2").output.shape)
    assert list(backbone_blocks(backbone)) == ["conv1", "conv2"]

    model = build_classifier(backbone, 3)
    set_trainable(model, "top:1")
    conv1_before = [w.copy() for w in model.get_layer("conv1").get_weights()]
    conv2_before = model.get_layer("conv2").get_weights()[0].copy()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    pixels = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.train_on_batch(pixels, np.arange(8) % 3)
    assert all(np.array_equal(a, b) for a, b in zip(conv1_before, model.get_layer("conv1").get_weights()))
    assert not np.array_equal(conv2_before, model.get_layer("conv2").get_weights()[0])


def test_source_classifier_can_be_kept_when_labels_are_the_same(saved_source):
    source, path = saved_source
    model = build_classifier(build_backbone(path, include_top=True), 5, keep_source_top=True)
    assert [l.name for l in backbone_blocks(model)["head"]] == ["head_classifier"]
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(pixels)), np.asarray(source(pixels)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_source_model_with_a_lambda_layer_is_refused_in_safe_mode(tmp_path, suffix):
    marker = str(tmp_path / "ran")
    # The payload touches `marker` whenever the Lambda is traced, which loading a model does.
    def touching(m):
        return lambda t: (__import__("pathlib").Path(m).touch(), t * 2.0)[1]

    payload = keras.layers.Lambda(touching(marker))
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(payload(inputs))))
    path = tmp_path / f"lambda{suffix}"
    model.save(path)
    (tmp_path / "ran").unlink()  # building the model above ran the payload once
    with pytest.raises(ValueError, match="refusing to load .*Lambda"):
        build_backbone(path)
    assert not (tmp_path / "ran").exists(), "the payload ran during a refused load"
    keras.saving.load_model(path, safe_mode=False)  # the same file, loaded unsafely...
    assert (tmp_path / "ran").exists(), "...does run the payload, so the check above could fail"


def test_source_model_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        build_backbone(tmp_path / "missing.keras")
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="broken.keras"):
        build_backbone(bad)
    good = tmp_path / "good.keras"
    _source_model().save(good)
    with pytest.raises(ValueError, match="brings its own weights"):
        build_backbone(good, weights=None)
    with pytest.raises(ValueError, match="unknown layer 'conv3'.*'conv1'|unknown layer 'conv3'.*'conv2'"):
        build_backbone(good, cut_at="conv3")
