"""Names that break outputs, files that hang, folders left behind, files that vanish mid-run and
temporary files a SIGTERM leaves: each ends in one line and an intact run, never a hang."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.support import tiny_config, two_layer_model

PRICE_BANDS = ["$5_$10", "$10_$20"]  # mathtext would read these as formulas with subscripts


def test_class_names_with_dollar_signs_are_drawn_literally_in_the_confusion_matrix(tmp_path):
    from keras_transfer.metrics import plot_confusion_matrix

    path = tmp_path / "confusion.png"
    plot_confusion_matrix([[3, 1], [0, 4]], PRICE_BANDS, path, title="$5_$10 vs $10_$20")
    assert Image.open(path).size[0] > 100


def test_a_failing_plot_costs_a_line_not_the_model(tmp_path, monkeypatch):
    from keras_transfer.training import engine

    def broken(*args, **kwargs):
        raise RuntimeError("the figure could not be drawn")

    monkeypatch.setattr(engine, "plot_training_curves", broken)
    said = []
    metrics = {"test": {"accuracy": 0.875, "examples": 8, "confusion_matrix": [[3, 1], [0, 4]]}}
    data = SimpleNamespace(class_names=PRICE_BANDS, splits={})
    engine.write_results(tmp_path, two_layer_model(), data, metrics, [{"epoch": 1, "stage": "head", "loss": 1.0}],
                         said.append)
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file(), "the price-band names drew literally"
    warnings = [line for line in said if line.startswith("warning:")]
    assert len(warnings) == 1 and "training_curves.png" in warnings[0] and "could not be drawn" in warnings[0]


def test_class_and_file_names_never_reach_a_spreadsheet_as_formulas():
    from keras_transfer.interpret.mistakes import Mistake, mistakes_csv

    for name in ['=HYPERLINK("http://evil.example","click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                 "\tx", "\rx"]:
        text = mistakes_csv([Mistake(0, name, "daisy", 0.9, 0.1, 2.3, path=f"{name}.jpg")])
        row = list(csv.reader(io.StringIO(text, newline="")))[1]
        assert row[0] == f"'{name}.jpg" and row[2] == f"'{name}" and row[3] == "daisy", repr(name)


def test_ordinary_names_and_numbers_are_written_unchanged_in_mistakes_csv():
    from keras_transfer.interpret.mistakes import Mistake, mistakes_csv

    text = mistakes_csv([Mistake(4, "rose", "tulip", 0.75, 0.2, 1.6, "a/b.jpg")])
    row = list(csv.reader(io.StringIO(text, newline="")))[1]
    assert row == ["a/b.jpg", "4", "rose", "tulip", "0.7500", "0.2000", "1.6000"]


def test_predict_on_a_fifo_named_jpg_answers_in_one_line_instead_of_hanging(tmp_path):
    from keras_transfer.deploy import Classifier, predict_paths

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    classifier = Classifier(lambda pixels: np.array([0.25, 0.75]), ["a", "b"], tmp_path)
    answers = []
    worker = threading.Thread(target=lambda: answers.extend(predict_paths(classifier, [str(fifo)])), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader stuck in open() so the test process can go on
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("predict blocked on a FIFO named .jpg")
    (answer,) = answers
    assert answer.error == f"{fifo}: not a regular file (a named pipe), skipped"


def _photo_folder(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_training_from_inside_the_data_folder_is_refused_before_anything_is_created(tmp_path, monkeypatch):
    from keras_transfer.cli import train
    from keras_transfer.config import ConfigError

    photos = _photo_folder(tmp_path / "photos")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, [{"name": "head", "train": "head", "epochs": 1}])))
    monkeypatch.chdir(photos)
    with pytest.raises(ConfigError, match="inside the data folder"):
        train.main([".", "--config", str(config)])
    assert sorted(p.name for p in photos.iterdir()) == ["cats", "dogs"], "no runs/ left among the classes"


def test_a_refused_claim_removes_the_parent_folders_it_created(tmp_path):
    from keras_transfer.core.files import claimed_folder

    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError):
        with claimed_folder(tmp_path / "runs" / "deeper" / "run-1"):
            raise ValueError("refused at start-up")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_a_photo_deleted_after_the_start_up_check_is_one_line_naming_it(tmp_path):
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.data import DataChangedError

    photos = _photo_folder(tmp_path / "photos")
    data = load_data(DataConfig(source=f"folder:{photos}", image_size=16, val_split=0, test_split=0, augment=[],
                                cache="none", cache_dir=str(tmp_path / "cache")))
    gone = data.splits["train"].paths[2]
    os.unlink(gone)
    with pytest.raises(DataChangedError) as caught:
        with data.reading():
            for _ in data.dataset("train", training=False):
                pass
    message = str(caught.value)
    assert message.startswith(f"{gone}: was deleted or moved") and "\n" not in message


_SLOW_EXPORT = """
import importlib.util, sys, time
from pathlib import Path
# core/files.py alone (standard library only): importing the package would load TensorFlow for seconds
spec = importlib.util.spec_from_file_location("files", "keras_transfer/core/files.py")
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
atomic_file, atomic_folder = files.atomic_file, files.atomic_folder

def slow(tmp):
    (tmp / "part").write_text("half") if {folder} else tmp.write_bytes(b"half a model")
    print("writing", flush=True)
    time.sleep(60)

if {folder}:
    atomic_folder(Path(sys.argv[1]) / "saved_model", lambda tmp: (tmp.mkdir(), slow(tmp)))
else:
    atomic_file(Path(sys.argv[1]) / "model.tflite", slow)
"""


def test_sigterm_during_an_export_leaves_no_temporary_files(tmp_path):
    for folder in (False, True):  # a file (.keras, .tflite, .onnx) and a folder (SavedModel)
        export = tmp_path / f"export-{folder}"
        export.mkdir()
        child = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT.format(folder=folder), str(export)],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        assert child.stdout.readline().strip() == "writing"
        assert list(export.iterdir()), "the temporary file exists while the export runs"
        child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=30)
        assert status == 128 + signal.SIGTERM, "stopped by the signal, with the shell's status for it"
        assert list(export.iterdir()) == [], f"no .tmp-* leftovers (folder={folder})"
