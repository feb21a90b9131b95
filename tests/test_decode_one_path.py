"""One decoder for every reader: training's pipeline (which `evaluate` uses too), `predict` and the
SavedModel's `serve_bytes` all see transparent pixels as white and phone photos upright.

Every image here is 16 x 8 (height x width) once decoded: its top half transparent (over black
or a hidden colour) and its bottom half an opaque colour, or, for EXIF, an 8 x 16 JPEG stored
sideways (left half black, right half white) with orientation 6: upright, its top half is black.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

COLOUR = (30, 60, 90)
WHITE = (255, 255, 255)


def _rgba() -> Image.Image:
    pixels = np.zeros((16, 8, 4), np.uint8)
    pixels[:8] = (200, 0, 0, 0)  # a hidden red under full transparency
    pixels[8:] = (*COLOUR, 255)
    return Image.fromarray(pixels, "RGBA")


def _grey_alpha() -> Image.Image:
    pixels = np.zeros((16, 8, 2), np.uint8)
    pixels[8:] = (60, 255)
    return Image.fromarray(pixels, "LA")


def _gif() -> Image.Image:
    image = Image.new("P", (8, 16))
    image.putpalette([0, 0, 0, *COLOUR] + [0] * 762)
    image.putdata([0] * 64 + [1] * 64)
    return image


def _sideways_jpeg() -> bytes:
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, 8:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = io.BytesIO()
    Image.fromarray(stored).save(out, "JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


def _encoded(kind: str) -> bytes:
    if kind == "exif":
        return _sideways_jpeg()
    out = io.BytesIO()
    if kind == "rgba":
        _rgba().save(out, "PNG")
    elif kind == "grey_alpha":
        _grey_alpha().save(out, "PNG")
    else:
        _gif().save(out, "GIF", transparency=0)
    return out.getvalue()


KINDS = ["rgba", "grey_alpha", "gif"]
BOTTOM = {"rgba": COLOUR, "grey_alpha": (60, 60, 60), "gif": COLOUR}


def _check(pixels: np.ndarray, kind: str, reader: str) -> None:
    pixels = np.asarray(pixels, np.float32)
    assert pixels.shape == (16, 8, 3), f"{reader}: {pixels.shape}"
    if kind == "exif":
        assert pixels[:7].max() < 40 and pixels[9:].min() > 215, f"{reader} did not turn the photo upright"
        return
    assert np.abs(pixels[:8] - WHITE).max() <= 1, f"{reader}: transparent {kind} pixels are not white"
    assert np.abs(pixels[8:] - BOTTOM[kind]).max() <= 1, f"{reader}: opaque {kind} pixels changed"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A class folder with each kind of image, and a plain one so the data has two classes."""
    root = tmp_path_factory.mktemp("photos")
    (root / "odd").mkdir()
    (root / "plain").mkdir()
    files = {}
    for kind in [*KINDS, "exif"]:
        path = root / "odd" / f"{kind}.{'jpg' if kind == 'exif' else 'gif' if kind == 'gif' else 'png'}"
        path.write_bytes(_encoded(kind))
        files[kind] = path
    Image.fromarray(np.full((16, 8, 3), 128, np.uint8)).save(root / "plain" / "grey.png")
    return root, files


def test_the_training_pipeline_sees_transparency_as_white_and_photos_upright(photos, tmp_path):
    from keras_transfer.data import DataConfig, load_data

    root, files = photos
    data = load_data(DataConfig(source=f"folder:{root}", image_size=(16, 8), val_split=0, test_split=0,
                                augment=[], cache="none", cache_dir=str(tmp_path / "cache"), batch_size=8))
    (pixels, _), = data.dataset("train", training=False).take(1)
    by_path = dict(zip(data.splits["train"].paths, pixels.numpy()))
    assert len(by_path) == 5, "every file passed the start-up check"
    for kind, path in files.items():
        _check(by_path[str(path)], kind, "the training pipeline")


def test_predict_reads_each_file_as_training_does(photos):
    from keras_transfer.deploy import Classifier, predict_paths

    _, files = photos
    for kind, path in files.items():
        seen = []
        classifier = Classifier(lambda pixels: seen.append(pixels) or np.array([0.5, 0.5]), ["a", "b"], path)
        (answer,) = predict_paths(classifier, [str(path)])
        assert answer.error is None, answer.error
        _check(seen[0], kind, "predict")


def test_the_saved_models_bytes_signature_decodes_as_training_does(tmp_path):
    """A model whose 'probabilities' are the mean colour of the top half of a 16 x 8 input."""
    import keras

    from keras_transfer.deploy import export_saved_model

    inputs = keras.Input((16, 8, 3))
    top = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 8), (0, 0)))(inputs))
    mean = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")
    model = keras.Model(inputs, mean(top))
    serve = tf.saved_model.load(str(export_saved_model(model, tmp_path / "sm", ["r", "g", "b"]))).signatures["serve_bytes"]
    for kind in KINDS:
        top_mean = serve(encoded=tf.constant([_encoded(kind)]))["probabilities"].numpy()[0]
        assert np.abs(top_mean - WHITE).max() <= 1, f"serve_bytes: transparent {kind} pixels are {top_mean}"
    top_mean = serve(encoded=tf.constant([_encoded("exif")]))["probabilities"].numpy()[0]
    assert top_mean.max() < 40, f"serve_bytes did not apply the EXIF orientation: top half {top_mean}"


def test_every_exif_orientation_turns_the_image_as_pil_does():
    from PIL import ImageOps

    from keras_transfer.data.images import decode_image_tensor

    stored = np.zeros((6, 10, 3), np.uint8)
    stored[:3, :5] = 255  # one white quarter marks the corner
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        Image.fromarray(stored).save(out, "JPEG", exif=exif.tobytes(), quality=100)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(out.getvalue()))).convert("RGB"), np.float32)
        got = decode_image_tensor(tf.constant(out.getvalue())).numpy().astype(np.float32)
        assert got.shape == expected.shape and np.abs(got - expected).max() < 40, f"orientation {orientation}"
