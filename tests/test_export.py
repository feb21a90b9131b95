"""Export for deployment: a SavedModel in TF Serving's versioned layout that serves uint8 images and
encoded bytes without our code, TFLite in four modes and ONNX each checked against Keras, a `.keras`
round trip, validation before anything is written, and the export/predict CLIs on every format."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from keras_transfer.cli.common import run_cli
from keras_transfer.deploy import (
    export_keras,
    export_run,
    export_saved_model,
    tflite_interpreter,
)
from tests.support import DIGITS, digit_images, save_digits, train_tiny_run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(trained_run):
    """Every format and TFLite mode exported once, with the log lines it printed."""
    lines = []
    written = export_run(trained_run.run_dir, ["saved_model", "keras", "tflite", "onnx"],
                         ["float32", "float16", "dynamic", "int8"], log=lines.append, model=trained_run.model)
    return written, lines


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True, timeout=300)


def test_saved_model_serves_images_and_bytes_in_a_fresh_process_without_our_code(trained_run, tmp_path):
    model = trained_run.model
    images = digit_images()
    expected = np.asarray(model(images.astype("float32"), training=False))
    path = export_saved_model(model, tmp_path / "sm", ["zero", "one", "two", "three", "four", "five", "six",
                                                       "seven", "eight", "nine"])
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "encoded.json").write_text(json.dumps([e.hex() for e in encoded]))
    done = _python(f"""
        import json, sys, numpy as np, tensorflow as tf
        assert "keras_transfer" not in sys.modules
        loaded = tf.saved_model.load({str(path)!r})
        images = np.load({str(tmp_path / 'images.npy')!r})
        by_array = loaded.signatures["serving_default"](images=tf.constant(images))
        encoded = [bytes.fromhex(h) for h in json.load(open({str(tmp_path / 'encoded.json')!r}))]
        by_bytes = loaded.signatures["serve_bytes"](encoded=tf.constant(encoded))
        big = loaded.signatures["serving_default"](images=tf.zeros([2, 40, 30, 3], tf.uint8))
        np.savez({str(tmp_path / 'out.npz')!r}, array=by_array["probabilities"].numpy(),
                 bytes=by_bytes["probabilities"].numpy(), ids=by_array["class_id"].numpy(),
                 labels=np.array([l.decode() for l in by_array["label"].numpy()]), big=big["probabilities"].numpy())
        assert "keras_transfer" not in sys.modules
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["array"], expected, atol=1e-5)
    np.testing.assert_allclose(out["bytes"], out["array"], atol=1e-6)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert list(out["labels"]) == [names[i] for i in expected.argmax(1)]
    assert out["big"].shape == (2, 10), "any image size is resized inside"


def test_saved_model_goes_to_numbered_version_folders_with_both_signatures(trained_run, exported):
    from tensorflow.python.tools import saved_model_utils  # what saved_model_cli reads

    first = exported[0]["saved_model"]
    assert first == trained_run.run_dir / "export" / "saved_model" / "1"
    again = export_run(trained_run.run_dir, ["saved_model"], log=lambda _: None, model=trained_run.model)
    assert again["saved_model"] == first.parent / "2" and (first / "saved_model.pb").is_file()
    signatures = saved_model_utils.get_meta_graph_def(str(again["saved_model"]), "serve").signature_def
    assert {"serving_default", "serve_bytes"} <= set(signatures)
    images, encoded = signatures["serving_default"].inputs["images"], signatures["serve_bytes"].inputs["encoded"]
    assert (images.dtype, [d.size for d in images.tensor_shape.dim]) == (4, [-1, -1, -1, 3])  # DT_UINT8
    assert (encoded.dtype, [d.size for d in encoded.tensor_shape.dim]) == (7, [-1])  # DT_STRING
    for name in ("serving_default", "serve_bytes"):
        assert set(signatures[name].outputs) == {"probabilities", "class_id", "label"}


def test_keras_export_round_trips_with_identical_predictions(trained_run, tmp_path):
    path = export_keras(trained_run.model, tmp_path / "model.keras")
    plain = _python(f"""
        import sys, keras
        for saved in ({str(path)!r}, {str(trained_run.run_dir / 'model.keras')!r}):
            keras.saving.load_model(saved)  # no toolkit import: no training state in the files
        assert "keras_transfer" not in sys.modules
    """)
    assert plain.returncode == 0, plain.stderr[-3000:]
    images = digit_images()
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", np.asarray(trained_run.model(images.astype("float32"), training=False)))
    done = _python(f"""
        import numpy as np, keras, keras_transfer
        model = keras.saving.load_model({str(path)!r})
        got = np.asarray(model(np.load({str(tmp_path / 'images.npy')!r}).astype("float32"), training=False))
        assert np.array_equal(got, np.load({str(tmp_path / 'expected.npy')!r})), "predictions differ"
    """)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_tflite_mode_and_onnx_report_their_parity_with_keras(trained_run, exported):
    _, lines = exported
    report = json.loads((trained_run.run_dir / "export" / "export_report.json").read_text())
    assert {"saved_model", "keras", "tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8",
            "onnx"} <= set(report)
    assert report["tflite_float32"]["max_abs_diff"] < 1e-4 and report["onnx"]["max_abs_diff"] < 1e-5
    for key in ("tflite_float16", "tflite_dynamic"):
        assert report[key]["top1_agreement"] >= 0.9, report[key]
    # The tiny model's probabilities sit close together, so top-1 can flip within int8's output
    # step of 1/256; the gap itself must stay within a few steps.
    assert report["tflite_int8"]["max_abs_diff"] < 5 / 256, report["tflite_int8"]
    for key in ("tflite_float16", "tflite_dynamic", "tflite_int8"):
        assert report[key]["bytes"] < report["tflite_float32"]["bytes"]
    printed = [line for line in lines if "top-1 agreement" in line]
    assert len(printed) == 5, lines
    for key, entry in report.items():
        if "top1_agreement" in entry and entry["top1_agreement"] < 0.99:
            assert any(line.startswith("warning:") and "under 99%" in line for line in lines), lines


