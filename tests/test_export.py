"""Export for deployment: a SavedModel that serves uint8 images and encoded bytes without our code,
TFLite with parity against Keras, a `.keras` round trip, atomic writes, and the export/predict CLIs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from keras_transfer.config import from_dict
from keras_transfer.export import export_keras, export_run, export_saved_model
from keras_transfer.training import run
from tests.test_training import tiny_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A small trained classifier (tiny CNN on 16x16 digits) in a finished run directory."""
    tmp_path = tmp_path_factory.mktemp("export")
    # The last stage compiles the full model, as fine-tuning runs do: its optimizer must not
    # stop the saved model from loading.
    stages = [{"name": "head", "train": "head", "epochs": 2, "learning_rate": 0.05},
              {"name": "tune", "train": "top:1", "epochs": 1, "learning_rate": 0.001, "block_lr_decay": 0.5}]
    result = run(from_dict(tiny_config(tmp_path, stages)), tmp_path / "run", log=lambda _: None)
    return result


def _digit_images(n=6, size=16):
    from keras_transfer.data import load_embedded

    return load_embedded("digits", (size, size)).images[:n]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_saved_model_serves_images_and_bytes_in_a_fresh_process_without_our_code(trained_run, tmp_path):
    model = trained_run.model
    images = _digit_images()
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


def test_keras_export_round_trips_with_identical_predictions(trained_run, tmp_path):
    path = export_keras(trained_run.model, tmp_path / "model.keras")
    np.save(tmp_path / "images.npy", _digit_images())
    plain = _python(f"""
        import sys, keras
        for saved in ({str(path)!r}, {str(trained_run.run_dir / 'model.keras')!r}):
            keras.saving.load_model(saved)  # no toolkit import: no training state in the files
        assert "keras_transfer" not in sys.modules
    """)
    assert plain.returncode == 0, plain.stderr[-3000:]
    images = _digit_images()
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", np.asarray(trained_run.model(images.astype("float32"), training=False)))
    done = _python(f"""
        import numpy as np, keras, keras_transfer
        model = keras.saving.load_model({str(path)!r})
        got = np.asarray(model(np.load({str(tmp_path / 'images.npy')!r}).astype("float32"), training=False))
        assert np.array_equal(got, np.load({str(tmp_path / 'expected.npy')!r})), "predictions differ"
    """)
    assert done.returncode == 0, done.stderr[-3000:]


def test_tflite_float32_matches_keras_and_int8_agreement_is_reported(trained_run):
    lines = []
    written = export_run(trained_run.run_dir, ["tflite"], ["float32", "float16", "int8"], log=lines.append,
                         model=trained_run.model)
    assert {"tflite_float32", "tflite_float16", "tflite_int8"} <= set(written)
    report = {line.split(":")[0]: line for line in lines}
    gap = float(report["TFLite float32"].split("max |p - p_keras| ")[1].split(",")[0])
    assert gap < 1e-4
    agreement = float(report["TFLite int8"].split("top-1 agreement ")[1].rstrip("%")) / 100
    assert agreement >= 0.8
    assert written["tflite_int8"].stat().st_size < written["tflite_float32"].stat().st_size


def test_a_failed_export_leaves_nothing_behind(trained_run, tmp_path, monkeypatch):
    import tensorflow as tf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(trained_run.model, tmp_path / "sm", [str(i) for i in range(10)])
    assert list(tmp_path.iterdir()) == []


def test_export_and_predict_clis_label_images_and_survive_a_broken_file(trained_run, tmp_path):
    exported = subprocess.run([sys.executable, "-m", "keras_transfer.export", "--run", str(trained_run.run_dir),
                               "--format", "saved_model,keras,tflite"], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "top-1 agreement" in exported.stdout
    folder = trained_run.run_dir / "export"
    images = _digit_images(3)
    labels = trained_run.run_dir.joinpath("labels.txt").read_text().split()
    files = []
    for i, image in enumerate(images):
        Image.fromarray(image).resize((48, 40)).save(tmp_path / f"digit{i}.png")
        files.append(str(tmp_path / f"digit{i}.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    for model in ("saved_model", "model.keras", "model_float32.tflite"):
        done = subprocess.run([sys.executable, "-m", "keras_transfer.predict", "--model", str(folder / model),
                               str(tmp_path / "broken.png"), *files], capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "broken.png" in done.stderr and "Traceback" not in done.stderr
        printed = [line for line in done.stdout.splitlines() if line.startswith(str(tmp_path))]
        assert len(printed) == 3 and all(line.split(": ")[1].split(" ")[0] in labels for line in printed), done.stdout
