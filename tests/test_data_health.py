"""Data health: duplicates found and kept in one split, suspect labels, outliers, balance: auto,
balanced accuracy in the metrics, data.exclude, and a check that never touches the data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_transfer.data import DataConfig, load_data
from keras_transfer.data.health import IMBALANCE_RATIO, health_lines
from keras_transfer.data.split import stratified_split
from keras_transfer.features.health import out_of_fold_probabilities, rank_outliers, rank_suspects
from keras_transfer.metrics import classification_metrics, score_line

from tests.support import tiny_source


def _folder(root: Path, classes=("cat", "dog", "owl"), per_class=8, size=(12, 12)) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((*size, 3), 60 * c, dtype=np.uint8) + rng.integers(0, 40, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _config(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), image_size=(12, 12), augment=(), cache="memory", **kw)


def _split_of_each_file(bundle) -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    for name, split in bundle.splits.items():
        for digest in split.digests:
            where.setdefault(digest, set()).add(name)
    return where


def test_exact_duplicates_are_found_within_a_class_and_across_classes(tmp_path):
    root = _folder(tmp_path / "d")
    shutil.copy(root / "cat" / "0.png", root / "cat" / "copy.png")
    shutil.copy(root / "dog" / "1.png", root / "owl" / "dog_copy.png")
    bundle = load_data(_config(root, val_split=0.0, test_split=0.0))
    groups = {g["kind"]: g for g in bundle.health["duplicates"]}
    assert len(bundle.health["duplicates"]) == 2
    assert sorted(Path(f).name for f in groups["within-class"]["files"]) == ["0.png", "copy.png"]
    assert sorted(groups["cross-class"]["labels"]) == ["dog", "owl"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_carved_split_never_separates_copies_of_one_image(tmp_path, seed):
    root = _folder(tmp_path / "d", per_class=6)
    for name in ("cat", "dog", "owl"):
        for i in range(3):  # three images of each class have two extra copies
            for k in range(2):
                shutil.copy(root / name / f"{i}.png", root / name / f"{i}_copy{k}.png")
    shutil.copy(root / "cat" / "5.png", root / "dog" / "cat5.png")  # and one across classes
    bundle = load_data(_config(root, val_split=0.25, test_split=0.25, seed=seed))
    assert {len(v) for v in _split_of_each_file(bundle).values()} == {1}
    assert {"train", "val", "test"} == set(bundle.splits) and all(len(s) for s in bundle.splits.values())


def test_grouped_split_is_the_old_split_when_nothing_is_duplicated():
    labels = np.repeat(np.arange(3), 20)
    plain = stratified_split(labels, 0.3, seed=4)
    grouped = stratified_split(labels, 0.3, seed=4, groups=np.arange(len(labels)))
    assert all((a == b).all() for a, b in zip(plain, grouped))


def test_a_given_test_folder_sharing_images_with_train_is_warned_in_the_log_and_the_report(tmp_path):
    from keras_transfer.interpret.report_html import render_report

    _folder(tmp_path / "d" / "train")
    _folder(tmp_path / "d" / "test", per_class=2)  # the same seed: test/cat/{0,1}.png are in train too
    bundle = load_data(_config(tmp_path / "d", val_split=0.0))
    lines = health_lines(bundle.health)
    assert any(line.startswith("warning: 2 image(s) appear in more than one split (test/train)") for line in lines)
    run = tmp_path / "run"
    run.mkdir()
    import json

    (run / "data_health.json").write_text(json.dumps(bundle.health))
    assert "2 image(s) appear in more than one split" in render_report(run)


def _clusters(per_class=40, classes=3, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(classes, dims) * 10.0
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(0, 1.0, (len(labels), dims)), labels


def test_flipped_labels_rank_at_the_top_of_the_suspects_on_separable_features():
    x, labels = _clusters()
    noisy = labels.copy()
    flipped = [3, 50, 100]
    noisy[flipped] = (labels[flipped] + 1) % 3
    suspects = rank_suspects(noisy, out_of_fold_probabilities(x, noisy, C=1.0))  # C=0.01 is for thousands
    assert {s["index"] for s in suspects[:3]} == set(flipped)
    assert all(s["suggested"] == labels[s["index"]] for s in suspects[:3])


def test_a_blank_frame_is_an_outlier_and_the_only_one():
    x, labels = _clusters()
    blank = np.zeros((1, x.shape[1]))  # a blank frame's pooled activations: nothing fires
    outliers = rank_outliers(np.concatenate([x, blank]), np.concatenate([labels, [0]]))
    assert [o["index"] for o in outliers] == [len(x)] and outliers[0]["quiet_z"] > 3.5
    far = np.concatenate([x, [[0, 0, 0, 10, 10, 10, 10, 10]]])  # as strong as the rest, unlike any class
    outliers = rank_outliers(far, np.concatenate([labels, [1]]))
    assert [o["index"] for o in outliers] == [len(x)] and outliers[0]["reason"] == "far from every class"


def _imbalanced(tmp_path, larger: int, smaller: int, **kw):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (larger + smaller, 8, 8, 3), dtype=np.uint8)
    y = np.array([0] * larger + [1] * smaller)
    return load_data(DataConfig(image_size=(8, 8), augment=(), val_split=0.0, test_split=0.0, **kw), x=x, y=y)


def test_balance_auto_weights_the_loss_only_above_one_and_a_half_times():
    assert IMBALANCE_RATIO == 1.5
    even = _imbalanced(None, 30, 20)
    assert DataConfig().balance == "auto" and even.balance == "none" and even.class_weight is None
    uneven = _imbalanced(None, 31, 20)
    assert uneven.balance == "class_weight" and uneven.class_weight[1] > uneven.class_weight[0]
    assert uneven.report()["balance"] == "class_weight"


def test_metrics_give_balanced_accuracy_and_per_class_recall_and_name_an_imbalanced_split():
    labels = np.array([0] * 90 + [1] * 10)
    outputs = np.tile([[0.9, 0.1]], (100, 1))  # always class 0: 90% accurate, half the classes found
    metrics = classification_metrics(outputs, labels, ["big", "small"], "multiclass")
    assert metrics["accuracy"] == pytest.approx(0.9) and metrics["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["per_class_recall"] == {"big": 1.0, "small": 0.0}
    assert metrics["imbalanced"] and "balanced accuracy" in metrics["note"]
    line = score_line("test", metrics)
    assert "balanced accuracy 0.5000" in line and "small 0.00" in line and "imbalanced split (9.00x)" in line
    even = classification_metrics(np.tile([[0.9, 0.1]], (20, 1)), np.array([0] * 10 + [1] * 10), ["a", "b"],
                                  "multiclass")
    assert not even["imbalanced"] and "note" not in even


def test_data_exclude_leaves_out_listed_files_and_warns_once_about_unknown_ones(tmp_path, capsys):
    root = _folder(tmp_path / "d")
    listing = tmp_path / "exclude.txt"
    listing.write_text(f"path\ncat/0.png\n{root / 'dog' / '1.png'}\n# a comment\nnot/there.png\nowl/99.png\n")
    bundle = load_data(_config(root, val_split=0.0, test_split=0.0, exclude=str(listing)))
    kept = {Path(p).relative_to(root).as_posix() for p in bundle.splits["train"].paths}
    assert len(kept) == 22 and "cat/0.png" not in kept and "dog/1.png" not in kept
    out = capsys.readouterr().out
    assert out.count("data.exclude: 2 of 4 listed path(s) are not in the data") == 1
    assert sorted(Path(p).name for p in bundle.health["excluded"]) == ["0.png", "1.png"]
    with pytest.raises(ValueError, match="data.exclude: .*nowhere.txt does not exist"):
        load_data(_config(root, exclude=str(tmp_path / "nowhere.txt")))


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_the_check_never_modifies_the_data_folder_and_writes_its_lists(tmp_path):
    from keras_transfer.features.data_check import check_data

    root = _folder(tmp_path / "d", per_class=8, size=(16, 16))
    shutil.copy(root / "cat" / "0.png", root / "dog" / "cat0.png")
    Image.fromarray(np.full((16, 16, 3), 255, dtype=np.uint8)).save(root / "owl" / "blank.png")
    before = _listing(root)
    result = check_data(str(root), tmp_path / "out", backbone=str(tiny_source(tmp_path / "tiny.keras")),
                        image_size=16, cache_dir=tmp_path / "cache", log=lambda _: None)
    assert _listing(root) == before
    report = result.report
    assert [sorted(g["files"]) for g in report["exact_duplicates"]] == [["cat/0.png", "dog/cat0.png"]]
    assert report["examples"] == 26 and report["balance"]["counts"]["owl"] == 9
    for name in ("data_health.json", "duplicates.csv", "near_duplicates.csv", "suspects.csv", "outliers.csv"):
        assert (tmp_path / "out" / name).is_file()
    assert (tmp_path / "out" / "duplicates.csv").read_text().splitlines()[1].startswith("cat/0.png,cat,train,0")
    summary = "\n".join(result.summary())
    assert "exact duplicates: 1 group(s) (0 within-class, 1 cross-class, 0 cross-split)" in summary
    with pytest.raises(ValueError, match="lies inside the data folder"):
        check_data(str(root), root / "out")
    assert _listing(root) == before


def test_the_check_of_a_bad_source_is_one_line_naming_it(capsys):
    from keras_transfer.cli.check import main
    from keras_transfer.cli.common import run_cli

    assert run_cli(lambda: main(["/no/such/flowers"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/no/such/flowers" in err[0] and err[0].startswith("error: ")


def test_balanced_class_weight_raises_the_small_class_recall_of_solution_ii_logistic_regression():
    from keras_transfer.features.classifiers import fit_classifier

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(1.5, 1, (20, 2))])
    y = np.array([0] * 200 + [1] * 20)
    recall = {}
    for weight in (None, "balanced"):
        model = fit_classifier("logistic", x, y, grid=(1.0,), class_weight=weight)
        recall[weight] = float((model.predict(x[y == 1]) == 1).mean())
    assert recall["balanced"] >= recall[None] + 0.2  # 0.65 -> 0.90 with this seed


def test_near_duplicates_pair_a_slightly_changed_copy_and_nothing_else():
    from keras_transfer.features.health import near_duplicate_pairs

    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(0, 1, (50, 64)))  # pooled activations are non-negative
    x[7] = x[3] * 1.1 + rng.normal(0, 0.02, 64)  # a brighter, re-encoded copy of image 3
    pairs = near_duplicate_pairs(x, threshold=0.9)
    assert [(i, j) for i, j, _ in pairs] == [(3, 7)] and pairs[0][2] > 0.99
