"""`suggest`: which unlabelled images to label next (uncertainty, then diversity), deterministic for a seed."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from keras_transfer.features.suggest import k_center_greedy, suggest_indices, uncertainty_scores


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tests.support import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("suggest")).run_dir


def test_margin_and_entropy_rank_the_unsure_image_above_the_sure_one():
    p = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1]])
    for kind in ("margin", "entropy"):
        scores = uncertainty_scores(p, kind)
        assert scores.argmax() == 1 and scores.argmin() == 0
    with pytest.raises(ValueError, match="did you mean 'entropy'"):
        uncertainty_scores(p, "entropie")


def test_k_center_greedy_covers_clusters_before_repeating_one():
    cluster = np.random.default_rng(0).normal(size=(30, 2)) * 0.01
    points = np.concatenate([cluster, cluster + [10, 0], cluster + [0, 10]])
    picks = k_center_greedy(points, 3)
    assert sorted(set(picks // 30)) == [0, 1, 2]


def test_suggestions_are_uncertain_diverse_and_the_same_for_a_seed():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 8))
    probabilities = rng.dirichlet(np.ones(4) * 0.3, size=200)
    probabilities[:100] = [0.97, 0.01, 0.01, 0.01]  # half the pool is sure: never suggested first
    probabilities[150:160] = [0.25, 0.25, 0.25, 0.25]  # ties, ordered by the seed
    picks = suggest_indices(features, probabilities, 10, seed=3)
    assert len(set(picks)) == 10 and (picks >= 100).all()
    assert np.array_equal(picks, suggest_indices(features, probabilities, 10, seed=3))
    duplicates = np.repeat(features[:5], 20, axis=0)  # 5 distinct points, each 20 times, all equally unsure
    flat = np.full((100, 4), 0.25)
    assert len({tuple(duplicates[i]) for i in suggest_indices(duplicates, flat, 5)}) == 5


def test_the_suggest_command_writes_a_csv_and_a_contact_sheet_the_same_for_a_seed(tmp_path, trained_run, capsys):
    from keras_transfer.cli.common import run_cli
    from keras_transfer.cli.suggest import main
    from tests.support import digit_images

    pool = tmp_path / "pool"
    pool.mkdir()
    for i, image in enumerate(digit_images(24)):
        Image.fromarray(image).save(pool / f"{i:02d}.png")
    rows = []
    for out in ("a", "b"):
        status = run_cli(lambda: main(["--run", str(trained_run), "--pool", str(pool), "--k", "6", "--seed", "2",
                                       "--output-dir", str(tmp_path / out)]))
        assert status == 0
        with open(tmp_path / out / "suggestions.csv") as handle:
            rows.append(list(csv.DictReader(handle)))
        assert (tmp_path / out / "suggestions.png").stat().st_size > 1000
    assert rows[0] == rows[1] and len(rows[0]) == 6
    assert len({r["path"] for r in rows[0]}) == 6 and all(r["path"].startswith(str(pool)) for r in rows[0])
    status = run_cli(lambda: main(["--run", str(tmp_path / "nope"), "--pool", str(pool)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "nope" in err[0]


def test_suggest_passes_the_pool_size_to_the_frozen_runtime(tmp_path, trained_run):
    from keras_transfer.features.suggest import suggest_for_run
    from tests.support import digit_images

    pool = tmp_path / "pool"
    pool.mkdir()
    for i, image in enumerate(digit_images(12)):
        Image.fromarray(image).save(pool / f"{i:02d}.png")
    said: list[str] = []
    suggest_for_run(trained_run, str(pool), k=3, output_dir=tmp_path / "out", log=said.append)
    assert any(line.startswith("frozen pass of") and "12 images at" in line for line in said), said


def test_typical_picks_come_from_clusters_no_label_covers_and_are_the_same_for_a_seed():
    from keras_transfer.features.suggest import choose_method, typical_indices

    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10
    pool = np.concatenate([c + rng.normal(size=(40, 8)) * 0.3 for c in centres])
    labelled = centres[:2] + 0.01  # clusters 0 and 1 already have a label
    picks = typical_indices(pool, 2, labelled_features=labelled, seed=1)
    assert sorted(picks // 40) == [2, 3]
    assert np.array_equal(picks, typical_indices(pool, 2, labelled_features=labelled, seed=1))
    assert choose_method("auto", 5) == "typical" and choose_method("auto", 50) == "uncertain"
    with pytest.raises(ValueError, match="did you mean 'typical'"):
        choose_method("typicall", 5)
