"""EfficientNet-Lite0 with real ImageNet weights from a pip package: conversion without torch or
unsafe pickle, a self-healing cache, offline class names, and predictions on real photographs."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from keras_transfer.backbones import build_backbone
from keras_transfer.backbones.imagenet import decode_predictions, imagenet_classes
from keras_transfer.backbones.lite_weights import imagenet_weights_path, source_weights_file
from keras_transfer.backbones.torch_state import UnsafeCheckpointError, read_legacy_state_dict
from keras_transfer.data.images import resize_rgb


def _photos():
    """Real photographs that ship with scikit-image and scikit-learn, with acceptable top-5 labels."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "coffee": (skimage.data.coffee(), {"espresso", "cup", "coffee mug"}),
        "chelsea the cat": (skimage.data.chelsea(), {"Egyptian cat", "tiger cat", "tabby, tabby cat"}),
        "rocket": (skimage.data.rocket(), {"space shuttle", "missile", "projectile, missile"}),
        "china temple": (china, {"bell cote, bell cot", "monastery", "stupa, tope", "palace", "castle"}),
        "daisy": (flower, {"daisy"}),
    }


@pytest.fixture(scope="module")
def lite0_classifier(lite0_imagenet_path):
    return build_backbone("efficientnet_lite0", weights="imagenet", include_top=True)


@pytest.mark.parametrize("photo", list(_photos()))
def test_pretrained_lite0_names_real_photos_sensibly(lite0_classifier, photo):
    pixels, expected = _photos()[photo]
    batch = resize_rgb(pixels, (224, 224))[None]
    top5 = {name for _, name, _ in decode_predictions(np.asarray(lite0_classifier(batch)))[0]}
    assert top5 & expected, f"{photo}: top-5 {sorted(top5)} has none of {sorted(expected)}"


def test_coffee_is_confidently_espresso(lite0_classifier):
    import skimage.data

    batch = resize_rgb(skimage.data.coffee(), (224, 224))[None]
    (wnid, name, probability), *_ = decode_predictions(np.asarray(lite0_classifier(batch)))[0]
    assert name == "espresso" and probability > 0.8


def test_state_dict_has_the_documented_contents():
    state = read_legacy_state_dict(source_weights_file())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert sum(k.endswith("num_batches_tracked") for k in state) == 49
    weights = sum(v.size for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert 4.6e6 < weights < 4.7e6


def _legacy_file(state_pickle: bytes, storages: list[tuple[str, np.ndarray]] = ()) -> bytes:
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(state_pickle)
    pickle.dump([key for key, _ in storages], out, protocol=2)
    for _, data in storages:
        out.write(struct.pack("<q", data.size))
        out.write(data.astype("<f4").tobytes())
    return out.getvalue()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_reader_refuses_a_file_that_names_another_global(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = pickle.dumps(collections.OrderedDict(w=_Exploit(marker)), protocol=2)
    path.write_bytes(_legacy_file(payload))
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load global (posix|os|nt)\.system"):
        read_legacy_state_dict(path)
    assert not marker.exists(), "nothing in the file may run"


def test_truncated_weights_file_gives_a_clear_error(tmp_path):
    original = source_weights_file().read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(pickle.UnpicklingError, match="truncated.pth.*truncated or corrupted"):
        read_legacy_state_dict(path)


def test_corrupted_or_truncated_cache_is_rebuilt_not_loaded(lite0_imagenet_path):
    reference = lite0_imagenet_path.read_bytes()
    for damage in (lambda b: b[: len(b) // 3], lambda b: b[:4096] + bytes(len(b) - 4096)):
        lite0_imagenet_path.write_bytes(damage(reference))
        rebuilt = imagenet_weights_path()
        assert rebuilt == lite0_imagenet_path
        assert rebuilt.read_bytes() == reference


def test_imagenet_class_names_match_the_tfds_files_in_order():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import make_imagenet_classes as source
    finally:
        sys.path.pop(0)
    classes = imagenet_classes()
    assert [wnid for wnid, _ in classes] == source.tfds_wordnet_ids()
    assert [name for _, name in classes] == source.tfds_class_names()
    assert classes[0] == ("n01440764", "tench, Tinca tinca") and classes[967][1] == "espresso"


def test_decode_predictions_rejects_the_wrong_shape():
    with pytest.raises(ValueError, match=r"\(N, 1000\)"):
        decode_predictions(np.zeros((2, 10)))


def test_transfer_imagenet_features_beat_random_features_on_digits(lite0_imagenet_path):
    """feature extraction on the embedded digits: the same linear head, pretrained vs random backbone."""
    from sklearn.linear_model import LogisticRegression

    from keras_transfer.data import load_embedded

    digits = load_embedded("digits", (64, 64))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.labels))[:800]
    x, y = digits.images[order].astype("float32"), digits.labels[order]
    scores = {}
    for weights in ("imagenet", None):
        backbone = build_backbone("efficientnet_lite0", weights=weights, input_shape=(64, 64, 3))
        features = np.asarray(backbone.predict(x, batch_size=100, verbose=0)).mean(axis=(1, 2))
        head = LogisticRegression(max_iter=2000).fit(features[:400], y[:400])
        scores[weights] = head.score(features[400:], y[400:])
    assert scores["imagenet"] > 0.85, scores
    assert scores["imagenet"] > scores[None] + 0.25, scores


def test_predict_cli_prints_imagenet_labels_and_survives_a_broken_file(tmp_path):
    import skimage.data
    from PIL import Image

    photo = tmp_path / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(photo)
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    result = subprocess.run([sys.executable, "-m", "keras_transfer.predict", "--backbone", "efficientnet_lite0",
                             str(broken), str(photo)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "espresso" in result.stdout
    assert "broken.jpg: not an image file" in result.stderr and "Traceback" not in result.stderr


def test_pytorch_reference_gives_the_same_logits(lite0_classifier):
    torch = pytest.importorskip("torch", reason="torch is not installed; the converter itself needs none")
    from tests.torch_reference import lite0_forward

    import skimage.data

    pixels = resize_rgb(skimage.data.chelsea(), (224, 224))[None]
    state = torch.load(source_weights_file(), map_location="cpu", weights_only=True)
    expected = lite0_forward(state, torch.from_numpy(pixels)).numpy()
    logits_model = __import__("keras").Model(lite0_classifier.input, lite0_classifier.get_layer("top_dropout").output)
    features = np.asarray(logits_model(pixels))
    kernel, bias = lite0_classifier.get_layer("predictions").get_weights()
    np.testing.assert_allclose(features @ kernel + bias, expected, atol=1e-3)
