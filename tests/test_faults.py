"""Faults a user meets: damaged checkpoints, two runs in one folder, unwritable folders, exact
resume with restored best weights, a damaged weights cache, file permissions, and settings that
must be refused before any work."""

from __future__ import annotations

import hashlib
import os
import stat

import keras
import numpy as np
import pytest

from keras_transfer.config import ConfigError, default_config_path, from_dict, load_config
from keras_transfer.core.files import FolderBusyError, atomic_folder, atomic_write_text, claimed_folder
from keras_transfer.training.checkpoint import Checkpointer
from tests.support import tiny_config, two_layer_model


def _state(epoch: int) -> dict:
    return {"stage_index": 0, "stage_epoch": epoch, "global_epoch": epoch, "history": [{"epoch": epoch}]}


@pytest.mark.parametrize("damage", ["truncated model.npz", "truncated optimizer.npz", "empty state.json"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_intact_one(tmp_path, damage):
    model = two_layer_model()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    saver = Checkpointer(tmp_path / "ckpt")
    saver.save(model, optimizer, _state(1))
    newest = saver.save(model, optimizer, _state(2))
    how, file = damage.split()
    target = newest / file
    target.write_bytes(b"" if how == "empty" else target.read_bytes()[:100])
    said = []
    latest = saver.latest(said.append)
    assert latest.state["global_epoch"] == 1, "the previous intact checkpoint is used"
    assert any(file in line and "damaged" in line for line in said), said
    latest.restore_model(model)


def test_when_every_checkpoint_is_damaged_resume_says_how_to_start_over(tmp_path):
    saver = Checkpointer(tmp_path / "ckpt")
    newest = saver.save(two_layer_model(), None, _state(1))
    (newest / "state.json").write_text("")
    with pytest.raises(RuntimeError, match="no intact checkpoint.*without --resume"):
        saver.latest(lambda line: None)


def test_a_second_run_into_a_folder_in_use_is_refused_with_one_line(tmp_path, capsys):
    from keras_transfer.cli import train

    out = tmp_path / "run"
    with claimed_folder(out):
        status = train.run_cli(lambda: train.main(["--output-dir", str(out), "--set", "data.few_shot=2"]))
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by pid" in err[0] and str(out) in err[0]
    assert sorted(p.name for p in out.iterdir()) == [".lock"], "the refused run wrote nothing"


def test_claiming_a_folder_then_failing_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(ValueError):
        with claimed_folder(out):
            raise ValueError("bad data")
    assert not out.exists()
    with claimed_folder(out):
        with pytest.raises(FolderBusyError):
            with claimed_folder(out):
                pass


def test_an_unwritable_output_dir_is_refused_before_data_is_loaded(tmp_path, capsys, monkeypatch):
    from keras_transfer.cli import train

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    loaded = []
    monkeypatch.setattr("keras_transfer.training.engine.load_data", lambda *a, **k: loaded.append(1))
    status = train.run_cli(lambda: train.main(["--output-dir", str(blocker / "run")]))
    assert status == 2 and not loaded
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to" in err and "a_file" in err


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "x"), __import__("zipfile").BadZipFile("bad")])
def test_every_cli_turns_os_and_archive_errors_into_one_line(error, capsys):
    from keras_transfer.cli.common import run_cli

    def main():
        raise error

    assert run_cli(main) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_resume_restores_the_same_best_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    """A stage whose best epoch comes before the interruption must end on that epoch's weights."""
    from keras_transfer.training import engine

    # Plain SGD at a rate far too high: validation loss is best early and then gets worse, so
    # restore_best_weights has real work to do after the interruption.
    stages = [{"name": "head", "train": "head", "epochs": 5, "learning_rate": 5.0, "optimizer": "sgd", "momentum": 0.0,
               "cache_features": "always",
               "early_stopping": {"monitor": "val_loss", "patience": 10, "restore_best_weights": True}}]
    config = from_dict(tiny_config(tmp_path, stages, few_shot=10))
    whole = engine.run(config, tmp_path / "whole", log=lambda line: None)
    losses = [row["val_loss"] for row in whole.history]
    best = int(np.argmin(losses)) + 1
    assert best <= 2, f"the test needs an early best epoch, got {losses}"

    save = Checkpointer.save

    def save_then_die(self, model, optimizer, state, best_weights=None):
        path = save(self, model, optimizer, state, best_weights)
        if state["global_epoch"] == 3:
            raise KeyboardInterrupt  # a kill right after epoch 3's checkpoint
        return path

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.run(config, tmp_path / "cut", log=lambda line: None)
    monkeypatch.setattr(Checkpointer, "save", save)
    resumed = engine.run(config, tmp_path / "cut", resume=True, log=lambda line: None)
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_damaged_weights_cache_with_a_matching_checksum_is_rebuilt(lite0_imagenet_path):
    from keras_transfer.backbones import build_backbone

    reference = lite0_imagenet_path.read_bytes()
    garbage = b"\x89HDF\r\n\x1a\n" + os.urandom(4096)
    lite0_imagenet_path.write_bytes(garbage)
    sidecar = lite0_imagenet_path.with_name(lite0_imagenet_path.name + ".sha256")
    sidecar.write_text(hashlib.sha256(garbage).hexdigest() + "\n")
    with pytest.warns(UserWarning, match="converting them again"):
        backbone = build_backbone("efficientnet_lite0", input_shape=(32, 32, 3))
    assert lite0_imagenet_path.read_bytes() == reference
    assert backbone.get_layer("stem_conv").get_weights()[0].std() > 0


