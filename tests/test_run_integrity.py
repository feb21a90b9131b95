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
from keras_transfer.core.files import read_labels, write_labels
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
    from keras_transfer.cli import train

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
    record = (workspace / "run" / "split.json").read_bytes() if (workspace / "run" / "split.json").exists() else None
    for name in CLASSES:  # six more per class: a fresh split by the same seed would move test images
        for i, path in enumerate(save_digits(workspace / "extra" / name, n=6, size=(16, 16))):
            path.rename(workspace / "photos" / name / f"new{i}.png")
    started_with = len(json.loads(record)["splits"]["test"]["paths"])
    status, err, out = _resume(workspace, capsys)
    assert status == 0, err
    report = json.loads((workspace / "run" / "metrics.json").read_text())
    assert report["test"]["examples"] == started_with, "the test split is the one the run started with"
    assert "18 image(s) added" in out and "not used" in out, out
    assert (workspace / "run" / "split.json").read_bytes() == record
    from keras_transfer.cli import evaluate

    assert evaluate.run_cli(lambda: evaluate.main(["--run", str(workspace / "run"), "--json"])) == 0
    printed = capsys.readouterr().out
    scores = json.loads(printed[printed.index("\n{") + 1:])  # after the line about the new images
    assert scores["examples"] == started_with, "evaluate scores the run's own test split, not a fresh one"


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
    from keras_transfer.cli import train

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


# --- labels.txt: every name round-trips, every load checks the count -------------------------------

AWKWARD = ["café", "cafe\u0301", " leading space", "trailing space ", "#not a comment", '"quoted"', "two\nlines",
           "carriage\r", "esc\x1b[2Jape", "tab\there", "line\u2028separator", "not utf-8 \udcff", "=SUM(A1)", "$5_$10",
           "日本語", "x" * 255]


def test_labels_txt_round_trips_every_name_a_folder_can_have(tmp_path):
    write_labels(tmp_path / "labels.txt", AWKWARD)
    assert read_labels(tmp_path / "labels.txt") == AWKWARD
    lines = (tmp_path / "labels.txt").read_bytes().decode("utf-8").split("\n")
    assert lines[0] == "café" and lines[-2] == "x" * 255, "plain names stay plain, one per line"
    assert len(lines) == len(AWKWARD) + 1 and "\x1b" not in "".join(lines), "no raw escape code in the file"


def test_a_labels_txt_edited_on_windows_reads_back_the_same_names(tmp_path):
    (tmp_path / "labels.txt").write_bytes(b"daisy\r\nrose\r\n\r\ntulip\r\n")
    assert read_labels(tmp_path / "labels.txt") == ["daisy", "rose", "tulip"]


