"""The layer probe, the strategy advisor and the learning-rate finder, on tiny models and data."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from keras_transfer.features.advisor import BN_SHIFT_LIMIT, PROBE_MARGIN, SMALL_PER_CLASS, bn_shift, place
from keras_transfer.features.probe import ProbeResult, ProbeRow
from tests.support import tiny_source


def _config(tmp_path: Path, backbone: Path | None = None, **data) -> Path:
    raw = {"data": {"source": "digits", "image_size": [16, 16], "augment": [], **data},
           "model": {"backbone": str(backbone or tiny_source(tmp_path / "tiny.keras"))},
           "training": {"stages": [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.01},
                                   {"name": "all", "train": "all", "epochs": 1, "learning_rate": 0.001}]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_probe_cli_covers_every_block_and_writes_json_table_and_plot(tmp_path, capsys):
    from keras_transfer.cli.probe import main

    out = tmp_path / "probe"
    assert main(["--config", str(_config(tmp_path, few_shot=20)), "--output-dir", str(out)]) == 0
    result = json.loads((out / "probe.json").read_text())
    # Every block, then the top blocks' features together (here all three of the tiny network's).
    assert [row["layer"] for row in result["rows"]] == ["conv1", "conv2", "conv3", "conv1+conv2+conv3"]
    assert all(0.0 <= row["val_accuracy"] <= 1.0 and row["test_accuracy"] is not None for row in result["rows"])
    assert all(0.0 <= row["cv_accuracy"] <= 1.0 and row["cv_sem"] >= 0.0 for row in result["rows"])
    assert result["best"] == result["chosen"] and result["best"] in {row["layer"] for row in result["rows"]}
    assert "5-fold cross-validation" in result["method"]
    table = (out / "probe.md").read_text()
    assert table.count("\n| conv") == 4
    assert (out / "plots" / "layer_probe.png").stat().st_size > 1000
    assert "| conv3 |" in capsys.readouterr().out


def test_probe_cli_refuses_an_unknown_layer_with_the_closest_one(tmp_path, capsys):
    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.probe import main

    code = run_cli(lambda: main(["--config", str(_config(tmp_path)), "--layers", "conv4x",
                                 "--output-dir", str(tmp_path / "p")]))
    assert code == 2
    assert "conv4x" in capsys.readouterr().err and not (tmp_path / "p").exists()


def _probe(accuracies: dict[str, float]) -> ProbeResult:
    rows = [ProbeRow(name, name, 8, 1.0, acc, acc, 1.0, 0.0) for name, acc in accuracies.items()]
    return ProbeResult("net", "data", "logistic", {"train": 10}, rows)


def test_placement_changes_as_examples_per_class_cross_the_threshold():
    probe = _probe({"block3": 0.80, "top": 0.90})
    assert place(SMALL_PER_CLASS - 1, probe, 0.1)[0] == "small"
    assert place(SMALL_PER_CLASS, probe, 0.1)[0] == "large"


def test_placement_is_different_when_an_earlier_block_wins_or_the_bn_statistics_shift():
    assert place(10, _probe({"block3": 0.80, "top": 0.90}), 0.1)[1] == "similar"
    assert place(10, _probe({"block3": 0.90 + PROBE_MARGIN + 0.01, "top": 0.90}), 0.1)[1] == "different"
    assert place(10, _probe({"block3": 0.90 + PROBE_MARGIN - 0.01, "top": 0.90}), 0.1)[1] == "similar"
    size, similarity, reasons = place(10, _probe({"block3": 0.80, "top": 0.90}), BN_SHIFT_LIMIT + 0.1)
    assert similarity == "different" and any("BatchNorm" in r for r in reasons)
    assert place(10, _probe({"block3": 0.80, "top": 0.90}), None)[1] == "similar"  # no BatchNorm: probe only


def test_bn_shift_measures_standard_deviations_from_the_moving_statistics():
    from keras_transfer.data import load_data, DataConfig

    data = load_data(DataConfig(source="digits", image_size=(8, 8), augment=(), few_shot=5))
    inputs = keras.Input((8, 8, 3))
    norm = keras.layers.BatchNormalization(epsilon=0.0)
    model = keras.Model(inputs, norm(inputs))
    x = np.concatenate([x for x, _ in data.dataset("train", training=False)])
    norm.moving_mean.assign(x.mean(axis=(0, 1, 2)))
    norm.moving_variance.assign(np.full(3, 4.0))
    assert bn_shift(model, data) == pytest.approx(0.0, abs=1e-4)
    norm.moving_mean.assign(x.mean(axis=(0, 1, 2)) + 2.0 * 2.0)  # two standard deviations away
    assert bn_shift(model, data) == pytest.approx(2.0, abs=1e-3)


def test_advise_cli_places_few_and_many_examples_differently_and_writes_a_runnable_config(tmp_path, capsys):
    from keras_transfer.cli.advise import main
    from keras_transfer.config import load_config

    config = _config(tmp_path)
    situations = []
    for few_shot in ("5", "null"):
        output = tmp_path / f"advice-{few_shot}.yaml"
        assert main(["--config", str(config), "--set", f"data.few_shot={few_shot}", "--output", str(output)]) == 0
        advice = json.loads(output.with_suffix(".json").read_text())
        situations.append(advice["situation"])
        written = load_config(output)  # the recommendation is a valid config
        assert written.data.source == "digits" and written.model.backbone.endswith("tiny.keras")
    assert situations[0].startswith("small_") and situations[1].startswith("large_")
    assert "situation: small and" in capsys.readouterr().out


def _quick_learner(path: Path) -> Path:
    """A source CNN whose features are large enough for a head to learn digits in a few dozen steps."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1.0, name="scale")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    keras.Model(inputs, x, name="quick").save(path)
    return path


def test_lr_find_sweeps_up_finds_a_valley_stops_on_divergence_and_suggests_a_tenth_of_it(tmp_path):
    from keras_transfer.config import load_config
    from keras_transfer.training.lr_find import lr_find

    config = load_config(_config(tmp_path, _quick_learner(tmp_path / "quick.keras")))
    result = lr_find(config, 0, start_lr=1e-4, end_lr=1e3, steps=300)
    assert result.diverged and len(result.learning_rates) < 300
    assert np.all(np.diff(result.learning_rates) > 0)
    lowest = min(result.smoothed)
    assert lowest < 0.8 * result.smoothed[0]  # the loss fell before it blew up
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)
    assert 1e-5 < result.min_loss_lr < 1e3
    paths = result.write(tmp_path / "lrf")
    assert paths["plot"].stat().st_size > 1000 and json.loads(paths["json"].read_text())["stage"] == "head"


def test_lr_find_cli_names_the_stages_when_the_stage_is_unknown(tmp_path, capsys):
    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.lr_find import main

    assert run_cli(lambda: main(["--config", str(_config(tmp_path)), "--stage", "tops"])) == 2
    err = capsys.readouterr().err
    assert "tops" in err and "head" in err
    assert run_cli(lambda: main(["--config", str(_config(tmp_path)), "--stage", "3"])) == 2
    assert "has 2 stage(s)" in capsys.readouterr().err
