"""`recipe: auto`, the probe and feature extraction choose by cross-validation: ties go deep, C by log-loss
with a widening grid, what the user names runs as given, and a classifier on the mean of fixed
views predicts the same in the run, `evaluate`, `predict` and every export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from keras_transfer.config import from_dict
from keras_transfer.features import selection
from keras_transfer.features.advisor import resolve_recipe
from keras_transfer.features.probe import ProbeResult, ProbeRow
from tests.support import tiny_config, tiny_source

BLOCKS = ["stem", "block3", "block5", "top"]


def _separable(per_class: int, classes: int, seed: int, informative: dict[str, float]) -> tuple[dict, np.ndarray]:
    """Features [N, 1, 8] per block: class means `informative[block]` apart, unit noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    centres = rng.normal(size=(classes, 8))
    features = {name: (centres[y] * informative.get(name, 0.0) + rng.normal(size=(len(y), 8)))[:, None, :]
                for name in BLOCKS}
    return features, y


def test_blocks_that_all_score_perfectly_on_a_tiny_set_go_to_the_deepest_block_not_the_stem():
    # 12 images, every block separates them: every candidate scores 100% in every fold.
    features, y = _separable(4, 3, seed=0, informative={name: 50.0 for name in BLOCKS})
    chosen = selection.select(features, y, BLOCKS)
    assert all(s.accuracy == 1.0 for s in chosen.scores if s.C is not None)
    assert chosen.layers == ("top",)
    # The probe's own answer follows it, where the old tie-break went to the shallowest block.
    rows = [ProbeRow(name, name, 8, 1.0, 1.0, None, 1.0, 0.0, cv_accuracy=1.0, cv_sem=0.0) for name in BLOCKS]
    assert ProbeResult("net", "data", "logistic", {}, rows).best().layer == "top"


def test_a_block_that_clearly_classifies_better_is_chosen_the_same_whatever_the_seed():
    features, y = _separable(20, 3, seed=10, informative={"stem": 0.2, "block3": 3.0, "block5": 0.3, "top": 0.2})
    picks = []
    for seed in range(4):
        chosen = selection.select(features, y, BLOCKS, seed=seed)
        assert chosen.method.startswith("5-fold cross-validation on 60 labelled images")
        best_single = max((s for s in chosen.scores if len(s.candidate.layers) == 1 and s.C is not None),
                          key=lambda s: s.accuracy)
        assert best_single.candidate.name == "block3"
        picks.append(chosen.layers)
    # block3, or the top blocks with it when their concatenation ties with it (the deeper candidate)
    assert len(set(picks)) == 1 and "block3" in picks[0]


def test_a_shallower_block_ahead_by_less_than_one_standard_error_loses_to_the_deeper_one():
    # block3 and top carry the same weak signal; block3 scores a little higher on these folds.
    features, y = _separable(6, 3, seed=0, informative={"block3": 1.2, "top": 1.0})
    chosen = selection.select(features, y, BLOCKS, concat_top=0)
    scores = {s.candidate.name: s for s in chosen.scores}
    best = max((s for s in chosen.scores if s.C is not None), key=lambda s: s.accuracy)
    assert best.candidate.name == "block3" and best.accuracy > scores["top"].accuracy  # block3 is ahead...
    assert best.accuracy - scores["top"].accuracy <= best.sem  # ...inside the noise...
    assert chosen.layers == ("top",)  # ...so the deeper block wins


def test_the_top_blocks_together_are_a_candidate_and_win_only_by_more_than_the_noise():
    blocks = ["b1", "b2", "b3", "b4"]
    names = [c.name for c in selection.candidates(blocks)]
    assert names == ["b1", "b2", "b3", "b4", "b2+b3+b4"]
    # Each of the top blocks carries the same weak signal with its own noise: together they average
    # the noise away and win clearly.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 40)
    signal = (y * 2.0 - 1.0)[:, None]
    features = {name: rng.normal(size=(80, 1, 4)) for name in blocks}
    features["b3"][:, 0, 0] += 0.9 * signal[:, 0]
    features["b4"][:, 0, 0] += 0.9 * signal[:, 0]
    features["b2"][:, 0, 0] += 0.9 * signal[:, 0]
    chosen = selection.select(features, y, blocks)
    assert chosen.layers == ("b2", "b3", "b4")


def test_a_best_C_at_the_end_of_the_grid_widens_the_grid():
    # Far-apart classes: the less regularised, the lower the log-loss, past the grid's 10.
    features, y = _separable(30, 2, seed=0, informative={"top": 8.0})
    score = selection.choose_C(features["top"], y)
    tried = [row["C"] for row in score.grid]
    assert max(tried) > max(selection.C_GRID)
    assert score.C in tried
    # Two widenings at most, each fitted and judged: the grid ends at 10 x 100 x 100.
    assert max(tried) == max(selection.C_GRID) * 100 ** selection.WIDEN_TIMES


def test_with_a_single_image_of_some_class_the_default_is_the_deepest_block():
    features, y = _separable(3, 3, seed=0, informative={name: 1.0 for name in BLOCKS})
    keep = np.array([0, 1, 2, 3, 4, 5, 6])  # class 2 keeps one image
    chosen = selection.select({k: v[keep] for k, v in features.items()}, y[keep], BLOCKS)
    assert chosen.layers == ("top",) and chosen.C == selection.DEFAULT_C
    assert "too few to cross-validate" in chosen.reasons[0]
    # A C the user (or auto) gave is kept even where nothing can be cross-validated.
    assert selection.choose_C(features["top"][keep], y[keep], grid=(0.05,)).C == 0.05


