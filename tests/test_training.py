"""Staged training: per-block learning rates, stages that train exactly what they say, feature
caching equal to the uncached path, resume after a real kill, config errors, and the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import keras
import tensorflow as tf
from keras_transfer.config import ConfigError, apply_override, from_dict, load_config
from keras_transfer.training import make_optimizer, run
from tests.support import tiny_config, two_layer_model


def _xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_two_group_run_matches_two_separately_stepped_optimizers(name):
    x, y = _xy()
    grouped = two_layer_model()
    optimizer = make_optimizer(name, 0.01, lr_multipliers={v.path: 0.1 for v in grouped.get_layer("bottom").weights})
    separate = two_layer_model()
    top_opt, bottom_opt = make_optimizer(name, 0.01), make_optimizer(name, 0.001)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((grouped(x) - y) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, grouped.trainable_weights), grouped.trainable_weights))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((separate(x) - y) ** 2)
        bottom, top = separate.get_layer("bottom").weights, separate.get_layer("top").weights
        grads = tape.gradient(loss, bottom + top)
        bottom_opt.apply_gradients(zip(grads[:2], bottom))
        top_opt.apply_gradients(zip(grads[2:], top))
    for a, b in zip(grouped.weights, separate.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7)


def test_adam_rate_multiplier_is_not_gradient_scaling():
    """With Adam, scaling a gradient barely changes the step; a 0.1 rate makes it 10x smaller."""
    x, y = _xy()
    moved = {}
    for multiplier in (1.0, 0.1):
        model = two_layer_model()
        start = model.get_layer("bottom").kernel.numpy().copy()
        opt = make_optimizer("adam", 0.01, lr_multipliers={model.get_layer("bottom").kernel.path: multiplier})
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        moved[multiplier] = np.abs(model.get_layer("bottom").kernel.numpy() - start).max()
    assert moved[0.1] == pytest.approx(moved[1.0] * 0.1, rel=1e-3)


def test_three_stage_run_changes_exactly_the_intended_variables(tmp_path):
    stages = [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.01},
              {"name": "top", "train": "top:1", "epochs": 1, "learning_rate": 0.01},
              {"name": "full", "train": "all", "epochs": 1, "learning_rate": 0.01,
               "block_lr": {"conv1": 0.0}}]
    config = from_dict(tiny_config(tmp_path, stages))
    source = keras.saving.load_model(tmp_path / "tiny.keras")
    snapshots = []

    def snapshot(index, stage, model):
        snapshots.append({layer.name: [w.copy() for w in layer.get_weights()]
                          for layer in model.layers if layer.weights})

    result = run(config, tmp_path / "run", on_stage_end=snapshot, log=lambda _: None)
    same = lambda a, b, name: all(np.array_equal(x, y) for x, y in zip(a[name], b[name]))
    after_head, after_top, after_full = snapshots
    original = {n: source.get_layer(n).get_weights() for n in ("conv1", "conv2", "conv3")}
    assert all(same(after_head, original, n) for n in ("conv1", "conv2", "conv3")), "head stage: backbone frozen"
    assert not same(after_top, after_head, "conv3") and not same(after_top, after_head, "head_predictions")
    assert same(after_top, after_head, "conv2") and same(after_top, after_head, "conv1")
    assert not same(after_full, after_top, "conv2"), "full stage trains every block"
    assert same(after_full, after_top, "conv1"), "a block with rate 0 stays bitwise unchanged"
    assert [row["stage"] for row in result.history] == ["head", "top", "full"]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all("lr" in row and "val_loss" in row for row in result.history)


def test_cached_head_training_matches_the_uncached_path(tmp_path):
    results = {}
    for mode in ("always", "never"):
        stages = [{"name": "head", "train": "head", "epochs": 3, "learning_rate": 0.05, "optimizer": "sgd",
                   "cache_features": mode}]
        # One batch holds the whole training split, so both paths take identical full-batch steps.
        config = from_dict(tiny_config(tmp_path, stages, batch_size=2048))
        result = run(config, tmp_path / f"run_{mode}", log=lambda _: None)
        results[mode] = (result.model.get_layer("head_predictions").get_weights(), result.history)
    (cached_w, cached_h), (plain_w, plain_h) = results["always"], results["never"]
    for a, b in zip(cached_w, plain_w):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert [r["loss"] for r in cached_h] == pytest.approx([r["loss"] for r in plain_h], rel=1e-4)


def _train_cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "keras_transfer.train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_resume_after_a_real_kill_continues_from_the_last_completed_epoch(tmp_path):
    stages = [{"name": "head", "train": "head", "epochs": 2, "learning_rate": 0.01, "cache_features": "never"},
              {"name": "top", "train": "top:1", "epochs": 4, "learning_rate": 0.001}]
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(tmp_path, stages, batch_size=4)))
    out = tmp_path / "run"
    process = _train_cli("--config", config_path, "--output-dir", out)
    history = out / "history.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if history.is_file() and len(json.loads(history.read_text() or "[]")) >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed: " + process.stdout.read()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    done_before = len(json.loads(history.read_text()))
    assert 3 <= done_before < 6

    resumed = _train_cli("--resume", "--output-dir", out)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    rows = json.loads(history.read_text())
    assert [r["epoch"] for r in rows] == list(range(1, 7)), "no epoch lost or repeated"
    assert [r["stage"] for r in rows] == ["head"] * 2 + ["top"] * 4
    assert (out / "model.keras").is_file() and (out / "metrics.json").is_file()


def test_a_half_written_checkpoint_is_never_loaded(tmp_path):
    from keras_transfer.training.checkpoint import Checkpointer

    model = two_layer_model()
    saver = Checkpointer(tmp_path / "ckpt")
    saver.save(model, None, {"stage_index": 0, "stage_epoch": 1, "global_epoch": 1, "history": [{"epoch": 1}]})
    (tmp_path / "ckpt" / ".tmp-crashed").mkdir()  # what a kill during the next save leaves behind
    (tmp_path / "ckpt" / ".tmp-crashed" / "model.npz").write_bytes(b"half")
    latest = saver.latest()
    assert latest.state["global_epoch"] == 1
    fresh = two_layer_model()
    for variable in fresh.weights:
        variable.assign(np.zeros(variable.shape))
    latest.restore_model(fresh)
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    saver.save(model, None, {"stage_index": 0, "stage_epoch": 2, "global_epoch": 2, "history": []})
    assert not (tmp_path / "ckpt" / ".tmp-crashed").exists()


def test_overrides_take_dotted_paths_list_indices_and_yaml_values():
    raw = {"training": {"stages": [{"name": "a"}, {"name": "b", "epochs": 5}]}}
    apply_override(raw, "training.stages.1.epochs=3")
    apply_override(raw, "data.augment=[flip, zoom]")
    apply_override(raw, "model.head.units=[64]")
    config = from_dict(raw)
    assert config.training.stages[1].epochs == 3
    assert config.data.augment == ("flip", "zoom") and config.model.head.units == [64]


@pytest.mark.parametrize("raw, message", [
    ({"data": {"sourse": "digits"}}, r"unknown key 'sourse' in data; did you mean 'source'"),
    ({"training": {"stages": [{"epochs": "five"}]}}, r"training.stages.0.epochs must be an integer"),
    ({"model": {"backbone": "efficientnet_lite"}}, r"model.backbone.*'efficientnet_lite0'"),
    ({"training": {"stages": [{"optimizer": "adamm"}]}}, r"training.stages.0.optimizer.*'adam'"),
    ({"data": {"augment": ["flipp"]}}, r"unknown augmentation 'flipp'"),
    ({"training": {"strategy": "mirored"}}, r"training.strategy.*mirrored"),
    ({"training": {"lr_scaling": "linaer"}}, r"training.lr_scaling.*linear"),
])
def test_config_errors_name_the_key_and_the_closest_choice(raw, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(raw)


def _cli_run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "keras_transfer.train", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _cli_in_process(capsys, *args) -> tuple[int, str]:
    """The train CLI in this process (exit status, stderr): error paths need no TensorFlow start-up."""
    from keras_transfer.cli import train

    status = train.run_cli(lambda: train.main([str(a) for a in args]))
    return status, capsys.readouterr().err


def test_cli_refuses_an_unknown_block_or_layer_with_status_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    status, err = _cli_in_process(capsys, "--output-dir", out, "--set", "data.image_size=[32,32]",
                                  "--set", "training.stages.1.train=[block8]")
    assert status == 2, err
    assert "training.stages.top" in err and "unknown block 'block8'" in err
    assert "block6, block7, top, head" in err
    status, err = _cli_in_process(capsys, "--output-dir", out, "--set", "model.cut_at=block6a_expnd_conv")
    assert status == 2 and "'block6a_expand_conv'" in err and err.count("\n") == 1
    status, err = _cli_in_process(capsys, "--output-dir", out, "--set", "training.stages.0.epoch=1")
    assert status == 2 and "did you mean 'epochs'" in err and err.count("\n") == 1
    assert not out.exists()


def test_default_config_run_produces_every_file(tmp_path, capsys):
    out = tmp_path / "run"
    # A real process, as `make run` starts one; 20 training images per class keep it short. TFLite
    # (15 s to convert) is exported and checked by test_export.py and notebook 05.
    done = _cli_run("--output-dir", out, "--set", "data.image_size=[32,32]", "--set", "data.few_shot=20",
                    "--set", "training.stages.0.epochs=1",
                    "--set", "training.stages.1.epochs=1", "--set", "export.formats=[keras,saved_model]")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test accuracy:" in done.stdout and "SavedModel:" in done.stdout
    assert "balanced accuracy" in done.stdout and "recall per class: 0 " in done.stdout
    assert (out / "export" / "saved_model" / "1" / "saved_model.pb").is_file()
    for name in ("config.yaml", "history.json", "metrics.json", "labels.txt", "model.keras", "data_report.json",
                 "data_health.json", "plots/training_curves.png", "plots/confusion_matrix.png"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
    assert "Export parity" in (out / "report.html").read_text(), "the export re-renders the run page"
    assert "Data health" in (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"} and "confusion_matrix" in metrics["test"]
    assert load_config(out / "config.yaml").data.image_size == (32, 32)
    from keras_transfer.cli import evaluate

    capsys.readouterr()
    status = evaluate.run_cli(lambda: evaluate.main(["--run", str(out), "--json"]))
    printed, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(printed)["accuracy"] == pytest.approx(metrics["test"]["accuracy"])


@pytest.mark.parametrize("name", ["default", "photos", "small_similar", "small_different", "large_similar",
                                  "large_different"])
def test_shipped_configs_are_valid_and_their_blocks_exist(name):
    from keras_transfer.backbones import backbone_blocks, build_backbone
    from keras_transfer.freeze import resolve_trainable
    from keras_transfer.config import default_config_path

    config = load_config(default_config_path().with_name(f"{name}.yaml"))
    backbone = build_backbone(config.model.backbone, weights=None, input_shape=(*config.data.image_size, 3),
                              cut_at=config.model.cut_at)
    blocks = [*backbone_blocks(backbone), "head"]
    for stage in config.training.stages:
        assert resolve_trainable(stage.train, blocks)
    assert (Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml").resolve() == default_config_path().with_name(f"{name}.yaml").resolve()


def test_a_misspelt_block_in_block_lr_is_refused_before_anything_is_written(tmp_path):
    stages = [{"name": "tune", "train": "all", "epochs": 1, "learning_rate": 0.01, "block_lr": {"conv4": 0.001}}]
    config = from_dict(tiny_config(tmp_path, stages))
    with pytest.raises(ConfigError, match=r"training.stages.tune: unknown block 'conv4' in block_lr"):
        run(config, tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()