def test_awkward_class_folders_train_and_read_back_exactly_and_print_escaped(tmp_path, capsys):
    from keras_transfer.cli import train

    names = ["esc\x1b[2Jape", "two\nlines", " spaced "]
    for name in names:
        save_digits(tmp_path / "photos" / name, n=4, size=(16, 16))
    config = {"data": {"image_size": 16, "batch_size": 8, "augment": [], "val_split": 0.25, "test_split": 0.0},
              "model": {"backbone": str(tiny_source(tmp_path / "tiny.keras")), "head": {"dropout": 0.0}},
              "training": {"stages": _stages()[:1]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    status = train.run_cli(lambda: train.main([str(tmp_path / "photos"), "--config", str(tmp_path / "c.yaml"),
                                               "--output-dir", str(tmp_path / "run")]))
    out = capsys.readouterr()
    assert status == 0, out.err
    assert read_labels(tmp_path / "run" / "labels.txt") == sorted(names)
    data_line = next(line for line in out.out.splitlines() if line.startswith("data:"))
    assert "esc\\x1b[2Jape" in data_line and "two\\x0alines" in data_line, data_line
    assert "\x1b" not in out.out, "a class name never sends an escape code to the terminal"


def _classifier_file(folder: Path, outputs: int) -> Path:
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(outputs, activation="softmax")(x))
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    return folder / "model.keras"


@pytest.mark.parametrize("names", [["only"], ["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f"]])
def test_a_keras_model_with_the_wrong_number_of_labels_is_refused_in_one_line(tmp_path, names):
    from keras_transfer.deploy.inference import load_classifier

    path = _classifier_file(tmp_path, 5)
    write_labels(tmp_path / "labels.txt", names)
    with pytest.raises(ValueError, match=f"names {len(names)} class.* but the model has 5 outputs"):
        load_classifier(path)
    write_labels(tmp_path / "labels.txt", list("abcde"))
    classifier = load_classifier(path)
    assert not classifier.regression and len(classifier.predict(np.zeros((16, 16, 3), np.uint8))) == 5


def _onnx_file(path: Path, outputs: int, labels: list[str]) -> Path:
    """A hand-made ONNX classifier: mean pixel -> MatMul to `outputs` -> softmax, with its labels metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((3, outputs), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["pooled"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, outputs])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.metadata_props.add(key="labels", value=json.dumps(labels))
    onnx.save(model, path)
    return path


def test_an_onnx_model_whose_labels_metadata_is_short_is_refused_not_read_as_a_regression(tmp_path):
    from keras_transfer.deploy.inference import load_classifier

    with pytest.raises(ValueError, match="names 1 class but the model has 5 outputs"):
        load_classifier(_onnx_file(tmp_path / "short.onnx", 5, ["daisy"]))
    classifier = load_classifier(_onnx_file(tmp_path / "ok.onnx", 5, list("abcde")))
    assert classifier.labels == list("abcde") and not classifier.regression


# --- caches: the user's own folder, files of others never read --------------------------------------


def test_the_default_data_cache_is_a_private_folder_of_the_user(tmp_path, monkeypatch):
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.data.cache import cache_folder

    monkeypatch.delenv("KT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = DataConfig(source="digits", image_size=16, augment=(), cache="disk", val_split=0.1, test_split=0.1)
    folder = cache_folder(config)
    assert folder == tmp_path / "home" / ".cache" / "keras_transfer" / "data"
    for _ in load_data(config).dataset("val"):  # a whole pass writes the cache
        pass
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and list(folder.glob("val_*.index"))
    monkeypatch.setenv("KT_CACHE_DIR", str(tmp_path / "kt"))
    assert cache_folder(config) == tmp_path / "kt" / "data"
    _pretend_files_belong_to_another_user(monkeypatch)
    from keras_transfer.data.cache import private_folder

    with pytest.raises(PermissionError, match="belongs to another user; set data.cache_dir"):
        private_folder(folder)


def _pretend_files_belong_to_another_user(monkeypatch):
    from keras_transfer.data import cache as cache_module

    monkeypatch.setattr(cache_module, "_uid", lambda: os.getuid() + 1, raising=False)


def test_a_data_cache_planted_by_another_user_is_never_read(tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_transfer.data import DataConfig, load_data

    config = DataConfig(source="digits", image_size=16, augment=(), cache="disk", cache_dir=str(tmp_path),
                        val_split=0.1, test_split=0.1)
    bundle = load_data(config)
    truth = np.concatenate([y.numpy() for _, y in bundle.dataset("val")])
    (index,) = tmp_path.glob("val_*.index")
    prefix = str(index)[: -len(".index")]
    for path in tmp_path.glob("val_*"):
        path.unlink()
    pixels = np.zeros((len(truth), 16, 16, 3), np.uint8)  # every label 0: a model that answers "0" to all
    for _ in tf.data.Dataset.from_tensor_slices((pixels, np.zeros(len(truth), np.int64))).cache(prefix):
        pass
    _pretend_files_belong_to_another_user(monkeypatch)
    read = np.concatenate([y.numpy() for _, y in load_data(config).dataset("val")])
    np.testing.assert_array_equal(read, truth)


def _photos_and_text(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for name in ("a", "b"):
        save_digits(root / name, n=3, size=(16, 16))
    (root / "a" / "notes.jpg").write_text("a text file named .jpg")
    return root


def _plant_manifest(root: Path, cache: Path, verdicts: dict[str, list]) -> None:
    """Write a manifest for `root` that gives `verdicts` (relative path -> [reason, height, width])."""
    from keras_transfer.data.manifest import ScanManifest
    from keras_transfer.data.images import DEFAULT_MAX_PIXELS

    store = ScanManifest.open(cache, root, DEFAULT_MAX_PIXELS).store
    entries = {}
    for path in sorted(root.rglob("*.*")):
        info = path.stat()
        key = str(path.relative_to(root))
        entries[key] = [info.st_size, info.st_mtime_ns, *verdicts.get(key, [None, 16, 16])]
    cache.mkdir(exist_ok=True)
    store.write_text(json.dumps({"version": 1, "source": str(root.resolve()), "max_pixels": DEFAULT_MAX_PIXELS,
                                 "entries": entries}))


def _folder_data(root: Path, cache: Path):
    from keras_transfer.data import DataConfig, load_data

    return load_data(DataConfig(source=f"folder:{root}", image_size=16, augment=(), val_split=0.0, test_split=0.0,
                                cache_dir=str(cache)))


def test_a_manifest_planted_by_another_user_never_passes_a_text_file_as_an_image(tmp_path, monkeypatch):
    root, cache = _photos_and_text(tmp_path), tmp_path / "cache"
    _plant_manifest(root, cache, {})  # says notes.jpg is a good 16x16 image
    _pretend_files_belong_to_another_user(monkeypatch)
    bundle = _folder_data(root, cache)
    assert [Path(s.path).name for s in bundle.skipped] == ["notes.jpg"]


def test_a_manifest_reason_with_escape_codes_is_never_trusted_nor_printed(tmp_path, capsys):
    root, cache = _photos_and_text(tmp_path), tmp_path / "cache"
    _plant_manifest(root, cache, {os.path.join("b", "digit0.png"): ["\x1b[2J\x1b[31mgone", None, None]})
    bundle = _folder_data(root, cache)
    assert [Path(s.path).name for s in bundle.skipped] == ["notes.jpg"], "the good photo is kept"
    assert all(s.reason.isprintable() for s in bundle.skipped)
    assert "\x1b" not in capsys.readouterr().out


# --- names that look alike, split folders twice over, weights by position, inflating archives -------


def test_two_spellings_of_the_validation_folder_are_one_clear_error(tmp_path):
    from keras_transfer.data.records import folder_records

    for split in ("train", "validation", "Validation"):
        save_digits(tmp_path / "a" / split / "cat", n=1, size=(16, 16))
    with pytest.raises(ValueError, match="has both Validation/ and validation/; keep one"):
        folder_records(tmp_path / "a")
    for split in ("train", "val", "validation"):
        save_digits(tmp_path / "b" / split / "cat", n=1, size=(16, 16))
    with pytest.raises(ValueError, match="both val/ and validation/ for the val split"):
        folder_records(tmp_path / "b")


def test_class_names_that_differ_only_in_unicode_normalisation_are_refused(tmp_path):
    import unicodedata

    from keras_transfer.data.records import csv_records, folder_records

    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    for name in (nfc, nfd, "Café"):
        save_digits(tmp_path / "photos" / name, n=1, size=(16, 16))
    with pytest.raises(ValueError, match="look identical \\(café\\).*NFC and NFD"):
        folder_records(tmp_path / "photos")
    (tmp_path / "labels.csv").write_text(f"path,label\nphotos/{nfc}/digit0.png,{nfc}\nphotos/{nfd}/digit0.png,{nfd}\n")
    with pytest.raises(ValueError, match="look identical"):
        csv_records(tmp_path / "labels.csv")
    (tmp_path / "photos" / nfd / "digit0.png").unlink()
    (tmp_path / "photos" / nfd).rmdir()
    records, _ = folder_records(tmp_path / "photos")  # café and Café look different: two classes
    assert sorted({labels[0] for labels in records["train"].labels}) == ["Café", nfc]


def test_a_checkpoint_is_never_loaded_into_weights_that_come_in_another_order(tmp_path):
    import keras

    from keras_transfer.training.checkpoint import Checkpointer

    def model(first, then):
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(4, name=then)(keras.layers.Dense(4, name=first)(inputs)))

    saver = Checkpointer(tmp_path / "ckpt")
    saver.save(model("a", "b"), None, {"stage_index": 0, "stage_epoch": 1, "global_epoch": 1, "history": []})
    latest = saver.latest()
    latest.restore_model(model("a", "b"))  # the same order loads
    with pytest.raises(RuntimeError, match="holds weight 0 as 'a/kernel'.*has 'b/kernel' there"):
        latest.restore_model(model("b", "a"))  # same shapes, other order: by position it would load swapped


def test_a_keras_file_whose_config_inflates_to_gigabytes_is_refused_before_keras_reads_it(tmp_path, monkeypatch):
    import zipfile

    import keras

    from keras_transfer.core.archives import MAX_CONFIG_BYTES
    from keras_transfer.deploy.inference import load_classifier

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", b" " * (MAX_CONFIG_BYTES + 1))  # 64 MB of spaces: 65 KB on disk
    write_labels(tmp_path / "labels.txt", ["a", "b"])
    assert path.stat().st_size < 1 << 20
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: pytest.fail("Keras read the archive"))
    with pytest.raises(ValueError, match="config.json inflates to 67,108,865 bytes"):
        load_classifier(path)


def test_a_saved_model_whose_labels_asset_is_short_is_refused_not_read_as_a_regression(tmp_path):
    import keras

    from keras_transfer.deploy.inference import load_classifier
    from keras_transfer.deploy.saved_model import export_saved_model

    model = keras.saving.load_model(_classifier_file(tmp_path, 5))
    export_saved_model(model, tmp_path / "short", ["daisy"])  # a 5-output classifier exported with one name
    with pytest.raises(ValueError, match="names 1 class but the model has 5 outputs"):
        load_classifier(tmp_path / "short")
