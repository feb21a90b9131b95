"""The images nobody labelled: the plates and letters sources, AdaBN, self-training, data.unlabeled."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_transfer.config import ConfigError, from_dict
from keras_transfer.data import DataConfig, load_data
from keras_transfer.data.synthetic import render
from keras_transfer.data.unlabeled import load_unlabeled
from keras_transfer.features.solution import run_feature_classifier
from keras_transfer.training.adapt import adapt_batchnorm, batchnorm_layers


def tiny_bn_source(path: Path) -> Path:
    """A 16x16 CNN with two BatchNorm layers (blocks conv1, conv2), saved as a .keras source model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    for i, filters in enumerate((8, 16), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = keras.layers.ReLU(name=f"conv{i}_relu")(x)
    keras.Model(inputs, x, name="tiny_bn").save(path)
    return path


def test_plates_and_letters_are_the_same_pixels_for_a_seed_and_others_for_another_seed():
    for kind, names in (("plates", ("0", "1", "2", "3", "4")), ("letters", ("A", "B", "C", "D", "E"))):
        images, labels, classes = render(kind, (16, 16), per_class=4, seed=3)
        again, labels_again, _ = render(kind, (16, 16), per_class=4, seed=3)
        other, _, _ = render(kind, (16, 16), per_class=4, seed=4)
        assert classes == names and images.shape == (20, 16, 16, 3) and images.dtype == np.uint8
        assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
        assert np.bincount(labels).tolist() == [4] * 5
        assert not np.array_equal(images, other)
        images[:] = 0  # a caller's copy: the memoised set must not change
        assert render(kind, (16, 16), per_class=4, seed=3)[0].any()


def test_plates_and_letters_are_embedded_sources_of_the_pipeline():
    for source, first in (("plates_0_4", "0"), ("letters", "A")):
        data = load_data(DataConfig(source=source, image_size=16, augment=()))
        assert data.class_names[0] == first and data.num_classes == 5
        assert sum(sum(c.values()) for c in data.counts().values()) == 1000


def test_adabn_changes_only_the_batchnorm_moving_statistics(tmp_path):
    model = keras.saving.load_model(tiny_bn_source(tmp_path / "bn.keras"))
    before = {w.path: np.array(keras.ops.convert_to_numpy(w)) for w in model.weights}
    images = render("plates", (16, 16), per_class=4)[0].astype("float32")
    import tensorflow as tf

    report = adapt_batchnorm(model, tf.data.Dataset.from_tensor_slices(images).batch(7), passes=2)
    assert report.layers == 2 and report.images == 20
    moving = ("moving_mean", "moving_variance")
    for weight in model.weights:
        after = keras.ops.convert_to_numpy(weight)
        if weight.path.endswith(moving):
            assert not np.array_equal(after, before[weight.path]), weight.path
        else:
            assert np.array_equal(after, before[weight.path]), f"{weight.path} changed"
    # The lowest BatchNorm layer now holds the exact population statistics of its input, its
    # variance floored at VARIANCE_FLOOR of the source's (1.0 in this untrained model).
    from keras_transfer.training.adapt import VARIANCE_FLOOR

    first = batchnorm_layers(model)[0]
    inputs = keras.Model(model.input, first.input)(images).numpy().reshape(-1, 8)
    np.testing.assert_allclose(first.moving_mean.numpy(), inputs.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), np.maximum(inputs.var(axis=0), VARIANCE_FLOOR),
                               rtol=1e-3, atol=1e-5)


def test_a_misspelt_or_missing_unlabeled_source_is_one_error_naming_data_unlabeled(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.unlabeled.*did you mean 'plates_0_4'"):
        from_dict({"data": {"unlabeled": "plates_04"}})
    with pytest.raises(ConfigError, match=r"data\.unlabeled: .*nowhere does not exist"):
        from_dict({"data": {"unlabeled": str(tmp_path / "nowhere")}})
    with pytest.raises(ConfigError, match=r"model\.adapt: adabn .*data\.unlabeled"):
        from_dict({"model": {"adapt": "adabn"}})
    with pytest.raises(ConfigError, match=r"training\.self_training\.threshold must be in \[0, 1\]"):
        from_dict({"data": {"unlabeled": "plates_0_4"}, "model": {"head": {"type": "logistic"}},
                   "training": {"self_training": {"threshold": 1.5}}})


def test_the_train_command_refuses_a_bad_unlabeled_source_in_one_line_before_writing(tmp_path, capsys):
    from keras_transfer.cli.train import main
    from keras_transfer.cli.common import run_cli

    out = tmp_path / "run"
    status = run_cli(lambda: main(["--set", f"data.unlabeled={tmp_path / 'missing'}", "--output-dir", str(out)]))
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "data.unlabeled" in err and "missing" in err
    assert not out.exists()


def test_an_unlabeled_folder_of_loose_images_loads_without_labels(tmp_path):
    from PIL import Image

    images = render("plates", (16, 16), per_class=2)[0]
    (tmp_path / "pool" / "day1").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "pool" / ("day1" if i % 2 else "") / f"{i}.png")
    (tmp_path / "pool" / "notes.txt").write_text("not an image")
    config = DataConfig(source="digits_0_4", image_size=16, unlabeled=str(tmp_path / "pool"))
    pool = load_unlabeled(config, ["0", "1", "2", "3", "4"])
    assert len(pool) == 10 and pool.known_labels is None and pool.score(np.arange(3), np.zeros(3)) is None
    labels = np.concatenate([y for _, y in pool.dataset()])
    assert (labels == -1).all()


