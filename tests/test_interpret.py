"""Specifications of keras_transfer.interpret: Grad-CAM, receptive fields, mistakes, TTA, report.html."""

from __future__ import annotations

import csv
import re

import keras
import numpy as np
import pytest

from keras_transfer.backbones import FAMILIES, build_backbone
from keras_transfer.heads import build_classifier
from keras_transfer.interpret import (
    GradCAM,
    Predictions,
    augmented_views,
    collect_predictions,
    default_views,
    feature_layer,
    find_mistakes,
    receptive_fields,
    render_report,
    top_patches,
    tta_predict,
    write_error_analysis,
)

SIZE = 32


def _corner_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise images; class 1 has a bright 8x8 square in the top-right corner, class 0 has none.

    Top-right, not top-left: a map with rows and columns swapped would point bottom-left.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 90, (n, SIZE, SIZE, 3)).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 1, 1:9, SIZE - 9:SIZE - 1, :] = 255.0
    return x, y


def _tiny_cnn() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head_predictions")(x)
    return keras.Model(inputs, outputs, name="corner_cnn")


@pytest.fixture(scope="module")
def corner_model():
    keras.utils.set_random_seed(0)
    model = _tiny_cnn()
    x, y = _corner_images(256)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    test_x, test_y = _corner_images(32, seed=1)
    assert model.evaluate(test_x, test_y, verbose=0)[1] > 0.95, "the corner task must be learnt for the map to mean anything"
    return model


def test_gradcam_puts_the_evidence_in_the_corner_where_the_patch_is(corner_model):
    x, y = _corner_images(16, seed=2)
    positives = x[y == 1]
    maps = GradCAM(corner_model)(positives, classes=np.ones(len(positives), int))
    assert maps.shape == (len(positives), SIZE, SIZE)
    half = SIZE // 2
    corner = maps[:, :half, half:].mean(axis=(1, 2))
    elsewhere = np.stack([maps[:, :half, :half], maps[:, half:, :half], maps[:, half:, half:]]).mean(axis=(2, 3))
    assert (corner > 2 * elsewhere.max(axis=0)).all(), f"corner {corner}, other quadrants {elsewhere.max(axis=0)}"
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    assert all(r < half and c >= half for r, c in peaks), peaks


def test_gradcam_of_a_binary_sigmoid_head_also_points_at_the_corner():
    keras.utils.set_random_seed(0)
    cnn = _tiny_cnn()
    model = keras.Model(cnn.input, keras.layers.Dense(1, activation="sigmoid", name="head_predictions")(
        cnn.get_layer("head_pool").output), name="corner_binary")
    x, y = _corner_images(256)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    test_x, test_y = _corner_images(16, seed=2)
    positives = test_x[test_y == 1]
    maps = GradCAM(model)(positives)  # the predicted class: 1, the corner
    half = SIZE // 2
    assert (maps[:, :half, half:].mean(axis=(1, 2)) > 2 * maps[:, half:, :half].mean(axis=(1, 2))).all()


def test_gradcam_uses_the_last_convolutional_block_or_the_one_named(corner_model):
    assert feature_layer(corner_model).name == "conv2"
    assert feature_layer(corner_model, "conv1").name == "pool1", "a block's output is its last layer"
    assert feature_layer(corner_model, "pool1").name == "pool1", "a layer may be named too"
    with pytest.raises(ValueError, match=r"'conv2'"):
        feature_layer(corner_model, "conv3")


# One member of every architecture the registry builds (the larger variants share its code); by
# default one of each way a network ends its feature maps (plain conv/pool, residual add,
# concatenated branches, NASNet cells, LayerNorm stages, our own Lite0), the rest under `-m slow`.
# Grad-CAM was run on all 45 registered families once.
_GRADCAM_DEFAULT = {"vgg16", "resnet50", "inception_v3", "nasnet_mobile", "mobilenet_v3_small", "convnext_tiny",
                    "efficientnet_lite0"}
ONE_PER_ARCHITECTURE = [pytest.param(name, marks=[] if name in _GRADCAM_DEFAULT else [pytest.mark.slow])
                        for name in ("vgg16", "resnet50", "resnet50_v2", "inception_v3", "inception_resnet_v2",
                                     "xception", "mobilenet", "mobilenet_v2", "mobilenet_v3_small", "densenet121",
                                     "nasnet_mobile", "efficientnet_b0", "efficientnet_v2_b0", "convnext_tiny",
                                     "efficientnet_lite0")]


@pytest.mark.parametrize("name", ONE_PER_ARCHITECTURE)
def test_gradcam_works_for_every_registered_family(name):
    family = FAMILIES[name]
    size = family.min_size
    backbone = build_backbone(name, weights=None, input_shape=(size, size, 3))
    model = build_classifier(backbone, 3)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    maps = GradCAM(model)(images)
    assert maps.shape == (2, size, size)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6


