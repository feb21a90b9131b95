"""feature extraction: cached feature extraction, external classifiers and their Keras export."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from keras_transfer.backbones import build_backbone
from keras_transfer.data import DataConfig, load_data
from keras_transfer.features import classifier_model, extract_features, feature_layers, fit_classifier
from tests.support import tiny_source


@pytest.fixture
def tiny(tmp_path):
    return build_backbone(tiny_source(tmp_path / "tiny.keras"), input_shape=(16, 16, 3))


@pytest.fixture
def digits16():
    return load_data(DataConfig(source="digits", image_size=(16, 16), augment=(), few_shot=20))


def test_second_extraction_is_a_cache_hit_with_identical_arrays(tiny, digits16, tmp_path):
    first = extract_features(tiny, digits16, "blocks", cache_dir=tmp_path)
    second = extract_features(tiny, digits16, "blocks", cache_dir=tmp_path)
    assert first.cache_hits == 0
    assert second.cache_hits == len(first.layers) * len(first.splits)
    for split in first.splits:
        np.testing.assert_array_equal(first.labels[split], second.labels[split])
        for layer in first.layers:
            np.testing.assert_array_equal(first[split][layer], second[split][layer])


def test_changed_weights_or_data_are_recomputed(tiny, digits16, tmp_path):
    before = extract_features(tiny, digits16, "conv3", cache_dir=tmp_path)
    kernel = tiny.get_layer("conv3").kernel
    kernel.assign(kernel.numpy() * 2.0)
    after = extract_features(tiny, digits16, "conv3", cache_dir=tmp_path)
    assert after.cache_hits == 0
    assert not np.allclose(before["train"]["conv3"], after["train"]["conv3"])
    other = load_data(DataConfig(source="digits", image_size=(16, 16), augment=(), few_shot=10))
    assert extract_features(tiny, other, "conv3", cache_dir=tmp_path, splits=["train"]).cache_hits == 0


def test_a_corrupted_or_foreign_cache_file_is_recomputed_never_trusted(tiny, digits16, tmp_path):
    clean = extract_features(tiny, digits16, "conv2", cache_dir=tmp_path, splits=["train"])
    (path,) = (tmp_path / tiny.name).glob("conv2-train-*.npz")
    path.write_bytes(b"not a zip file")
    again = extract_features(tiny, digits16, "conv2", cache_dir=tmp_path, splits=["train"])
    assert again.cache_hits == 0
    np.testing.assert_allclose(again["train"]["conv2"], clean["train"]["conv2"], rtol=1e-6)
    # A well-formed file with the right name but another key's metadata is not used either.
    np.savez(path, features=np.zeros_like(clean["train"]["conv2"]), meta=np.array('{"format": 1}'))
    third = extract_features(tiny, digits16, "conv2", cache_dir=tmp_path, splits=["train"])
    assert third.cache_hits == 0 and np.abs(third["train"]["conv2"]).sum() > 0


def test_blocks_are_every_block_shallow_to_deep_and_unknown_names_get_the_closest(tiny):
    assert list(feature_layers(tiny, "blocks")) == ["conv1", "conv2", "conv3"]
    with pytest.raises(ValueError, match="conv2"):
        feature_layers(tiny, ["conv_2"])


def _blobs(n_per_class=40, classes=3, dim=8, seed=0):
    centres = np.random.default_rng(42).normal(scale=6.0, size=(classes, dim))  # one problem, new samples
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


@pytest.mark.parametrize("kind", ["logistic", "linear_svm", "knn"])
def test_each_classifier_separates_a_separable_toy_problem(kind):
    x, y = _blobs()
    xv, yv = _blobs(seed=1)
    classifier = fit_classifier(kind, x, y, validation=_blobs(seed=2))
    assert classifier.score(xv, yv) >= 0.95
    assert classifier.selected_on == "validation split"
    assert len(classifier.selection) > 1
    np.testing.assert_allclose(classifier.predict_proba(xv).sum(axis=1), 1.0, rtol=1e-6)


def test_without_a_validation_split_C_is_chosen_by_cross_validation():
    x, y = _blobs(n_per_class=10)
    classifier = fit_classifier("logistic", x, y)
    assert classifier.selected_on == "5-fold cross-validation"
    assert classifier.chosen["C"] in [c for c, _ in classifier.selection]


def test_multilabel_or_single_class_labels_are_refused():
    x, _ = _blobs()
    with pytest.raises(ValueError, match="one integer class per example"):
        fit_classifier("logistic", x, np.zeros((len(x), 3)))
    with pytest.raises(ValueError, match="at least two classes"):
        fit_classifier("logistic", x, np.zeros(len(x), dtype=int))
    with pytest.raises(ValueError, match="linear_svm"):
        fit_classifier("linear_svn", x, np.arange(len(x)) % 2)


@pytest.mark.parametrize("kind", ["logistic", "linear_svm", "knn"])
def test_the_exported_keras_model_predicts_what_the_classifier_predicts(kind, tiny, digits16, tmp_path):
    features = extract_features(tiny, digits16, cache=False)
    classifier = fit_classifier(kind, *features.xy("train"), num_classes=10, validation=features.xy("val"))
    model = classifier_model(tiny, classifier)
    images = np.concatenate([x for x, _ in digits16.dataset("test")])
    expected = classifier.predict_proba(features.xy("test")[0])
    got = model.predict(images, verbose=0)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.99
    if kind != "knn":  # kNN vote shares differ only where distances tie
        np.testing.assert_allclose(got, expected, atol=1e-4)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), got, atol=1e-6)


def _linear_probe_config(tmp_path: Path, **head) -> Path:
    raw = {"data": {"source": "digits", "image_size": [16, 16], "augment": [], "few_shot": 20},
           "model": {"backbone": str(tiny_source(tmp_path / "tiny.keras")), "head": head}}
    path = tmp_path / "s2.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_train_cli_with_an_external_classifier_writes_a_complete_run(tmp_path):
    from keras_transfer.cli.train import main

    run_dir = tmp_path / "run"
    assert main(["--config", str(_linear_probe_config(tmp_path, type="logistic")), "--output-dir", str(run_dir)]) == 0
    for name in ("config.yaml", "labels.txt", "metrics.json", "classifier.json", "model.keras",
                 "plots/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    record = json.loads((run_dir / "classifier.json").read_text())
    # C by cross-validation over train and val pooled (469 images), the classifier fitted on train.
    assert record["type"] == "logistic" and "5-fold cross-validation" in record["selected_on"]
    # With a test split held out, the classifier fits on train and val (both scored by the folds).
    assert "469 images" in record["selected_on"] and record["fitted_on"] == ["train", "val"]
    assert record["train_examples"] == 469 and "val" not in metrics
    assert 0.0 < metrics["cross_validation"]["accuracy"] <= 1.0 and metrics["cross_validation"]["folds"] == 5
    assert metrics["test"]["accuracy"] > 0.5  # 10 classes: chance is 0.1
    # The saved model alone reproduces the reported test accuracy.
    from keras_transfer.cli.evaluate import main as evaluate

    assert evaluate(["--run", str(run_dir), "--json"]) == 0


def test_head_type_mistakes_are_config_errors_naming_the_key(tmp_path):
    from keras_transfer.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="linear_svm"):
        load_config(_linear_probe_config(tmp_path, type="linear_svc"))
    with pytest.raises(ConfigError, match="model.head.units"):
        load_config(_linear_probe_config(tmp_path, type="logistic", units=[64]))
    with pytest.raises(ConfigError, match="avg or max"):
        load_config(_linear_probe_config(tmp_path, type="knn", pooling="flatten"))


@pytest.mark.parametrize("classes", [2, 4])
def test_the_lbfgs_svm_finds_linearsvc_weights(classes):
    from sklearn.svm import LinearSVC

    from keras_transfer.features.svm import SquaredHingeSVC

    x, y = _blobs(n_per_class=30, classes=classes, dim=12)
    x = x + np.random.default_rng(3).normal(scale=4.0, size=x.shape)  # overlapping classes: hinge terms active
    for c in (0.01, 1.0):
        reference = LinearSVC(C=c, tol=1e-8, max_iter=100_000).fit(x, y)
        ours = SquaredHingeSVC(C=c, tol=1e-10).fit(x, y)
        assert ours.coef_.shape == reference.coef_.shape
        np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-4 * np.abs(reference.coef_).max())
        np.testing.assert_allclose(ours.intercept_, reference.intercept_, atol=1e-3)
        assert (ours.predict(x) == reference.predict(x)).all()


def test_the_warm_started_svm_path_chooses_as_well_as_exhaustive_liblinear():
    from sklearn.svm import LinearSVC

    x, y = _blobs(n_per_class=40, classes=3, dim=20)
    noise = np.random.default_rng(4)
    x = x + noise.normal(scale=5.0, size=x.shape)
    xv, yv = _blobs(n_per_class=40, classes=3, dim=20, seed=5)
    xv = xv + noise.normal(scale=5.0, size=xv.shape)
    svm = fit_classifier("linear_svm", x, y, validation=(xv, yv))
    z, zv = svm.standardise(x), svm.standardise(xv)
    exhaustive = [(c, float((LinearSVC(C=c, max_iter=100_000).fit(z, y).predict(zv) == yv).mean()))
                  for c, _ in svm.selection]
    best = max(accuracy for _, accuracy in exhaustive)
    chosen = dict(exhaustive)[svm.chosen["C"]]
    assert chosen >= best - 1 / len(yv)  # the same C, or one as accurate to within one example
    for (c, ours), (_, theirs) in zip(svm.selection, exhaustive):
        assert abs(ours - theirs) <= 2 / len(yv), c
