"""Values refused before any work, numbers as people write them, and one line for every expected
failure: non-finite rates, unbounded image sizes, `1e-3` in YAML, broken `--set` YAML, and the
errors of YAML, TensorFlow and onnxruntime as one line with exit status 2."""

from __future__ import annotations

import pytest

from keras_transfer.cli.common import run_cli
from keras_transfer.config import ConfigError, default_config_path, load_config


# Cheap cases run in loops, not as parameters: each test pays a Keras session clean-up.
def test_a_non_finite_learning_rate_is_refused_naming_the_key():
    for value in (".inf", "-.inf", ".nan", "1e400"):
        with pytest.raises(ConfigError, match=r"training\.stages\.0\.learning_rate must be a finite number"):
            load_config(default_config_path(), [f"training.stages.0.learning_rate={value}"])


def test_an_image_size_outside_the_documented_bounds_is_refused_naming_the_key():
    for size in ("[100000, 100000]", "[224, 5000]", "8193", "[4, 4]", "[224.5, 224]", "[224]"):
        with pytest.raises(ConfigError, match=r"data\.image_size(\.0)? must be"):
            load_config(default_config_path(), [f"data.image_size={size}"])


def test_the_largest_documented_image_size_is_accepted():
    from keras_transfer.config import MAX_IMAGE_SIDE

    assert load_config(default_config_path(), [f"data.image_size=[{MAX_IMAGE_SIDE}, 8]"]).data.image_size == (MAX_IMAGE_SIDE, 8)


def test_a_huge_image_size_is_refused_by_the_command_before_anything_is_written(tmp_path, capsys):
    from keras_transfer.cli import train

    out = tmp_path / "run"
    status = run_cli(lambda: train.main(["--set", "data.image_size=[100000, 100000]", "--output-dir", str(out)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "data.image_size" in err[0] and "4096" in err[0], err
    assert not out.exists()


def test_numbers_written_with_an_exponent_are_numbers_in_every_float_setting(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  stages:\n    - name: top\n      train: all\n      learning_rate: 1e-3\n"
                    "      weight_decay: 5E-5\n      block_lr: {block5: 1e-3, block4: 1e-4}\n"
                    "data:\n  val_split: 2e-1\n")
    config = load_config(path)
    stage = config.training.stages[0]
    assert stage.learning_rate == 1e-3 and stage.weight_decay == 5e-5
    assert stage.block_lr == {"block5": 1e-3, "block4": 1e-4}
    assert config.data.val_split == 0.2
    assert load_config(default_config_path(), ["training.stages.0.learning_rate=3e-4"]).training.stages[0].learning_rate == 3e-4


def test_words_in_a_float_setting_are_still_refused():
    for text in ("fast", "nan", "1e-3x", "1e"):
        with pytest.raises(ConfigError, match="learning_rate must be a"):
            load_config(default_config_path(), [f"training.stages.0.learning_rate={text}"])


def test_invalid_yaml_in_set_is_one_line_and_exit_status_2(capsys):
    from keras_transfer.cli import train

    for override in ("data.source=[1,", "data.source=!!python/object/apply:os.system ['true']", "data.source={a: 1",
                     "training.stages.0.epochs=!!binary x"):
        status = run_cli(lambda: train.main(["--set", override]))
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1, (override, err)
        assert err[0].startswith("error: --set ") and "not valid YAML" in err[0] and "line 1" in err[0], err


def test_an_invalid_yaml_config_file_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    from keras_transfer.cli import train

    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  source: digits\n  image_size: [96, 96\ntraining: {}\n")
    status = run_cli(lambda: train.main(["--config", str(path)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and str(path) in err[0] and "line" in err[0], err


def _raises(error: BaseException):
    def main() -> int:
        raise error
    return main


def _expected_failures():
    import onnxruntime
    import tensorflow as tf
    import yaml

    try:
        onnxruntime.InferenceSession(b"not an onnx model")
    except Exception as error:  # noqa: BLE001 - whatever onnxruntime raises for a damaged file
        damaged_onnx = error
    try:
        yaml.safe_load("a: [1,")
    except yaml.YAMLError as error:
        bad_yaml = error
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,4096,4096,3]\n"
                                                       "\t [[{{node conv}}]]\nHint: ...")
    return {"onnxruntime": damaged_onnx, "YAML": bad_yaml, "out of memory": oom, "memory": MemoryError()}


def test_yaml_tensorflow_onnxruntime_and_memory_errors_are_one_line_with_exit_status_2(capsys):
    for words, error in _expected_failures().items():
        assert run_cli(_raises(error)) == 2, words
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], (words, err)


def test_kt_debug_shows_the_traceback_of_an_expected_failure(monkeypatch):
    monkeypatch.setenv("KT_DEBUG", "1")
    with pytest.raises(MemoryError):
        run_cli(_raises(MemoryError()))


def test_a_bug_still_shows_its_traceback():
    with pytest.raises(KeyError):
        run_cli(_raises(KeyError("a bug")))


def test_an_error_naming_a_file_with_an_escape_code_prints_it_escaped(capsys):
    assert run_cli(_raises(FileNotFoundError("photo \x1b[2J.jpg does not exist"))) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "photo \\x1b[2J.jpg" in err


def test_a_loss_that_turns_non_finite_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    import numpy as np

    from keras_transfer.config import from_dict
    from keras_transfer.training import run
    from keras_transfer.training.checkpoint import Checkpointer
    from keras_transfer.training.engine import NonFiniteLossError
    from tests.support import tiny_config

    stages = [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.01},
              {"name": "tune", "train": "all", "epochs": 3, "learning_rate": 3e38, "optimizer": "sgd"}]
    config = from_dict(tiny_config(tmp_path, stages, few_shot=3, val_split=0.1, test_split=0.1))
    with pytest.raises(NonFiniteLossError, match=r"training\.stages\.tune: the (validation|training) loss became "
                                                 r"(nan|inf)") as raised:
        run(config, tmp_path / "run", log=lambda _: None)
    latest = Checkpointer(tmp_path / "run" / "checkpoints").latest()
    assert f"last good checkpoint (after epoch {latest.state['global_epoch']})" in str(raised.value)
    assert all(np.isfinite(v).all() for v in latest.arrays["model.npz"]), "the kept weights are the good ones"
    assert all(np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) for row in latest.state["history"])
    assert not (tmp_path / "run" / "model.keras").exists()
