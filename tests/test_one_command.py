"""One command from a folder of photos: the positional source, the photos config, stage names in
`--set`, `--help` without TensorFlow, and the lr_find warning when the sweep finds no edge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_transfer.cli import train
from keras_transfer.config import ConfigError, apply_override, from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "advise", "describe", "evaluate", "explain", "export", "lr_find", "predict", "probe", "visualize",
            "check")


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder laid out as users keep photos: one subfolder per class (no images needed to configure)."""
    folder = tmp_path / "my_flowers"
    for name in ("daisy", "tulip"):
        (folder / name).mkdir(parents=True)
    return folder


def _configured(*argv: str):
    args = train.build_parser().parse_args(list(argv))
    path, config = train._config(args)
    return path, config, train._run_name(path, config)


def test_a_bare_folder_trains_with_the_photos_recipe_and_names_the_run_after_the_folder(photos):
    path, config, name = _configured(str(photos))
    assert path.stem == "photos"
    assert config.data.source == f"folder:{photos}"
    assert config.data.image_size == (224, 224)
    assert "flip" in config.data.augment and config.model.backbone == "efficientnet_lite0"
    assert [s.name for s in config.training.stages] == ["head", "top", "full"] and config.training.recipe == "auto"
    assert name == "my_flowers"


def test_data_option_and_set_data_source_mean_the_same_as_the_positional_source(photos):
    by_option = _configured("--data", str(photos))[1]
    by_set = _configured("--set", f"data.source={photos}")[1]
    assert by_option.data.source == by_set.data.source == f"folder:{photos}"
    assert by_set.data.image_size == (224, 224), "a folder set with --set also gets the photos recipe"


def test_an_explicit_config_keeps_its_recipe_with_a_positional_folder(photos):
    path, config, _ = _configured(str(photos), "--config", "small_similar")
    assert path.stem == "small_similar" and config.data.source == f"folder:{photos}"
    assert config.data.augment == ()


def test_an_embedded_source_keeps_the_digits_recipe():
    path, config, name = _configured("--set", "data.source=digits")
    assert path.stem == "default" and name == "default" and config.data.image_size == (96, 96)


def test_a_scalar_image_size_means_a_square():
    assert from_dict({"data": {"image_size": 96}}).data.image_size == (96, 96)


def test_the_data_given_twice_or_a_missing_folder_is_one_line_and_status_2(photos, tmp_path, capsys):
    status = train.run_cli(lambda: train.main([str(photos), "--data", str(photos)]))
    err = capsys.readouterr().err
    assert status == 2 and "give the data once" in err and err.count("\n") == 1
    missing = tmp_path / "no_such" / "folder"
    status = train.run_cli(lambda: train.main([str(missing), "--output-dir", str(tmp_path / "run")]))
    err = capsys.readouterr().err
    assert status == 2 and f"{missing} does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_stages_are_addressed_by_name_or_index_in_set():
    raw = {"training": {"stages": [{"name": "head", "epochs": 5}, {"name": "top", "epochs": 5}]}}
    apply_override(raw, "training.stages.top.epochs=3")
    apply_override(raw, "training.stages.0.learning_rate=0.02")
    assert raw["training"]["stages"][1]["epochs"] == 3
    assert raw["training"]["stages"][0]["learning_rate"] == 0.02
    with pytest.raises(ConfigError, match=r"unknown name 'tops'.*did you mean 'top'"):
        apply_override(raw, "training.stages.tops.epochs=3")
    with pytest.raises(ConfigError, match=r"'5' is not an index of a list of 2 \(or one of the names head, top\)"):
        apply_override(raw, "training.stages.5.epochs=3")


def test_stage_errors_name_the_stage_as_set_addresses_it():
    stages = [{"name": "head"}, {"name": "top", "train": "top:2", "block_lr_decay": 0.5, "block_lr": {"top": 0.1}}]
    with pytest.raises(ConfigError, match=r"^training\.stages\.top: give block_lr_decay or block_lr"):
        from_dict({"training": {"stages": stages}})


def test_the_packaged_photos_config_loads_by_name():
    config = load_config(train._config(train.build_parser().parse_args(["--config", "photos"]))[0])
    assert config.data.image_size == (224, 224)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_answers_without_importing_tensorflow(command):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", f"keras_transfer.{command}", "--help"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "tensorflow" not in imported and "keras" not in imported


def test_lr_find_warns_instead_of_suggesting_when_the_loss_only_fell():
    from keras_transfer.training.lr_find import _no_edge_warning

    rates = [10 ** (-7 + i * 8 / 99) for i in range(100)]
    falling = [2.0 - i / 100 for i in range(100)]
    warning = _no_edge_warning(rates, falling, 99, diverged=False)
    assert warning and "still falling at the end of the sweep" in warning and "--end-lr" in warning
    flat_after = [2.0 - i / 100 for i in range(50)] + [1.5] * 50
    assert "never rose after its minimum" in _no_edge_warning(rates, flat_after, 49, diverged=False)
    turned_up = [2.0 - i / 100 for i in range(60)] + [1.4 + i / 10 for i in range(40)]
    assert _no_edge_warning(rates, turned_up, 59, diverged=True) is None


def test_the_forward_pass_is_traced_once_per_model_and_reused():
    import keras
    import numpy as np

    from keras_transfer.forward.compiled import _FORWARDS, compiled_forward

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    for n in (3, 5, 7, 9, 11, 13):  # a new caller each time, as val, test and the report are
        compiled_forward(model)(np.zeros((n, 4), "float32"))
    assert _FORWARDS[model].experimental_get_tracing_count() <= 2, "one traced function, not one per call"
    out = compiled_forward(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]), as_list=True)
    assert out(np.zeros((2, 4), "float32"))[0].shape == (2, 3), "a model built just for the call stays alive"