def _solution_two(tmp_path: Path, unlabeled_labels: np.ndarray, name: str, **model) -> tuple[dict, keras.Model]:
    images, truth, _ = render("plates", (16, 16), per_class=12)
    np.savez(tmp_path / f"{name}.npz", x=images, y=unlabeled_labels if unlabeled_labels is not None else truth,
             class_names=np.array(["0", "1", "2", "3", "4"]))
    raw = {"data": {"source": "digits_0_4", "image_size": [16, 16], "augment": [], "few_shot": 8,
                    "unlabeled": str(tmp_path / f"{name}.npz")},
           "model": {"backbone": str(tmp_path / "bn.keras"), "head": {"type": "logistic"}, **model},
           "training": {"self_training": {"rounds": 2, "threshold": 0.6}}}
    result = run_feature_classifier(from_dict(raw), tmp_path / name, log=lambda _: None, cache_dir=tmp_path / "cache")
    return json.loads((tmp_path / name / "classifier.json").read_text()), result.model


def test_self_training_never_reads_the_labels_of_the_unlabeled_source_and_adabn_exports_their_statistics(tmp_path):
    import tensorflow as tf

    source = tiny_bn_source(tmp_path / "bn.keras")
    truth = render("plates", (16, 16), per_class=12)[1]
    honest, honest_model = _solution_two(tmp_path, truth, "honest", adapt="adabn")
    garbage, garbage_model = _solution_two(tmp_path, (truth + 1) % 5, "garbage", adapt="adabn")
    for a, b in zip(honest_model.weights, garbage_model.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path
    rounds, wrong = honest["self_training"], garbage["self_training"]
    assert [r["taken"] for r in rounds] == [r["taken"] for r in wrong] and len(rounds) == 2
    assert rounds[0]["taken"] > 0 and sum(rounds[0]["per_class"]) == rounds[0]["taken"]
    # Only the report differs: a pseudo-label right by the honest labels is wrong by the shifted ones.
    assert all(r["right"] > 0 and r["right"] + g["right"] <= r["taken"] for r, g in zip(rounds, wrong))
    assert honest["adapt"] == "adabn"
    # The exported model normalises with the unlabelled images' statistics, as AdaBN on them alone gives.
    reference = keras.saving.load_model(source)
    images = render("plates", (16, 16), per_class=12)[0].astype("float32")
    adapt_batchnorm(reference, tf.data.Dataset.from_tensor_slices(images).batch(32))
    for layer in batchnorm_layers(reference):
        exported = honest_model.get_layer(layer.name)
        np.testing.assert_allclose(exported.moving_mean.numpy(), layer.moving_mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(exported.moving_variance.numpy(), layer.moving_variance.numpy(), rtol=1e-4, atol=1e-5)


def test_the_adaptation_plan_takes_feature_statistics_from_a_few_dozen_and_self_training_for_many_unlabelled():
    from keras_transfer.features.align import FEATURE_STATS_FROM, adaptation_plan

    plan = adaptation_plan(n_unlabeled=600, n_labeled=100)
    assert plan["adapt"] == "feature_stats" and plan["self_training"]["rounds"] >= 1 and len(plan["reasons"]) == 2
    plan = adaptation_plan(n_unlabeled=FEATURE_STATS_FROM - 1, n_labeled=100)
    assert plan["adapt"] == "none" and plan["self_training"] is None
    assert adaptation_plan(0, 100)["reasons"] == ["no unlabelled images (data.unlabeled)"]



def test_feature_statistics_map_the_target_onto_the_source_and_the_retargeted_classifier_agrees():
    from keras_transfer.features.align import feature_alignment
    from keras_transfer.features.classifiers import fit_classifier

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    centres = rng.normal(size=(3, 6)) * 3
    source = centres[y] + rng.normal(size=(90, 6))
    # Rescaled per feature and moved far towards class 0: read raw, everything looks like class 0.
    target = (centres[y] + rng.normal(size=(90, 6))) * rng.uniform(0.2, 5, 6) + 10 * (centres[0] - centres.mean(axis=0))
    alignment = feature_alignment(source, target)
    mapped = alignment.to_source(target)
    np.testing.assert_allclose(mapped.mean(axis=0), source.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(mapped.std(axis=0), source.std(axis=0), rtol=1e-9)
    assert alignment.shift() > 1
    for scaling in ("features", "global"):
        classifier = fit_classifier("logistic", source, y, num_classes=3, grid=(1.0,), scaling=scaling)
        on_mapped = classifier.predict_proba(mapped)
        # Shifted and rescaled, the target fools the source classifier; mapped, it is read as the source.
        assert classifier.score(target, y) < 0.6 < 0.9 < classifier.score(mapped, y)
        np.testing.assert_allclose(alignment.retarget(classifier).predict_proba(target), on_mapped, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 unlabelled images"):
        feature_alignment(source, target[:1])


def test_self_training_picks_are_class_balanced_so_one_class_cannot_swallow_the_pool():
    from keras_transfer.features.self_training import balanced_picks

    rng = np.random.default_rng(0)
    # 100 images, all leaning to class 0 with high confidence, a few to classes 1 and 2.
    logits = rng.normal(size=(100, 3))
    logits[:80, 0] += 6
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    picks = balanced_picks(probabilities, share=0.3)
    counts = np.bincount(predicted[picks], minlength=3)
    assert counts[0] == 10  # ceil(0.3 * 100 / 3): its most confident 10 of 80, not all of them
    assert all(counts[c] == min(10, (predicted == c).sum()) for c in (1, 2))
    top = np.sort(probabilities[predicted == 0].max(axis=1))[-10:]
    np.testing.assert_array_equal(np.sort(probabilities[picks][predicted[picks] == 0].max(axis=1)), top)
    # The threshold still bars the unsure ones.
    assert (probabilities[balanced_picks(probabilities, share=1.0, threshold=0.9)].max(axis=1) >= 0.9).all()


def test_feature_statistics_runs_without_reading_the_unlabelled_labels_and_exports_the_target_standardisation(tmp_path):
    tiny_bn_source(tmp_path / "bn.keras")
    truth = render("plates", (16, 16), per_class=12)[1]
    honest, honest_model = _solution_two(tmp_path, truth, "honest", adapt="feature_stats")
    garbage, garbage_model = _solution_two(tmp_path, (truth + 1) % 5, "garbage", adapt="feature_stats")
    assert honest["adapt"] == "feature_stats" and honest["feature_shift"] == garbage["feature_shift"] > 0
    images = render("plates", (16, 16), per_class=12)[0].astype("float32")
    np.testing.assert_array_equal(honest_model.predict(images, verbose=0), garbage_model.predict(images, verbose=0))
    # Class-balanced rounds: each round takes more than the last, spread over the predicted classes.
    taken = [r["taken"] for r in honest["self_training"]]
    assert taken[0] < taken[1] and max(honest["self_training"][1]["per_class"]) <= np.ceil(0.6 * 60 / 5)


def test_feature_statistics_and_self_training_with_a_dense_head_are_refused_naming_the_key():
    raw = {"data": {"source": "digits_0_4", "unlabeled": "plates_0_4"}, "model": {"adapt": "feature_stats"}}
    with pytest.raises(ConfigError, match=r"model\.adapt: feature_stats works on a classifier over cached features"):
        from_dict(raw)
    raw["model"]["adapt"] = "feature_statz"
    with pytest.raises(ConfigError, match=r"model\.adapt.*did you mean 'feature_stats'"):
        from_dict(raw)


def test_recipe_auto_uses_the_unlabelled_images_when_it_picks_feature_extraction(tmp_path):
    from tests.support import tiny_config

    from keras_transfer.features.advisor import resolve_recipe

    raw = tiny_config(tmp_path, [{"name": "head", "train": "head", "epochs": 1}], few_shot=5)
    raw["training"]["recipe"] = "auto"
    raw["data"].update(source="digits_0_4", unlabeled="plates_0_4")
    lines = []
    config = resolve_recipe(from_dict(raw), log=lines.append)
    assert config.model.head.type == "logistic" and config.model.adapt == "feature_stats"
    assert config.training.self_training is not None and config.training.self_training.share == 0.6
    assert any("feature statistics" in line for line in lines)
    assert any("1,000 unlabelled images outnumber" in line for line in lines)
    raw["model"]["adapt"] = "adabn"  # named in the config: kept
    lines = []
    assert resolve_recipe(from_dict(raw), log=lines.append).model.adapt == "adabn"
    assert any("model.adapt: adabn is kept" in line for line in lines)
