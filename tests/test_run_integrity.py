"""Runs that cannot be corrupted: a resumed run trains on the split it started with or is refused
in one line touching nothing; labels.txt round-trips any folder name and is checked against the
model's outputs; a loss that turns non-finite stops the run and keeps the last good checkpoint;
the data cache is private and its contents verified."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml

from keras_transfer.config import from_dict, load_config
from keras_transfer.files import read_labels, write_labels
from keras_transfer.training import run
from tests.support import save_digits, tiny_source

CLASSES = ("a", "b", "c")


def _stages():
    return [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.01},
            {"name": "tune", "train": "all", "epochs": 1, "learning_rate": 0.001}]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A folder of 3 x 6 photos and a run on it killed after its first stage (a checkpoint, no model)."""
    root = tmp_path_factory.mktemp("interrupted")
    for name in CLASSES:
        save_digits(root / "photos" / name, n=6, size=(16, 16))
    config = {"data": {"source": str(root / "photos"), "image_size": 16, "batch_size": 8, "augment": [],
                       "val_split": 0.2, "test_split": 0.2},
              "model": {"backbone": str(tiny_source(root / "tiny.keras")), "head": {"dropout": 0.0}},
              "training": {"stages": _stages()}}

    def killed(index, stage, model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(from_dict(config), root / "run", log=lambda _: None, on_stage_end=killed)
    return root


@pytest.fixture
def workspace(interrupted, tmp_path):
    """A private copy of the photos and the interrupted run, its config.yaml pointing at the copy."""
    shutil.copytree(interrupted, tmp_path, dirs_exist_ok=True)
    config = tmp_path / "run" / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["data"]["source"] = f"folder:{tmp_path / 'photos'}"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp_path


def _resume(folder: Path, capsys) -> tuple[int, list[str], str]:
    from keras_transfer import train

    status = train.run_cli(lambda: train.main(["--output-dir", str(folder / "run"), "--resume"]))
    out = capsys.readouterr()
    return status, out.err.strip().splitlines(), out.out


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` (the lock file aside) with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _recorded(folder: Path, split: str) -> list[str]:
    record = json.loads((folder / "run" / "split.json").read_text())
    return sorted(os.path.join(folder / "photos", p) for p in record["splits"][split]["paths"])


def test_photos_added_between_a_kill_and_resume_never_move_images_between_splits(workspace, capsys):
    test_before, train_before = _recorded(workspace, "test"), _recorded(workspace, "train")
    for name in CLASSES:  # six more per class: a fresh split by the same seed would move test images
        for i, path in enumerate(save_digits(workspace / "extra" / name, n=6, size=(16, 16))):
            path.rename(workspace / "photos" / name / f"new{i}.png")
    status, err, out = _resume(workspace, capsys)
    assert status == 0, err
    assert "18 image(s) added" in out and "not used" in out, out
    report = json.loads((workspace / "run" / "metrics.json").read_text())
    assert report["test"]["examples"] == len(test_before) == 3, "the test split is the one the run started with"
    assert _recorded(workspace, "test") == test_before and _recorded(workspace, "train") == train_before


def test_a_class_folder_added_before_resume_leaves_labels_and_model_as_they_were(workspace, capsys):
    labels_before = (workspace / "run" / "labels.txt").read_bytes()
    save_digits(workspace / "photos" / "d", n=6, size=(16, 16))
    status, err, out = _resume(workspace, capsys)
    assert status == 0, err
    assert "new class folder(s) d" in out
    assert (workspace / "run" / "labels.txt").read_bytes() == labels_before
    import keras

    assert keras.saving.load_model(workspace / "run" / "model.keras").output.shape[-1] == 3


def test_a_run_without_split_json_is_refused_before_its_labels_are_rewritten(workspace, capsys):
    (workspace / "run" / "split.json").unlink()  # a run from before split.json existed
    save_digits(workspace / "photos" / "d", n=6, size=(16, 16))
    before = _snapshot(workspace / "run")
    status, err, _ = _resume(workspace, capsys)
    assert status == 2 and len(err) == 1 and "differ from the run's" in err[0], err
    assert _snapshot(workspace / "run") == before, "nothing in the run folder was touched"


def test_photos_removed_before_resume_are_refused_in_one_line_touching_nothing(workspace, capsys):
    gone = Path(_recorded(workspace, "train")[0])
    gone.unlink()
    before = _snapshot(workspace / "run")
    status, err, _ = _resume(workspace, capsys)
    assert status == 2 and len(err) == 1, err
    assert "are gone" in err[0] and gone.name in err[0]
    assert _snapshot(workspace / "run") == before


@pytest.mark.parametrize("key, value", [("seed", 7), ("val_split", 0.3), ("few_shot", 2)])
def test_a_split_setting_edited_in_config_yaml_is_refused_on_resume(workspace, capsys, key, value):
    config = workspace / "run" / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["data"][key] = value
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    before = _snapshot(workspace / "run")
    status, err, _ = _resume(workspace, capsys)
    assert status == 2 and len(err) == 1 and f"data.{key} is {value!r}" in err[0], err
    assert _snapshot(workspace / "run") == before


def test_changed_arrays_are_refused_on_resume(tmp_path, capsys):
    from keras_transfer import train

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8), np.arange(24) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    config = {"data": {"source": f"npz:{tmp_path / 'd.npz'}", "image_size": 16, "augment": [], "batch_size": 8},
              "model": {"backbone": str(tiny_source(tmp_path / "tiny.keras")), "head": {"dropout": 0.0}},
              "training": {"stages": _stages()[:1]}}
    run(from_dict(config), tmp_path / "run", log=lambda _: None)
    np.savez(tmp_path / "d.npz", x=x, y=(y + 1) % 3)  # relabelled in place
    status = train.run_cli(lambda: train.main(["--output-dir", str(tmp_path / "run"), "--resume"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "changed since the run started" in err[0], err
