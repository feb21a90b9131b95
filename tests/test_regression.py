"""Regression end to end: numeric targets from a CSV `target` column or an npz with float y train a
linear head, are scored with MSE / MAE / RMSE / R^2, plotted predicted against true, and predicted
in the targets' own units by the saved model, `evaluate` and `predict`."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_transfer.config import ConfigError, from_dict
from keras_transfer.data import DataConfig, load_data
from keras_transfer.runs import fit
from tests.support import tiny_config

# Targets in "real units" far from 0 and 1: a head that did not rescale would predict near 0.
SCALE = 100.0


def brightness_images(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 16x16 RGB images of random brightness, and their mean brightness times SCALE / 255."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.15, 0.85, (n, 1, 1, 1)) * 255 * 0.7
    images = np.clip(rng.integers(0, 256, (n, 16, 16, 3)) * 0.3 + level, 0, 255).astype(np.uint8)
    return images, images.reshape(n, -1).mean(axis=1) / 255 * SCALE


def write_csv(folder: Path, images: np.ndarray, values, column: str = "target") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"path,{column}"]
    for i, (image, value) in enumerate(zip(images, values)):
        Image.fromarray(image).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{value}")
    (folder / "targets.csv").write_text("\n".join(rows) + "\n")
    return folder / "targets.csv"


def regression_config(tmp_path: Path, source: Path, **model) -> dict:
    stages = [{"name": "head", "train": "head", "epochs": 20, "learning_rate": 0.1}]
    config = tiny_config(tmp_path, stages, source=str(source))
    config["model"].update(model)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One regression run on the CSV brightness set: (run result, images, targets, csv path)."""
    folder = tmp_path_factory.mktemp("regression")
    images, values = brightness_images()
    csv = write_csv(folder / "images", images, [f"{v:.5f}" for v in values])
    result = fit(from_dict(regression_config(folder, csv)), folder / "run", log=lambda _: None)
    return result, images, values, csv


def test_csv_target_column_gives_a_regression_bundle_with_seeded_random_splits(tmp_path):
    images, values = brightness_images(40)
    csv = write_csv(tmp_path, images, [f"{v:.5f}" for v in values])
    config = DataConfig(source=str(csv), image_size=16, augment=(), val_split=0.25, test_split=0.25)
    data, again = load_data(config), load_data(config)
    assert data.task == "regression" and data.class_names == ["target"] and data.num_classes == 1
    assert {name: len(split) for name, split in data.splits.items()} == {"train": 20, "val": 10, "test": 10}
    for name, split in data.splits.items():
        assert split.labels.dtype == np.float32 and split.labels.shape == (len(split),)
        np.testing.assert_array_equal(split.labels, again.splits[name].labels)  # seeded
    everything = np.sort(np.concatenate([s.labels for s in data.splits.values()]))
    np.testing.assert_allclose(everything, np.sort(values.astype(np.float32)), atol=1e-4)
    _, y = next(iter(data.dataset("test", batch_size=64)))
    assert y.dtype == "float32"


def test_label_column_with_fractions_is_regression_and_integer_labels_stay_classes(tmp_path):
    images, _ = brightness_images(6)
    fractions = load_data(DataConfig(source=str(write_csv(tmp_path / "f", images, [0.5, 1, 2.25, 3, 4, 5], "label")),
                                     image_size=16, augment=(), val_split=0, test_split=0))
    integers = load_data(DataConfig(source=str(write_csv(tmp_path / "i", images, [0, 1, 0, 1, 0, 1], "label")),
                                    image_size=16, augment=(), val_split=0, test_split=0))
    assert fractions.task == "regression" and sorted(fractions.splits["train"].labels) == [0.5, 1, 2.25, 3, 4, 5]
    assert integers.task == "multiclass" and integers.class_names == ["0", "1"]


def test_npz_float_y_is_regression_and_integer_y_stays_multiclass(tmp_path):
    images, values = brightness_images(20)
    np.savez(tmp_path / "float.npz", x=images, y=values)
    np.savez(tmp_path / "int.npz", x=images, y=np.arange(20) % 4)
    config = dict(image_size=16, augment=(), val_split=0, test_split=0)
    floats = load_data(DataConfig(source=str(tmp_path / "float.npz"), **config))
    ints = load_data(DataConfig(source=str(tmp_path / "int.npz"), **config))
    forced = load_data(DataConfig(source=str(tmp_path / "int.npz"), **config), task="regression")
    assert floats.task == "regression"
    np.testing.assert_allclose(floats.splits["train"].labels, values.astype(np.float32))
    assert ints.task == "multiclass" and ints.class_names == ["0", "1", "2", "3"]
    assert forced.task == "regression" and forced.splits["train"].labels.dtype == np.float32
    np.testing.assert_array_equal(forced.splits["train"].labels, np.arange(20) % 4)


@pytest.mark.parametrize("column, value, expected", [
    ("target", "bright", "line 4: target 'bright' is not a number"),
    ("target", "nan", "line 4: target is 'nan'"),
    ("target", "", "line 4: every row needs a path and a target"),
    ("label", "cat", "line 4: label 'cat' is not a number, but other rows hold numbers with fractions"),
])
def test_a_bad_target_is_refused_naming_the_file_and_line(tmp_path, column, value, expected):
    images, _ = brightness_images(4)
    csv = write_csv(tmp_path, images, ["0.5", "1.5", value, "2.5"], column)
    with pytest.raises(ValueError, match="targets.csv, " + expected):
        load_data(DataConfig(source=str(csv), image_size=16, augment=()))