def test_int8_tflite_is_full_integer_and_takes_camera_pixels_directly(exported):
    interpreter = tflite_interpreter(exported[0]["tflite_int8"])
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    assert inp["quantization"] == (1.0, 0), "uint8 pixel values are the model's input as they are"
    float_ops = [op for op in interpreter._get_ops_details() if op["op_name"] in ("DEQUANTIZE",)]
    assert not float_ops, "a full-integer model computes in int8 throughout"


def test_onnx_runs_in_onnxruntime_on_raw_pixels_with_the_labels_in_its_metadata(trained_run, exported):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported[0]["onnx"]), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["labels"]) == DIGITS
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.shape[1:] == [16, 16, 3]
    images = digit_images(4).astype(np.float32)
    got = session.run(None, {"images": images})[0]
    np.testing.assert_allclose(got, np.asarray(trained_run.model(images, training=False)), atol=1e-5)


@pytest.mark.parametrize("formats, modes, expected", [
    ("saved_model,tflite", "float32,int4", "unknown TFLite mode 'int4'"),
    ("saved_model,tflight", "float32", "unknown export format 'tflight'"),
])
def test_a_bad_format_or_mode_is_refused_before_anything_is_written(trained_run, tmp_path, capsys, formats, modes,
                                                                    expected):
    import shutil

    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.export import main

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("export"))
    assert run_cli(lambda: main(["--run", str(run_dir), "--format", formats, "--tflite", modes])) == 2
    assert expected in capsys.readouterr().err
    assert not (run_dir / "export").exists()


def test_an_export_folder_that_cannot_be_written_is_one_line_and_exit_2(trained_run, tmp_path, capsys):
    import shutil

    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.export import main

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("export"))
    (run_dir / "export").write_text("a file where the export folder goes")
    assert run_cli(lambda: main(["--run", str(run_dir)])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot export into") and err.count("\n") == 1


def test_a_read_only_export_folder_is_refused_before_writing(trained_run, tmp_path):
    import os
    import shutil

    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable, so this case cannot be made here")
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("export"))
    (run_dir / "export").mkdir()
    (run_dir / "export").chmod(0o555)
    with pytest.raises(PermissionError, match="is not writable"):
        export_run(run_dir, ["saved_model"], model=trained_run.model)


def test_a_read_only_file_system_is_one_line_and_exit_2_before_writing(trained_run, tmp_path, capsys, monkeypatch):
    import errno
    import shutil
    import tempfile

    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.export import main

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("export"))

    def read_only(*args, **kwargs):  # what a read-only mount answers, even to root
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert run_cli(lambda: main(["--run", str(run_dir), "--format", "saved_model,keras"])) == 2
    err = capsys.readouterr().err
    assert "is not writable (Read-only file system)" in err and err.count("\n") == 1
    assert not (run_dir / "export").exists()


def test_a_failed_export_leaves_nothing_behind(trained_run, tmp_path, monkeypatch):
    import tensorflow as tf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(trained_run.model, tmp_path / "sm", [str(i) for i in range(10)])
    assert list(tmp_path.iterdir()) == []


def test_export_and_predict_clis_label_images_in_every_format_and_survive_a_broken_file(trained_run, tmp_path,
                                                                                        capsys):
    # In-process: the CLIs' own code paths, without a TensorFlow start-up per call (a fresh
    # process is tested above, where it matters: serving without our code).
    from keras_transfer.cli import export, predict

    status = run_cli(lambda: export.main(["--run", str(trained_run.run_dir), "--format", "saved_model,keras,tflite,onnx",
                                          "--tflite", "float32,int8"]))
    out, err = capsys.readouterr()
    assert status == 0, err[-3000:]
    assert "TFLite int8" in out and "ONNX" in out
    folder = trained_run.run_dir / "export"
    files = [str(p) for p in save_digits(tmp_path)]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    for model in ("saved_model", "model.keras", "model_float32.tflite", "model_int8.tflite", "model.onnx"):
        status = run_cli(lambda m=model: predict.main(["--model", str(folder / m), str(tmp_path / "broken.png"), *files]))
        out, err = capsys.readouterr()
        assert status == 1, err[-3000:]
        assert "broken.png" in err and "Traceback" not in err
        printed = [line for line in out.splitlines() if line.startswith(str(tmp_path))]
        assert len(printed) == 3 and all(line.split(": ")[1].split(" ")[0] in DIGITS for line in printed), out