"""Partial fine-tuning on cached activations: the suffix is the classifier's top, the cut is exact,
the fallbacks say why, and a stage on cached activations resumes."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from keras_transfer.config import from_dict
from keras_transfer.training import run
from tests.support import digit_images, tiny_config


def _stages(mode: str = "always", epochs: int = 2) -> list[dict]:
    return [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.05},
            {"name": "top", "train": "top:1", "epochs": epochs, "learning_rate": 0.01, "cache_activations": mode}]


def _config(tmp_path, stages, **data):
    return from_dict(tiny_config(tmp_path, stages, few_shot=10, augment=["flip"], **data))


def _skip_source(path):
    """A tiny source whose last block adds conv1's output back: no single tensor lies below conv3."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    b = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(a)
    c = keras.layers.Conv2D(8, 3, padding="same", name="conv3")(b)
    keras.Model(inputs, keras.layers.Add(name="skip_add")([a, c]), name="skip").save(path)
    return path


def _prepare(config, log, stage: int = 1):
    from keras_transfer.data import load_data
    from keras_transfer.training.engine import build_model
    from keras_transfer.training.stage import prepare_stage

    data = load_data(config.data)
    model = build_model(config, data)
    return model, prepare_stage(model, config.training.stages[stage], config, data, task=data.task, log=log)


def test_the_suffix_trains_the_full_models_top_block_and_the_frozen_ones_stay_bitwise(tmp_path):
    lines = []
    model, prepared = _prepare(_config(tmp_path, _stages()), lines.append)
    assert any("cached activations of conv2" in line and "3 views of" in line for line in lines), lines
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    prepared.fit_model.compile(optimizer=prepared.optimizer, loss=prepared.loss)
    prepared.fit_model.fit(prepared.train_ds, epochs=1, verbose=0, shuffle=False)
    prepared.release()
    after = {layer.name: layer.get_weights() for layer in model.layers}
    for frozen in ("conv1", "conv2"):
        assert all(np.array_equal(a, b) for a, b in zip(before[frozen], after[frozen])), frozen
    for trained in ("conv3", "head_predictions"):
        assert not all(np.array_equal(a, b) for a, b in zip(before[trained], after[trained])), trained


def test_the_full_model_equals_its_prefix_then_its_suffix(tmp_path):
    from keras_transfer.backbones import build_backbone
    from keras_transfer.freeze import set_trainable
    from keras_transfer.heads import build_classifier
    from keras_transfer.training.activation_cache import split_at_block
    from tests.support import tiny_source

    model = build_classifier(build_backbone(tiny_source(tmp_path / "tiny.keras"), input_shape=(16, 16, 3)), 10)
    trained = set_trainable(model, "top:1")
    cut = split_at_block(model, trained[0])
    images = digit_images(8).astype("float32")
    assert cut.boundary == "conv2" and 0 < cut.share < 1
    np.testing.assert_allclose(cut.suffix(cut.prefix(images)), model(images), atol=1e-5)
    assert {id(w) for w in cut.suffix.weights} <= {id(w) for w in model.weights}  # the same variables


def test_a_cut_that_is_not_a_single_tensor_falls_back_to_images_with_a_log_line(tmp_path):
    raw = tiny_config(tmp_path, _stages(), few_shot=10, augment=["flip"])
    raw["model"]["backbone"] = str(_skip_source(tmp_path / "skip.keras"))
    lines = []
    model, prepared = _prepare(from_dict(raw), lines.append)
    assert prepared.fit_model is model and prepared.activations is None
    assert len(lines) == 1 and "not on cached activations" in lines[0] and "conv2" in lines[0], lines


@pytest.mark.parametrize("mode, epochs, cached", [("never", 6, False), ("auto", 2, False), ("auto", 6, True)])
def test_never_keeps_todays_path_and_auto_caches_where_the_epochs_outnumber_the_views(tmp_path, mode, epochs, cached):
    lines = []
    model, prepared = _prepare(_config(tmp_path, _stages(mode, epochs)), lines.append)
    assert (prepared.activations is not None) is cached
    assert (prepared.fit_model is model) is not cached
    if mode == "never":
        assert not any("activations" in line for line in lines)
    elif not cached:
        assert any("2 epochs would cost about as much as the 3 views" in line for line in lines), lines
    prepared.release()