def test_receptive_field_of_vgg16_matches_its_known_sizes():
    fields = receptive_fields(build_backbone("vgg16", weights=None, input_shape=(64, 64, 3)))
    # VGG16's textbook receptive fields: conv1_2 5, pool1 6, pool2 16, pool3 44, pool4 100, pool5 212.
    expected = {"block1_conv2": 5, "block1_pool": 6, "block2_pool": 16, "block3_pool": 44, "block4_pool": 100,
                "block5_pool": 212}
    assert {name: fields[name].size[0] for name in expected} == expected
    assert fields["block5_pool"].jump == (32, 32)


def test_top_patches_grow_from_shallow_to_deep_blocks(corner_model):
    import tensorflow as tf

    x, y = _corner_images(24, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    patches = top_patches(corner_model, dataset, channels=2, per_channel=2)
    assert list(patches) == ["conv1", "conv2"]
    sizes = {name: max(p.shape[0] for channel in rows for p in channel) for name, rows in patches.items()}
    assert sizes == {"conv1": 4, "conv2": 8}, "block conv1 ends in a 2x2 pool (4x4 pixels); conv2 sees 8x8"
    assert all(len(channel) == 2 for rows in patches.values() for channel in rows)


def _predictions() -> Predictions:
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.99, 0.01], [0.4, 0.6]])
    images = {i: np.full((4, 4, 3), i * 40, np.uint8) for i in range(4)}
    return Predictions(p, np.array([0, 0, 1, 1]), images, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])


def test_mistakes_are_ranked_by_loss_worst_first():
    mistakes = find_mistakes(_predictions(), ["cat", "dog"])
    assert [m.path for m in mistakes] == ["c.jpg", "b.jpg"]
    assert mistakes[0].true == "dog" and mistakes[0].predicted == "cat"
    assert mistakes[0].loss == pytest.approx(-np.log(0.01))


def test_error_analysis_writes_every_mistake_to_csv_and_a_grid(tmp_path):
    summary = write_error_analysis(_predictions(), ["cat", "dog"], tmp_path, split="test")
    rows = list(csv.DictReader((tmp_path / "mistakes.csv").open()))
    assert [r["file"] for r in rows] == ["c.jpg", "b.jpg"]
    assert rows[0]["predicted"] == "cat" and float(rows[0]["probability"]) == pytest.approx(0.99)
    assert (tmp_path / "plots" / "misclassified.png").stat().st_size > 1000
    assert summary == {"split": "test", "examples": 4, "mistakes": 2}


def test_collect_predictions_keeps_only_the_worst_mistakes_pixels():
    import tensorflow as tf

    class Fixed(keras.Model):
        def call(self, x):
            return tf.stack([x[:, 0, 0, 0] / 255.0, 1 - x[:, 0, 0, 0] / 255.0], axis=1)

    x = np.repeat(np.linspace(0, 255, 10, dtype=np.float32)[:, None, None, None], 2, axis=1).repeat(2, 2).repeat(3, 3)
    y = np.zeros(10, int)
    predictions = collect_predictions(Fixed(), tf.data.Dataset.from_tensor_slices((x, y)).batch(3), keep=2)
    assert predictions.probabilities.shape == (10, 2)
    wrong = [i for i in predictions.images if predictions.predicted[i] != 0]
    assert sorted(wrong) == [0, 1], "the two lowest p(true) mistakes are kept"
    assert len(predictions.images) == 4


def test_tta_views_are_the_original_its_mirror_and_two_crops():
    images = np.zeros((1, 10, 10, 3), np.float32)
    images[0, :, :5] = 255
    views = augmented_views(images, ("flip", "crop"))
    assert len(views) == 4
    np.testing.assert_array_equal(np.asarray(views[1])[0, :, 5:], 255)
    assert all(tuple(v.shape) == (1, 10, 10, 3) for v in views)
    assert default_views({"rotation": 0.05}) == ("crop",), "digits are never mirrored"
    assert default_views(["flip", "zoom"]) == ("flip", "crop")


def test_tta_averages_probabilities_over_the_views(corner_model):
    x, _ = _corner_images(6, seed=4)
    plain = np.asarray(corner_model(x))
    averaged = tta_predict(corner_model, x, ("flip",), batch_size=4)
    mirrored = np.asarray(corner_model(x[:, :, ::-1]))
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-5)


def test_report_html_embeds_its_images_and_names_no_external_url(tmp_path):
    write_error_analysis(_predictions(), ["cat", "dog"], tmp_path, split="test")
    (tmp_path / "metrics.json").write_text('{"test": {"examples": 4, "accuracy": 0.5, "per_class": '
                                           '{"cat": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}}}}')
    (tmp_path / "config.yaml").write_text("data: {source: digits}\n")
    page = render_report(tmp_path)
    assert "data:image/png;base64," in page and "c.jpg" in page and "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "F1" in page and "source: digits" in page


# ---- a whole run, and the commands on it ------------------------------------------------------