def test_written_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        text = atomic_write_text(tmp_path / "a.json", "{}")
        folder = atomic_folder(tmp_path / "export", lambda tmp: (tmp.mkdir(), (tmp / "x").write_text("1")))
        checkpoint = Checkpointer(tmp_path / "ckpt").save(two_layer_model(), None, _state(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(text.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755 and stat.S_IMODE((folder / "x").stat().st_mode) == 0o644
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o755
    assert stat.S_IMODE((checkpoint / "model.npz").stat().st_mode) == 0o644


@pytest.mark.parametrize("override, message", [
    ("training.stages.0.early_stopping.monitor=val_acc", "did you mean 'val_accuracy'"),
    ("training.stages.0.early_stopping.patience=-3", "early_stopping.patience must be >= 0, got -3"),
    ("data.batch_size.x=1", "data.batch_size holds the value 32, not a section"),
    ("training.stages.0.early_stopping.monitor=val_mae", "not logged for model.task multiclass"),
])
def test_settings_that_cannot_work_are_refused_before_any_work(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(default_config_path(), ["data.batch_size=32", override])


def test_a_validation_monitor_without_a_validation_split_is_refused_before_writing(tmp_path):
    from keras_transfer.training import engine

    stages = [{"name": "head", "train": "head", "epochs": 1, "early_stopping": {"monitor": "val_loss"}}]
    config = from_dict(tiny_config(tmp_path, stages, val_split=0.0, few_shot=2))
    with pytest.raises(ConfigError, match="early_stopping.monitor: val_loss needs a validation split"):
        engine.run(config, tmp_path / "run", log=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_saved_source_model_honours_include_top_and_refuses_in_model_augmentation(tmp_path):
    from keras_transfer.backbones import build_backbone

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(3, activation="softmax", name="classifier")(x)
    path = tmp_path / "source.keras"
    keras.Model(inputs, x, name="src").save(path)
    assert build_backbone(path).layers[-1].name == "conv1"
    assert build_backbone(path, include_top=True).layers[-1].name == "classifier"
    with pytest.raises(ValueError, match="data.augment_in: data"):
        build_backbone(path, augmentation=keras.layers.RandomFlip())
    raw = tiny_config(tmp_path, [{"name": "head"}], augment=["flip"], augment_in="model")
    with pytest.raises(ConfigError, match="augment_in: model cannot wrap a saved source model"):
        from_dict(raw)