def test_npz_with_a_non_finite_target_is_refused_naming_the_index(tmp_path):
    images, values = brightness_images(6)
    values[3] = np.inf
    np.savez(tmp_path / "bad.npz", x=images, y=values)
    with pytest.raises(ValueError, match=r"bad.npz: y\[3\] is inf"):
        load_data(DataConfig(source=str(tmp_path / "bad.npz"), image_size=16, augment=()))


def test_task_regression_with_class_names_is_refused_before_training(tmp_path):
    images, _ = brightness_images(6)
    csv = write_csv(tmp_path / "words", images, ["cat", "dog"] * 3, "label")
    with pytest.raises(ValueError, match=r"targets.csv, line 2: label 'cat' is not a number; regression "
                                         r"\(model.task: regression\)"):
        fit(from_dict(regression_config(tmp_path, csv, task="regression")), tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="data.source digits has only class names; give a CSV with a 'path,target'"):
        load_data(DataConfig(source="digits", image_size=16), task="regression")


def test_solution_ii_heads_refuse_regression_and_point_to_a_dense_head(tmp_path):
    from keras_transfer.features.solution import run_feature_classifier

    images, values = brightness_images(20)
    csv = write_csv(tmp_path / "images", images, values)
    with pytest.raises(ConfigError, match="model.task: regression use model.head.type: dense"):
        from_dict(regression_config(tmp_path, csv, task="regression", head={"type": "logistic"}))
    # Detected from the data, with the config's default task (multiclass): refused when loaded.
    with pytest.raises(ValueError, match="holds regression targets; train them with keras-transfer train "
                                         "and model.head.type: dense"):
        run_feature_classifier(from_dict(regression_config(tmp_path, csv, head={"type": "logistic"})),
                               tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()
    from keras_transfer.features.extract import backbone_and_data

    with pytest.raises(ValueError, match="the layer probe classifies one class per image"):  # probe and advise too
        backbone_and_data(from_dict(regression_config(tmp_path, csv)), purpose="the layer probe")


def test_an_accuracy_monitor_is_refused_for_regression_data(tmp_path):
    images, values = brightness_images(20)
    config = regression_config(tmp_path, write_csv(tmp_path / "images", images, values))
    config["training"]["stages"][0]["early_stopping"] = {"monitor": "val_accuracy"}
    with pytest.raises(ConfigError, match="val_accuracy is not logged for regression.*use val_loss or val_mae"):
        fit(from_dict(config), tmp_path / "run", log=lambda _: None)


def test_regression_run_scores_and_plots_the_test_split(trained):
    result, _, _, _ = trained
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"examples", "mse", "mae", "rmse", "r2"} and test["examples"] == 18
    assert test["rmse"] == pytest.approx(np.sqrt(test["mse"])) and test["mae"] <= test["rmse"]
    assert test["r2"] > 0.2  # better than predicting the mean: the head learnt brightness
    plot = result.run_dir / "plots" / "predicted_vs_true.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (result.run_dir / "plots" / "confusion_matrix.png").exists()
    assert "Predicted vs true targets" in (result.run_dir / "report.html").read_text()
    assert (result.run_dir / "labels.txt").read_text() == "target\n"
    report = json.loads((result.run_dir / "data_report.json").read_text())
    assert report["task"] == "regression" and report["targets"]["train"]["std"] > 0


def test_saved_model_reloads_and_predicts_in_the_targets_units(trained):
    result, images, values, _ = trained
    model = keras.saving.load_model(result.run_dir / "model.keras", safe_mode=True)
    predicted = np.asarray(model.predict(images.astype(np.float32), verbose=0)).reshape(-1)
    assert np.corrcoef(predicted, values)[0, 1] > 0.5
    # Real units: around the targets' mean (about 50), not the standardised scale around 0.
    assert abs(predicted.mean() - values.mean()) < 0.5 * values.std()


def test_evaluate_and_predict_print_regression_values(trained, capsys):
    from keras_transfer.cli import evaluate, predict

    result, images, _, csv = trained
    assert evaluate.main(["--run", str(result.run_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = json.loads((result.run_dir / "metrics.json").read_text())["test"]
    assert printed["mae"] == pytest.approx(stored["mae"], rel=1e-4)
    assert (result.run_dir / "evaluation" / "test" / "plots" / "predicted_vs_true.png").is_file()

    model = keras.saving.load_model(result.run_dir / "model.keras", safe_mode=True)
    expected = float(np.asarray(model(images[:1].astype(np.float32), training=False)).reshape(-1)[0])
    assert predict.main(["--model", str(result.run_dir), "--json", str(csv.parent / "0.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["target"] == "target" and line["value"] == pytest.approx(expected, abs=1e-3)


def test_saved_model_and_tflite_exports_serve_the_same_values(trained):
    from keras_transfer.deploy import export_run, load_classifier

    result, images, _, _ = trained
    written = export_run(result.run_dir, ["saved_model", "tflite"], log=lambda _: None, model=result.model)
    expected = np.asarray(result.model(images[:2].astype(np.float32), training=False)).reshape(-1)
    for path in (written["saved_model"], written["tflite_float32"]):
        served = load_classifier(path)
        assert served.regression and served.labels == ["target"]
        got = [float(served.predict(image)[0]) for image in images[:2]]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    parity = json.loads((result.run_dir / "export" / "export_report.json").read_text())["tflite_float32"]
    assert "top1_agreement" not in parity and parity["max_abs_diff"] < 1e-3  # no classes to agree on


def test_npz_float_targets_train_end_to_end(tmp_path):
    images, values = brightness_images()
    np.savez(tmp_path / "targets.npz", x=images, y=values)
    result = fit(from_dict(regression_config(tmp_path, tmp_path / "targets.npz")), tmp_path / "run",
                 log=lambda _: None)
    assert result.metrics["test"]["r2"] > 0.2
    assert (result.run_dir / "plots" / "predicted_vs_true.png").is_file()