def test_auto_trains_a_large_set_on_images_and_always_caches_it_anyway(tmp_path, monkeypatch):
    from keras_transfer.training import stage

    monkeypatch.setattr(stage, "AUTO_MAX_PER_CLASS", 1)  # the tiny set counts as large
    lines = []
    _, prepared = _prepare(_config(tmp_path, _stages("auto", 6)), lines.append)
    assert prepared.activations is None
    assert any("training images per class" in line and "cache_activations: always" in line for line in lines), lines
    (tmp_path / "always").mkdir()
    _, prepared = _prepare(_config(tmp_path / "always", _stages("always", 6)), lambda line: None)
    assert prepared.activations is not None
    prepared.release()


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_a_head_stage_on_augmented_images_trains_on_the_pooled_features_of_a_few_views(tmp_path, mode):
    lines = []
    stages = [{"name": "head", "train": "head", "epochs": 6, "learning_rate": 0.05, "cache_activations": mode}]
    model, prepared = _prepare(_config(tmp_path, stages), lines.append, stage=0)
    if mode == "never":
        assert prepared.activations is None and prepared.fit_model is model
        return
    assert prepared.fit_model is not model and len(prepared.fit_model.input_shape) == 2  # pooled vectors
    assert prepared.activations.train.shape[:2] == (3, 100)
    assert any("pooled features" in line and "once per view instead of once per epoch" in line for line in lines)
    # The head trained on the views is the model's own head.
    assert {id(w) for w in prepared.fit_model.trainable_weights} <= {id(w) for w in model.weights}
    prepared.release()


def test_a_stage_on_cached_activations_resumes_after_an_interruption(tmp_path, monkeypatch):
    from keras_transfer.training import engine

    class Interrupted(Exception):
        pass

    original = engine._EpochRecorder.on_epoch_end

    def stop_after_the_tops_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if self.stage.name == "top" and epoch == 0:
            raise Interrupted

    config = _config(tmp_path, _stages(epochs=3))
    monkeypatch.setattr(engine._EpochRecorder, "on_epoch_end", stop_after_the_tops_first_epoch)
    with pytest.raises(Interrupted):
        run(config, tmp_path / "run", log=lambda line: None)
    monkeypatch.setattr(engine._EpochRecorder, "on_epoch_end", original)
    lines = []
    run(config, tmp_path / "run", resume=True, log=lines.append)
    assert any("resuming from" in line and "stage 'top', after its epoch 1" in line for line in lines), lines
    assert any(line.startswith("stage 'top'") and line.endswith("on cached activations") for line in lines)
    rows = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [(r["stage"], r["stage_epoch"]) for r in rows] == [("head", 1), ("top", 1), ("top", 2), ("top", 3)]
    assert not list((tmp_path / "run").glob("activations-*")), "the views are deleted after the stage"


def test_views_beyond_the_memory_bound_go_to_a_memory_map_deleted_after_the_stage(tmp_path, monkeypatch):
    from keras_transfer.data import load_data
    from keras_transfer.training import activation_cache
    from keras_transfer.training.engine import build_model
    from keras_transfer.training.stage import prepare_stage

    monkeypatch.setattr(activation_cache, "IN_MEMORY_BYTES", 0)
    config = _config(tmp_path, _stages())
    data = load_data(config.data)
    prepared = prepare_stage(build_model(config, data), config.training.stages[1], config, data, task=data.task,
                             scratch=tmp_path)
    views = prepared.activations.train
    assert isinstance(views, np.memmap) and views.shape[:2] == (3, len(data.splits["train"]))
    assert len(list(tmp_path.glob("activations-*/train.npy"))) == 1
    prepared.release()
    assert not list(tmp_path.glob("activations-*"))
