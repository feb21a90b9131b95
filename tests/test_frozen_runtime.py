"""Frozen passes on onnxruntime: the same features as Keras, Keras whenever conversion or parity fails,
the converted model cached beside the feature cache, and `KT_FROZEN_RUNTIME` to choose."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.features import extract_features
from keras_transfer.forward import frozen_forward, runtime


def small_backbone(name: str = "small", seed: int = 0) -> keras.Model:
    """A MobileNet-like 32x32 backbone (convolution, BatchNorm with its own statistics, depthwise, ReLU6)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu6", name="block1")(x)
    model = keras.Model(inputs, x, name=name)
    bn = model.get_layer("stem_bn")  # statistics away from (0, 1), so folding them in is tested
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    return model


class Bessel(keras.layers.Layer):
    """A custom layer with an operation tf2onnx cannot convert (BesselI1e)."""

    def call(self, x):
        return tf.math.special.bessel_i1e(x)


def unconvertible_backbone() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, name="stem")(keras.layers.Rescaling(1 / 255.0)(inputs))
    return keras.Model(inputs, Bessel(name="bessel")(x), name="custom")


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (24, 32, 32, 3)).astype("uint8"), np.arange(24) % 3


def _no_conversion(*_args, **_kwargs):
    raise AssertionError("converted")


def test_onnx_features_match_keras_to_1e_4_on_a_small_backbone(images, tmp_path):
    backbone = small_backbone()
    lines: list[str] = []
    on_keras = extract_features(backbone, images, ["stem_relu", "block1"], cache=False, runtime="keras",
                                cache_dir=tmp_path)
    on_onnx = extract_features(backbone, images, ["stem_relu", "block1"], cache=False, runtime="onnx",
                               cache_dir=tmp_path, log=lines.append)
    assert any("on onnxruntime" in line and "max |difference| from Keras" in line for line in lines), lines
    for layer in ("stem_relu", "block1"):
        expected, got = on_keras["train"][layer], on_onnx["train"][layer]
        assert np.abs(expected).max() > 0.1, "features of a real scale, not vanishing ones"
        assert np.abs(expected - got).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_a_model_that_does_not_convert_falls_back_to_keras_with_one_line(images, tmp_path):
    backbone = unconvertible_backbone()
    lines: list[str] = []
    features = extract_features(backbone, images, None, cache=False, runtime="onnx", cache_dir=tmp_path,
                                log=lines.append)
    said = [line for line in lines if line.startswith("frozen pass")]
    assert len(said) == 1 and "on Keras" in said[0] and "BesselI1e" in said[0], lines
    reference = extract_features(backbone, images, None, cache=False, runtime="keras", cache_dir=tmp_path)
    np.testing.assert_array_equal(features["train"]["bessel"], reference["train"]["bessel"])
    assert not list(tmp_path.rglob("*.onnx")), "nothing cached for a model that did not convert"


def test_a_conversion_that_disagrees_with_keras_is_refused(images, tmp_path, monkeypatch):
    backbone, other = small_backbone(), small_backbone(seed=1)  # the same graph with other weights
    convert = runtime.convert_to_onnx
    monkeypatch.setattr(runtime, "convert_to_onnx", lambda model, **kw: convert(other, **kw))
    lines: list[str] = []
    step = frozen_forward(backbone, runtime="onnx", cache_dir=tmp_path, log=lines.append)
    pixels = images[0][:4].astype("float32")
    out = step(pixels)
    assert step.runtime == "keras" and "differ from Keras's by up to" in lines[0], lines
    np.testing.assert_allclose(out[0], backbone(pixels), atol=1e-5)
    assert not list(tmp_path.rglob("*.onnx"))


def test_the_converted_model_is_cached_beside_the_features_and_reused(images, tmp_path, monkeypatch):
    backbone = small_backbone()
    converted: list[str] = []
    convert = runtime.convert_to_onnx
    monkeypatch.setattr(runtime, "convert_to_onnx", lambda model, **kw: converted.append(model.name) or
                        convert(model, **kw))
    first = extract_features(backbone, images, "block1", cache=False, runtime="onnx", cache_dir=tmp_path)
    (path,) = (tmp_path / backbone.name).glob("*.onnx")
    assert len(converted) == 1
    runtime._SESSIONS.clear()  # as a new process starts
    lines: list[str] = []
    second = extract_features(backbone, images, "block1", cache=False, cache_dir=tmp_path, log=lines.append)
    assert len(converted) == 1, "the second call read the converted model instead of converting"
    assert any("on onnxruntime" in line and f"converted model from {path}" in line for line in lines), lines
    np.testing.assert_array_equal(first["train"]["block1"], second["train"]["block1"])
    kernel = backbone.get_layer("block1").kernel
    kernel.assign(kernel * 2.0)
    third = extract_features(backbone, images, "block1", cache=False, runtime="onnx", cache_dir=tmp_path)
    assert len(converted) == 2, "changed weights never meet the model converted before"
    assert not np.allclose(first["train"]["block1"], third["train"]["block1"])


def test_kt_frozen_runtime_keras_forces_keras_and_auto_keeps_it_for_small_passes(images, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "convert_to_onnx", _no_conversion)
    monkeypatch.setenv("KT_FROZEN_RUNTIME", "keras")
    lines: list[str] = []
    extract_features(small_backbone(), images, "block1", cache=False, cache_dir=tmp_path, log=lines.append)
    assert any("on Keras: KT_FROZEN_RUNTIME=keras" in line for line in lines), lines
    monkeypatch.setenv("KT_FROZEN_RUNTIME", "auto")
    step = frozen_forward(small_backbone(), images=24, cache_dir=tmp_path, log=(small := []).append)
    step(images[0][:2].astype("float32"))
    assert step.runtime == "keras" and "do not pay back a conversion" in small[0], small
    monkeypatch.setenv("KT_FROZEN_RUNTIME", "fast")
    with pytest.raises(ValueError, match="KT_FROZEN_RUNTIME='fast' is not a frozen runtime"):
        frozen_forward(small_backbone())
