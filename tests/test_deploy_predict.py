"""`predict` on what users have: files, folders (recursively, images only) and globs, with a run
directory as the model, `--top-k` and `--json`, and per-file errors that never stop the rest."""

from __future__ import annotations

import json
import shutil

import pytest

from keras_transfer.cli.common import run_cli
from keras_transfer.deploy import export_run
from keras_transfer.cli.predict import main
from tests.support import DIGITS, png_bomb, save_digits, train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    result = train_tiny_run(tmp_path_factory.mktemp("predict"))
    export_run(result.run_dir, ["saved_model"], log=lambda _: None, model=result.model)
    return result.run_dir


def _predict(capsys, *argv):
    status = run_cli(lambda: main([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return status, out, err


def test_a_folder_is_searched_recursively_for_images_only(run_dir, tmp_path, capsys):
    save_digits(tmp_path / "photos", n=2)
    save_digits(tmp_path / "photos" / "more", n=1, fmt="jpg")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    status, out, err = _predict(capsys, "--model", run_dir, tmp_path / "photos")
    assert status == 0, err
    names = sorted(line.split(": ")[0].split("/photos/")[1] for line in out.splitlines())
    assert names == ["digit0.png", "digit1.png", "more/digit0.jpg"]


def test_json_prints_one_object_per_image_with_top_k_and_errors_in_line(run_dir, tmp_path, capsys):
    save_digits(tmp_path, n=3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    status, out, err = _predict(capsys, "--model", run_dir, "--json", "--top-k", "2", tmp_path / "*.png")
    assert status == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4
    answered = [row for row in rows if "error" not in row]
    assert len(answered) == 3
    for row in answered:
        assert row["label"] in DIGITS and len(row["top_k"]) == 2
        assert row["top_k"][0]["probability"] >= row["top_k"][1]["probability"]
    (failed,) = [row for row in rows if "error" in row]
    assert failed["path"].endswith("broken.png") and "broken.png" in err and "Traceback" not in err


def test_a_decompression_bomb_is_skipped_with_its_reason_and_the_rest_are_predicted(run_dir, tmp_path, capsys):
    files = save_digits(tmp_path, n=2)
    bomb = png_bomb(tmp_path / "bomb.png")  # ~50 KB that decodes to 20000x20000
    status, out, err = _predict(capsys, "--model", run_dir, files[0], bomb, files[1])
    assert status == 1
    assert len(out.splitlines()) == 2
    assert "bomb.png: image too large" in err and "decompression bomb" in err and "Traceback" not in err


def test_a_run_directory_without_an_export_uses_its_model_keras(run_dir, tmp_path, capsys):
    plain = tmp_path / "run"
    shutil.copytree(run_dir, plain, ignore=shutil.ignore_patterns("export"))
    image = save_digits(tmp_path / "images", n=1)[0]
    status, out, err = _predict(capsys, "--model", plain, image)
    assert status == 0, err
    assert out.split(": ")[1].split(" ")[0] in DIGITS


def test_a_folder_without_a_model_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    image = save_digits(tmp_path / "images", n=1)[0]
    status, _, err = _predict(capsys, "--model", tmp_path / "empty", image)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and "holds no model" in err


def test_tta_averages_the_views_of_any_classifier():
    from pathlib import Path

    import numpy as np

    from keras_transfer.deploy import Classifier, with_tta

    def left_heavy(pixels):  # probability of "left" is the share of brightness in the left half
        half = pixels.shape[1] // 2
        left, right = float(pixels[:, :half].sum()), float(pixels[:, half:].sum())
        return np.array([left, right]) / (left + right)

    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :10] = 200
    image[:, 10:] = 50
    plain = Classifier(left_heavy, ["left", "right"], Path("model.keras"))
    assert plain.predict(image)[0] == pytest.approx(0.8)
    # The mirror swaps the halves, so mirror + original average to a coin toss; crops do not.
    flipped = with_tta(plain, "flip").predict(image)
    assert flipped[0] == pytest.approx(0.5, abs=0.01)
    assert with_tta(plain, "crop").predict(image)[0] > 0.7
    with pytest.raises(ValueError, match="unknown TTA view 'flop' in --tta; did you mean 'flip'"):
        with_tta(plain, "flop")


def test_predict_with_tta_labels_every_image_and_refuses_an_unknown_view(run_dir, tmp_path, capsys):
    files = save_digits(tmp_path, n=2)
    status, out, err = _predict(capsys, "--model", run_dir, "--tta", "--top-k", "10", "--json", *files)
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2
    assert all(sum(entry["probability"] for entry in row["top_k"]) == pytest.approx(1, abs=1e-3) for row in rows)
    status, _, err = _predict(capsys, "--model", run_dir, "--tta", "sideways", *files)
    assert status == 2 and err.count("\n") == 1 and "TTA view" in err
