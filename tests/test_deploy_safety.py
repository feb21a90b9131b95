"""Loading a user's SavedModel never lets it touch files, and images too large to decode are refused:
the op guard reads the model's graphs before TensorFlow runs them, and `serve_bytes` reads each
image's size from its header before decoding it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_transfer.cli.common import run_cli
from keras_transfer.deploy import check_saved_model, denied_ops, export_saved_model
from keras_transfer.cli.predict import main as predict_main
from tests.support import save_digits


def _crafted_saved_model(folder, target, nested: bool):
    """A SavedModel whose `serving_default` looks like ours but writes `target` when called."""

    class Crafted(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def serve(self, images):
            def write():
                tf.io.write_file(str(target), "written by a model")
                return tf.constant(1.0)

            if nested:  # the write hides in a branch function of the library
                flag = tf.cond(tf.size(images) > 0, write, lambda: tf.constant(0.0))
            else:
                flag = write()
            batch = tf.shape(images)[0]
            return {"probabilities": tf.fill([batch, 2], 0.5) * flag}

    module = Crafted()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "labels.txt").write_text("a\nb\n")
    return folder


@pytest.mark.parametrize("nested", [False, True], ids=["in_the_signature", "in_a_nested_branch"])
def test_a_saved_model_that_writes_a_file_is_refused_before_it_runs(tmp_path, capsys, nested):
    target = tmp_path / "pwned.txt"
    model = _crafted_saved_model(tmp_path / "crafted", target, nested)
    image = save_digits(tmp_path / "images", n=1)[0]
    assert run_cli(lambda: predict_main(["--model", str(model), str(image)])) == 2
    err = capsys.readouterr().err
    assert "refusing to run this SavedModel" in err and "WriteFile" in err and err.count("\n") == 1
    assert not target.exists(), "the model's write ran"


def test_the_refused_ops_come_from_tensorflows_registry_and_cover_files_and_python(tmp_path):
    registered = {name for name in dir(tf.raw_ops) if not name.startswith("_")}
    denied = denied_ops()
    assert denied <= registered
    for op in ("WriteFile", "ReadFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc", "PrintV2",
               "SaveV2", "TFRecordDataset", "WholeFileReaderV2", "CreateSummaryFileWriter"):
        assert op in denied, op
    assert {op for op in registered if "File" in op} - denied == {"InitializeTableFromTextFile",
                                                                  "InitializeTableFromTextFileV2"}


def test_our_own_saved_model_passes_the_op_guard(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    check_saved_model(export_saved_model(model, tmp_path / "sm", ["a", "b"]))


def _encoded(side: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_serve_bytes_refuses_an_image_over_the_pixel_limit_from_its_header(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    path = export_saved_model(model, tmp_path / "sm", ["a", "b"], max_pixels=1000)
    serve = tf.saved_model.load(str(path)).signatures["serve_bytes"]
    for fmt in ("PNG", "JPEG", "GIF", "BMP"):
        small = serve(encoded=tf.constant([_encoded(20, fmt)]))  # 400 pixels
        assert small["probabilities"].shape == (1, 2), fmt
        with pytest.raises(tf.errors.InvalidArgumentError, match="decompression bomb"):
            serve(encoded=tf.constant([_encoded(40, fmt)]))  # 1600 pixels


def test_serve_bytes_refuses_a_real_png_bomb_at_the_default_limit_without_decoding_it(tmp_path):
    import time

    import keras

    from tests.support import png_bomb

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    serve = tf.saved_model.load(str(export_saved_model(model, tmp_path / "sm", ["a", "b"]))).signatures["serve_bytes"]
    bomb = png_bomb(tmp_path / "bomb.png").read_bytes()  # 20000x20000: 1.2 GB once decoded to RGB
    start = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError, match="decompression bomb"):
        serve(encoded=tf.constant([bomb]))
    assert time.perf_counter() - start < 5.0