def _auto_raw(tmp_path, **head) -> dict:
    stages = [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.05}]
    raw = tiny_config(tmp_path, stages, few_shot=5)
    raw["training"]["recipe"] = "auto"
    raw["model"]["head"].update(head)
    return raw


def test_an_explicit_head_type_runs_as_given_without_the_measurement_and_says_so(tmp_path):
    lines = []
    raw = _auto_raw(tmp_path, type="logistic", dropout=0.2)
    config = resolve_recipe(from_dict(raw), log=lines.append)
    assert config.training.recipe == "stages" and config.model.head.type == "logistic"
    assert config.model.head.layers == [] and config.model.head.C is None
    assert not any("measuring" in line for line in lines)
    assert any("you named model.head.type" in line and "without the measurement" in line for line in lines)


def test_stages_named_on_the_command_line_are_not_overruled_by_auto(tmp_path):
    from keras_transfer.cli.train import _named

    assert _named(["training.stages.head.epochs=2", "data.seed=1"]) == ("training.stages",)
    assert _named(["model.cut_at=conv2", "model.head.C=0.1"]) == ("model.cut_at", "model.head.C")
    assert _named(["data.image_size=64"]) == ()
    lines = []
    config = resolve_recipe(from_dict(_auto_raw(tmp_path)), named=_named(["training.stages.head.epochs=1"]),
                            log=lines.append)
    assert config.training.recipe == "stages" and config.model.head.type == "dense"
    assert [s.name for s in config.training.stages] == ["head"]
    assert lines == ["recipe auto: you named training.stages, so the config runs as given, without the measurement"]


def test_a_folder_with_train_and_val_but_no_test_trains_on_every_training_image(tmp_path, capsys):
    from PIL import Image

    from keras_transfer.data import DataConfig, load_data

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for cls in ("a", "b"):
            folder = tmp_path / "photos" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = load_data(DataConfig(source=f"folder:{tmp_path / 'photos'}", image_size=16, augment=()))
    assert {split: sum(c.values()) for split, c in data.counts().items()} == {"train": 16, "val": 6}
    assert "the validation score is the held-out one" in capsys.readouterr().out


def test_a_classifier_on_the_mean_of_views_answers_the_same_in_the_run_evaluate_predict_and_exports(tmp_path, capsys):
    from keras_transfer.deploy import export_run, load_classifier
    from keras_transfer.cli.evaluate import main as evaluate
    from keras_transfer.cli.train import main as train
    from tests.support import digit_images

    raw = {"data": {"source": "digits", "image_size": [16, 16], "augment": [], "few_shot": 10},
           "model": {"backbone": str(tiny_source(tmp_path / "tiny.keras")),
                     "head": {"type": "logistic", "layers": ["conv2", "conv3"], "views": ["full", "flip", "zoom"]}}}
    path = tmp_path / "views.yaml"
    path.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    assert train(["--config", str(path), "--output-dir", str(run_dir)]) == 0
    record = json.loads((run_dir / "classifier.json").read_text())
    assert record["views"] == ["full", "flip", "zoom"] and record["layers"] == ["conv2", "conv3"]
    reported = json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
    capsys.readouterr()
    assert evaluate(["--run", str(run_dir), "--json"]) == 0
    out = capsys.readouterr().out
    # The same model on the same images: at most one float32 near-tie may fall the other way.
    evaluated = json.loads(out[out.index("{"):])
    assert evaluated["accuracy"] == pytest.approx(reported, abs=1.01 / evaluated["examples"])

    written = export_run(run_dir, ["onnx"], log=lambda _: None)  # tf2onnx converts the view layers too
    images = digit_images(8)
    expected = np.stack([load_classifier(run_dir).predict(image) for image in images])
    got = np.stack([load_classifier(written["onnx"]).predict(image) for image in images])
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_a_single_view_other_than_the_whole_image_trains_and_predicts_on_that_view(tmp_path):
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features import classifier_model, extract_features, fit_classifier
    from tests.support import digit_images
    import keras

    backbone = keras.saving.load_model(tiny_source(tmp_path / "tiny.keras"))
    data = load_data(DataConfig(source="digits", image_size=16, augment=(), few_shot=5))
    features = extract_features(backbone, data, views=("flip",), cache=False)
    x, y = features.xy("train", views=True)
    assert features["train"][features.layers[-1]].ndim == 2 and x.shape == features.xy("train")[0].shape
    classifier = fit_classifier("logistic", x, y, num_classes=10, grid=(1.0,), scaling="global")
    model = classifier_model(backbone, classifier, views=("flip",))
    images = digit_images(4)
    mirrored = classifier_model(backbone, classifier).predict(images[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(model.predict(images, verbose=0), mirrored, atol=1e-5)


def test_with_enough_images_per_class_auto_fine_tunes_without_probing_every_block(tmp_path, monkeypatch):
    from keras_transfer.features import advisor

    monkeypatch.setattr(advisor, "LINEAR_PROBE_BELOW", 50)
    monkeypatch.setattr(advisor, "probe_layers", lambda *a, **k: pytest.fail("probed every block"))
    stages = [{"name": "head", "train": "head", "epochs": 1}, {"name": "top", "train": "top:1", "epochs": 1},
              {"name": "full", "train": "all", "epochs": 1}]
    raw = tiny_config(tmp_path, stages)
    raw["training"]["recipe"] = "auto"
    lines = []
    config = advisor.resolve_recipe(from_dict(raw), log=lines.append)
    assert [s.name for s in config.training.stages] == ["head", "top", "full"]
    assert "the probe of every block is skipped" in lines[0] and "probe gap" not in lines[1]