def _tiny_source(path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    keras.Model(inputs, x, name="tiny").save(path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished two-epoch run on digits at 16x16 with a tiny source CNN, and its config file."""
    import yaml

    from keras_transfer.config import from_dict
    from keras_transfer.runs import fit

    folder = tmp_path_factory.mktemp("tiny_run")
    raw = {"data": {"source": "digits", "image_size": [16, 16], "batch_size": 64, "augment": []},
           "model": {"backbone": str(_tiny_source(folder / "tiny.keras")), "head": {"dropout": 0.0}},
           "training": {"stages": [{"name": "all", "train": "all", "epochs": 2, "learning_rate": 0.01}]}}
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    fit(from_dict(raw), folder / "run", log=lambda line: None)
    return folder


def test_every_run_writes_its_mistakes_gradcam_and_report(tiny_run):
    run_dir = tiny_run / "run"
    for name in ("mistakes.csv", "plots/misclassified.png", "plots/gradcam.png", "report.html"):
        assert (run_dir / name).is_file(), name
    metrics = __import__("json").loads((run_dir / "metrics.json").read_text())["test"]
    rows = list(csv.DictReader((run_dir / "mistakes.csv").open()))
    assert len(rows) == round((1 - metrics["accuracy"]) * metrics["examples"])
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4, "curves, confusion matrix, mistakes and Grad-CAM embedded"


def test_evaluate_prints_f1_and_writes_mistakes_with_tta(tiny_run, capsys):
    from keras_transfer.cli.evaluate import main as evaluate

    run_dir = tiny_run / "run"
    assert evaluate(["--run", str(run_dir), "--split", "val", "--tta"]) == 0
    out = capsys.readouterr().out
    assert "(val, " in out and "TTA over original + crop" in out and "F1" in out
    assert (run_dir / "evaluation" / "val-tta" / "mistakes.csv").is_file()


def _digit_folder(root, per_class=3):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(10):
        (root / str(label)).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:per_class]):
            Image.fromarray((image * 16).astype(np.uint8)).resize((16, 16)).save(root / str(label) / f"{i}.png")
    return root


def test_evaluate_on_other_data_refuses_a_split_it_does_not_have(tiny_run, tmp_path, capsys):
    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.evaluate import main as evaluate

    folder = _digit_folder(tmp_path / "new")
    args = ["--run", str(tiny_run / "run"), "--data", f"folder:{folder}"]
    assert run_cli(lambda: evaluate([*args, "--split", "test"])) == 2
    assert "has no 'test' split (it has: train); omit --split" in capsys.readouterr().err
    assert evaluate([*args, "--out", str(tmp_path / "eval")]) == 0
    assert "(train, 30 images)" in capsys.readouterr().out
    files = [row["file"] for row in csv.DictReader((tmp_path / "eval" / "mistakes.csv").open())]
    assert all(f.startswith(str(folder)) for f in files)


def test_explain_writes_overlays_for_the_users_images(tiny_run, tmp_path, capsys):
    from keras_transfer.cli.explain import main as explain

    folder = _digit_folder(tmp_path / "imgs", per_class=1)
    out = tmp_path / "cam.png"
    images = [str(folder / "3" / "0.png"), str(folder / "7" / "0.png")]
    assert explain(["--model", str(tiny_run / "run"), *images, "--out", str(out), "--block", "conv1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("; map for ") == 2 and out.stat().st_size > 1000


def test_visualize_draws_one_row_per_block(tiny_run, tmp_path, capsys):
    from keras_transfer.cli.visualize import main as visualize

    out = tmp_path / "patches.png"
    assert visualize(["--config", str(tiny_run / "config.yaml"), "--images", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conv1: receptive field 3x3 px, stride 1" in printed
    assert "conv2: receptive field 5x5 px, stride 2" in printed
    assert out.stat().st_size > 1000


def test_a_solution_two_knn_run_gets_its_report_but_no_gradcam(tmp_path, capsys):
    import yaml

    from keras_transfer.cli.train import main as train

    raw = {"data": {"source": "digits", "image_size": [16, 16], "augment": [], "few_shot": 20},
           "model": {"backbone": str(_tiny_source(tmp_path / "tiny.keras")), "head": {"type": "knn"}}}
    (tmp_path / "knn.yaml").write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    assert train(["--config", str(tmp_path / "knn.yaml"), "--output-dir", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "no Grad-CAM plot:" in printed and "(a kNN head?)" in printed
    assert (run_dir / "report.html").is_file() and (run_dir / "mistakes.csv").is_file()
    assert not (run_dir / "plots" / "gradcam.png").exists()


def test_explain_names_a_missing_model_or_a_savedmodel_without_layers_in_one_line(tmp_path, capsys):
    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.explain import main as explain

    assert run_cli(lambda: explain(["--model", str(tmp_path / "nowhere"), "x.png"])) == 2
    assert f"--model {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    (tmp_path / "saved_model").mkdir()
    assert run_cli(lambda: explain(["--model", str(tmp_path / "saved_model"), "x.png"])) == 2
    assert "holds no .keras file" in capsys.readouterr().err


def test_visualize_of_a_run_lands_in_its_report(tiny_run, capsys):
    from keras_transfer.cli.visualize import main as visualize

    run_dir = tiny_run / "run"
    assert visualize(["--run", str(run_dir), "--images", "32"]) == 0
    assert (run_dir / "plots" / "block_patches.png").is_file()
    assert "What each block sees" in (run_dir / "report.html").read_text()
