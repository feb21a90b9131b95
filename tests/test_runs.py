"""The run layer: `RunDir` states the run folder's layout once, `fit` runs either recipe and finishes
the run the same way, `evaluate` scores it as training did."""

from __future__ import annotations

import json

import pytest

from keras_transfer.config import ConfigError, from_dict
from keras_transfer.runs import RunDir, evaluate, fit
from tests.support import tiny_config

STAGES = [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.05}]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    result = fit(from_dict(tiny_config(folder, STAGES)), folder / "run", insights=False, log=lambda _: None)
    return RunDir(result.run_dir), result


def test_every_file_a_run_writes_is_where_its_rundir_says(finished):
    run, _ = finished
    for path in (run.config_path, run.labels_path, run.split_path, run.data_report_path, run.model_path,
                 run.metrics_path, run.history_path, run.plot("training_curves.png")):
        assert path.is_file(), path.name
    assert run.checkpoints_dir.is_dir() and run.is_finished()
    assert run.labels() == [str(d) for d in range(10)]


def test_fit_without_insights_writes_the_model_but_no_report(finished):
    run, _ = finished
    assert not run.report_path.exists() and not run.mistakes_path.exists()


def test_evaluate_scores_the_test_split_as_training_did(finished):
    run, result = finished
    evaluation = evaluate(run.path)
    assert evaluation.split == "test" and evaluation.task == "multiclass"
    assert evaluation.metrics["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    assert evaluation.files["mistakes"].is_file()


def test_evaluate_runs_on_the_frozen_runtime_and_scores_the_same_there(finished, monkeypatch, tmp_path):
    run, _ = finished
    said: list[str] = []
    on_keras = evaluate(run.path, out=tmp_path / "keras", log=said.append)
    examples = on_keras.metrics["examples"]
    # The split's size reaches the runtime's size rule: too small to convert, so Keras, and why.
    assert any("on Keras" in line and f"{examples:,} images at" in line for line in said), said
    monkeypatch.setenv("KT_FROZEN_RUNTIME", "onnx")
    monkeypatch.setenv("KT_CACHE_DIR", str(tmp_path / "cache"))
    said.clear()
    on_onnx = evaluate(run.path, out=tmp_path / "onnx", log=said.append)
    assert any("on onnxruntime" in line for line in said), said
    assert on_onnx.metrics["accuracy"] == on_keras.metrics["accuracy"]
    assert on_onnx.metrics["confusion_matrix"] == on_keras.metrics["confusion_matrix"]


def test_a_folder_that_is_not_a_finished_run_is_one_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no model.keras"):
        RunDir(tmp_path).load_model()
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        evaluate(tmp_path)


def test_a_run_folder_inside_its_data_folder_is_refused_before_anything_is_written(tmp_path):
    photos = tmp_path / "photos"
    for name in ("a", "b"):
        (photos / name).mkdir(parents=True)
    config = from_dict({"data": {"source": f"folder:{photos}"}})
    with pytest.raises(ConfigError, match="inside the data folder"):
        fit(config, photos / "runs" / "x", log=lambda _: None)
    assert not (photos / "runs").exists()


def test_the_run_layout_is_stated_once(finished):
    # No module but core/run_dir.py spells the run's file names: they come from RunDir.
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "keras_transfer"
    spelled = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if p.name != "run_dir.py" and any(f'"{n}"' in p.read_text()
                                                  for n in ("model.keras", "metrics.json", "history.json"))]
    assert not spelled, f"the run layout spelled outside core/run_dir.py: {spelled}"
    assert json.loads(finished[0].metrics_path.read_text())["test"]["examples"] > 0
