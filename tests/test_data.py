"""Data sources to tf.data pipelines: every source, bad files, image modes, splits, few-shot,
balancing, augmentation and determinism."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_transfer.data import DataConfig, load_data, load_embedded

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"


def _write(path: Path, rgb: np.ndarray, mode: str = "RGB", fmt: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path


def _class_folder(root: Path, classes=("cat", "dog", "owl"), per_class=10, size=(12, 16)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        for i in range(per_class):
            pixels = np.full((*size, 3), 40 * c, dtype=np.uint8) + rng.integers(0, 30, (*size, 3), dtype=np.uint8)
            _write(root / name / f"{i}.png", pixels)
    return root


def _config(source, **kw):
    return DataConfig(source=source, image_size=kw.pop("image_size", (16, 16)), batch_size=kw.pop("batch_size", 8),
                      augment=kw.pop("augment", ()), **kw)


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_folder_source_gives_stratified_deterministic_splits(tmp_path):
    root = _class_folder(tmp_path / "pets", per_class=20)
    a = load_data(_config(f"folder:{root}", val_split=0.2, test_split=0.2))
    b = load_data(_config(f"folder:{root}", val_split=0.2, test_split=0.2))
    assert a.class_names == ["cat", "dog", "owl"]
    assert a.counts() == {"train": {"cat": 12, "dog": 12, "owl": 12}, "val": {"cat": 4, "dog": 4, "owl": 4},
                          "test": {"cat": 4, "dog": 4, "owl": 4}}
    assert all(a.splits[s].paths == b.splits[s].paths for s in ("train", "val", "test"))
    assert not set(a.splits["train"].paths) & set(a.splits["val"].paths)
    x, y = next(iter(a.dataset("train")))
    assert x.shape == (8, 16, 16, 3) and x.dtype.name == "float32"
    np.testing.assert_array_equal(y.numpy(), next(iter(b.dataset("train")))[1].numpy())


def test_a_different_seed_gives_a_different_split(tmp_path):
    root = _class_folder(tmp_path / "pets", per_class=20)
    a = load_data(_config(f"folder:{root}", seed=0))
    b = load_data(_config(f"folder:{root}", seed=1))
    assert a.splits["val"].paths != b.splits["val"].paths


def test_presplit_folder_keeps_its_splits_and_carves_the_missing_one(tmp_path):
    _class_folder(tmp_path / "d" / "train", per_class=10)
    _class_folder(tmp_path / "d" / "test", per_class=3)
    bundle = load_data(_config(f"folder:{tmp_path / 'd'}", val_split=0.2))
    counts = bundle.counts()
    assert counts["test"] == {"cat": 3, "dog": 3, "owl": 3}
    assert counts["val"] == {"cat": 2, "dog": 2, "owl": 2} and counts["train"]["cat"] == 8
    assert all("/test/" in p for p in bundle.splits["test"].paths)


def test_validation_folder_name_is_accepted(tmp_path):
    _class_folder(tmp_path / "d" / "train", per_class=4)
    _class_folder(tmp_path / "d" / "validation", per_class=2)
    bundle = load_data(_config(f"folder:{tmp_path / 'd'}", test_split=0.0))
    assert sum(bundle.counts()["val"].values()) == 6 and "test" not in bundle.splits


def test_label_in_val_absent_from_train_is_an_error_naming_the_split(tmp_path):
    _class_folder(tmp_path / "d" / "train", classes=("cat", "dog"), per_class=3)
    _class_folder(tmp_path / "d" / "val", classes=("cat", "emu"), per_class=2)
    with pytest.raises(ValueError, match=r"label 'emu' in the val split .*does not occur in train"):
        load_data(_config(f"folder:{tmp_path / 'd'}"))


def test_empty_class_folder_and_single_class_are_errors(tmp_path):
    root = _class_folder(tmp_path / "a", classes=("cat", "dog"), per_class=3)
    (root / "emu").mkdir()
    with pytest.raises(ValueError, match=r"empty class folder .*emu"):
        load_data(_config(f"folder:{root}"))
    one = _class_folder(tmp_path / "b", classes=("cat",), per_class=3)
    with pytest.raises(ValueError, match="1 class .*at least two"):
        load_data(_config(f"folder:{one}"))
    with pytest.raises(ValueError, match="does not exist"):
        load_data(_config(f"folder:{tmp_path / 'nowhere'}"))


def test_bad_files_are_skipped_before_training_and_reported(tmp_path, monkeypatch):
    root = _class_folder(tmp_path / "pets", per_class=6)
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("this is not a picture")
    jpeg = _write(tmp_path / "full.jpg", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "owl" / "truncated.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    locked = root / "owl" / "locked.png"
    locked.write_bytes((root / "owl" / "0.png").read_bytes())
    # Root reads any file whatever its mode, so the permission failure is simulated at open().
    import PIL.Image

    real_open = PIL.Image.open

    def guarded(path, *args, **kwargs):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", guarded)
    bundle = load_data(_config(f"folder:{root}", val_split=0.0, test_split=0.0))
    reasons = {Path(s.path).name: s.reason for s in bundle.skipped}
    assert reasons["empty.jpg"].startswith("empty file")
    assert reasons["notes.jpg"] == "not an image file"
    assert reasons["truncated.jpg"].startswith("unreadable image")
    assert reasons["locked.png"] == "permission denied"
    assert bundle.counts()["train"] == {"cat": 6, "dog": 6, "owl": 6}
    x, _ = _all(bundle.dataset("train"))  # a whole epoch runs: no bad file reaches the pipeline
    assert len(x) == 18
    report = tmp_path / "data_report.json"
    bundle.write_report(report)
    assert "truncated.jpg" in report.read_text()


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"),
                                       ("I;16", "PNG"), ("RGB", "BMP"), ("P", "GIF"), ("RGB", "JPEG")])
def test_every_image_mode_becomes_rgb_at_the_requested_size(tmp_path, mode, fmt):
    rng = np.random.default_rng(2)
    smooth = np.repeat(np.repeat(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8), 4, axis=0), 4, axis=1)
    suffix = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif"}[fmt]
    for cls in ("a", "b"):
        _write(tmp_path / "d" / cls / f"img{suffix}", smooth, mode, fmt)
    bundle = load_data(_config(f"folder:{tmp_path / 'd'}", image_size=(20, 28), val_split=0.0, test_split=0.0))
    x, _ = _all(bundle.dataset("train", training=False))
    assert x.shape == (2, 20, 28, 3)
    expected = np.asarray(Image.open(tmp_path / "d" / "a" / f"img{suffix}").convert("RGB"), dtype=np.float32)
    if mode == "I;16":
        expected = np.repeat(smooth[..., :1].astype(np.float32), 3, axis=-1)
    tolerance = {"JPEG": 12, "GIF": 2}.get(fmt, 1.5)
    assert np.abs(x[0] - expected).mean() < tolerance


def test_resize_policies_stretch_crop_or_pad(tmp_path):
    wide = np.zeros((10, 40, 3), dtype=np.uint8)
    wide[:, :10] = (255, 0, 0)   # left quarter red
    wide[:, 10:] = (0, 0, 255)   # the rest blue
    for cls in ("a", "b"):
        _write(tmp_path / "d" / cls / "w.png", wide)
    def first(policy):
        cfg = _config(f"folder:{tmp_path / 'd'}", image_size=(20, 20), resize=policy, val_split=0.0, test_split=0.0)
        return _all(load_data(cfg).dataset("train", training=False))[0][0]
    stretched, cropped, padded = first("resize"), first("crop_to_aspect_ratio"), first("pad")
    assert stretched[10, 1, 0] > 200          # red survives at the left when stretched
    assert cropped[10, 1, 0] < 50 and cropped[10, 1, 2] > 200  # the centre crop is all blue
    assert padded[0].max() == 0 and padded[-1].max() == 0      # black bars above and below


def test_csv_source_with_relative_absolute_and_multi_labels(tmp_path):
    root = _class_folder(tmp_path / "imgs", classes=("x", "y"), per_class=4)
    rows = ["path,label"]
    for i in range(4):
        rows.append(f"imgs/x/{i}.png,cat")
        rows.append(f"{root / 'y' / f'{i}.png'},dog|outdoor")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    bundle = load_data(_config(f"csv:{tmp_path / 'labels.csv'}", val_split=0.0, test_split=0.0))
    assert bundle.task == "multilabel" and bundle.class_names == ["cat", "dog", "outdoor"]
    _, y = _all(bundle.dataset("train", training=False))
    assert y.shape == (8, 3) and set(map(tuple, y.tolist())) == {(1.0, 0.0, 0.0), (0.0, 1.0, 1.0)}


def test_csv_errors_name_the_line_or_column(tmp_path):
    (tmp_path / "a.csv").write_text("path,label\nmissing.png,cat\n")
    with pytest.raises(ValueError, match=r"a.csv, line 2: image file .*missing.png does not exist"):
        load_data(_config(f"csv:{tmp_path / 'a.csv'}"))
    (tmp_path / "b.csv").write_text("path,label,weight\nx.png,cat,1\n")
    with pytest.raises(ValueError, match="unknown column 'weight'"):
        load_data(_config(f"csv:{tmp_path / 'b.csv'}"))


def test_npz_and_array_sources_check_dtype_and_range(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (30, 8, 8), dtype=np.uint8)  # grey, becomes RGB
    y = np.array(["ant", "bee", "cow"] * 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    bundle = load_data(_config(f"npz:{tmp_path / 'd.npz'}", image_size=(8, 8)))
    assert bundle.class_names == ["ant", "bee", "cow"]
    batch, _ = next(iter(bundle.dataset("train")))
    assert batch.shape[1:] == (8, 8, 3)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\].*multiply by 255"):
        load_data(_config("digits"), x=x / 255.0, y=np.arange(30) % 3)
    with pytest.raises(ValueError, match="30 images but 29 labels"):
        load_data(_config("digits"), x=x, y=np.arange(29) % 3)
    np.savez(tmp_path / "bad.npz", pictures=x)
    with pytest.raises(ValueError, match="expected arrays 'x' and 'y'"):
        load_data(_config(f"npz:{tmp_path / 'bad.npz'}"))


def test_the_task_is_resolved_once_when_the_data_loads(tmp_path):
    # The data decides multilabel and regression; one class per image is model.task's multiclass or
    # binary; what the data cannot give is refused when it loads, not deep inside fit.
    rng = np.random.default_rng(5)
    x = rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8)
    two, three = np.array([0, 1] * 10), np.array([0, 1, 2, 3] * 5)
    config = _config("digits", image_size=(8, 8), val_split=0.0, test_split=0.0)
    assert load_data(config, x=x, y=two).task == "multiclass"
    assert load_data(config, x=x, y=two, task="binary").task == "binary"
    assert load_data(config, x=x, y=rng.normal(size=20), task="binary").task == "regression"
    with pytest.raises(ValueError, match=r"model.task: binary .* has 4 \(0, 1, 2, 3\); use model.task: multiclass"):
        load_data(config, x=x, y=three, task="binary")
    with pytest.raises(ValueError, match="model.task: multilabel needs images with several labels"):
        load_data(config, x=x, y=two, task="multilabel")


def test_a_binary_run_reads_its_recorded_split_back_as_binary_whichever_task_the_record_names(tmp_path):
    import json

    from keras_transfer.data.fingerprint import recorded_data, write_split_record

    root = _class_folder(tmp_path / "imgs", classes=("cat", "dog"), per_class=6)
    config = _config(f"folder:{root}", cache_dir=str(tmp_path / "cache"))
    bundle = load_data(config, task="binary")
    record = tmp_path / "split.json"
    write_split_record(bundle, record)
    again = recorded_data(config, record, task="binary", log=lambda _: None)
    assert again.task == "binary" and again.counts() == bundle.counts()
    older = json.loads(record.read_text())
    older["task"] = "multiclass"  # what runs recorded before the task was resolved when the data loads
    record.write_text(json.dumps(older))
    again = recorded_data(config, record, task="binary", log=lambda _: None)
    assert again.task == "binary" and again.splits["train"].labels.dtype == np.int64


def test_tfds_source_loads_through_tfds_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        bundle = load_data(_config("tfds:tf_flowers", download=False, image_size=(24, 24)))
        x, y = next(iter(bundle.dataset("train")))
    assert bundle.class_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
    assert set(bundle.splits) == {"train", "val"}
    assert x.shape == (8, 24, 24, 3) and int(y.numpy().max()) < 5


def test_tfds_download_offline_fails_within_seconds(tmp_path):
    start = time.monotonic()
    with pytest.raises(ValueError, match="cannot be reached.*data_dir"):
        load_data(_config("tfds:tf_flowers", data_dir=str(tmp_path)))
    assert time.monotonic() - start < 30


def test_few_shot_keeps_k_per_class_and_leaves_val_test_alone():
    full = load_data(_config("digits_5_9"))
    few = load_data(_config("digits_5_9", few_shot=3))
    assert set(few.counts()["train"].values()) == {3}
    assert few.counts()["val"] == full.counts()["val"] and few.counts()["test"] == full.counts()["test"]


def _imbalanced(balance):
    x = np.random.default_rng(4).integers(0, 255, (50, 8, 8, 3), dtype=np.uint8)
    y = np.array([0] * 40 + [1] * 10)
    return load_data(_config("digits", image_size=(8, 8), balance=balance, val_split=0.0, test_split=0.0), x=x, y=y)


def test_oversampling_and_undersampling_equalise_class_counts():
    assert _imbalanced("oversample").counts()["train"] == {"0": 40, "1": 40}
    assert _imbalanced("undersample").counts()["train"] == {"0": 10, "1": 10}
    weighted = _imbalanced("class_weight")
    assert weighted.counts()["train"] == {"0": 40, "1": 10}
    assert weighted.class_weight == pytest.approx({0: 50 / 80, 1: 50 / 20})


def test_augmentation_changes_training_batches_but_never_validation():
    plain = load_data(_config("digits", augment=()))
    augmented = load_data(_config("digits", augment=["flip", "rotation", "zoom", "contrast"]))
    train_plain, _ = _all(plain.dataset("train"))
    train_aug, _ = _all(augmented.dataset("train"))
    assert not np.allclose(np.sort(train_plain, axis=None), np.sort(train_aug, axis=None))
    assert 0 <= train_aug.min() and train_aug.max() <= 255
    val_a, _ = _all(augmented.dataset("val"))
    np.testing.assert_array_equal(val_a, _all(augmented.dataset("val"))[0])
    np.testing.assert_array_equal(val_a, _all(plain.dataset("val"))[0])


def test_augmentation_inside_the_model_leaves_the_pipeline_plain():
    bundle = load_data(_config("digits", augment=["flip"], augment_in="model"))
    assert bundle.augmentation() is not None and bundle.augmentation().layers[0].name == "augment_geometry"
    plain = load_data(_config("digits", augment=()))
    np.testing.assert_array_equal(_all(bundle.dataset("train"))[0], _all(plain.dataset("train"))[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "digit"}, "unknown data.source 'digit'.*'digits'"),
    ({"source": "folder:"}, "unknown data.source"),
    ({"augment": ["flipp"]}, "unknown augmentation 'flipp'.*'flip'"),
    ({"balance": "over"}, "unknown value 'over' in data.balance; did you mean 'oversample'"),
    ({"image_size": (4, 4)}, "at least 8 pixels"),
    ({"val_split": 0.5, "test_split": 0.5}, "almost nothing to train on"),
])
def test_bad_data_config_is_refused_with_the_closest_choice(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**kwargs)


def test_embedded_digits_halves_are_the_source_and_target_tasks():
    source, target = load_embedded("digits_0_4", (16, 16)), load_embedded("digits_5_9", (16, 16))
    assert source.class_names == ("0", "1", "2", "3", "4") and target.class_names == ("5", "6", "7", "8", "9")
    assert set(target.labels) == {0, 1, 2, 3, 4} and len(source.labels) + len(target.labels) == 1797
    assert source.images.dtype == np.uint8 and source.images.shape[1:] == (16, 16, 3)
    assert source.images[:, 0, 0].mean() > 200, "paper is white, ink is dark"
    faces = load_embedded("faces", (25, 25))
    assert faces.class_names == ("non_face", "face") and np.bincount(faces.labels).tolist() == [100, 100]


def test_real_flower_photos_load_with_their_documented_counts():
    if not SHARED_FLOWERS.is_dir():
        pytest.skip(f"real photos not available: {SHARED_FLOWERS} is absent")
    bundle = load_data(_config(f"folder:{SHARED_FLOWERS}", image_size=(32, 32), val_split=0.0, test_split=0.0))
    assert bundle.counts()["train"] == {"daisy": 764, "dandelion": 1052, "rose": 784, "sunflower": 733, "tulip": 984}
    assert bundle.skipped == []


def test_fused_geometry_flips_exactly_is_identity_at_zero_strength_and_serialises(tmp_path):
    import keras

    from keras_transfer.core.layers import RandomGeometry

    images = np.random.default_rng(5).uniform(0, 255, (16, 12, 10, 3)).astype("float32")
    flipped = np.asarray(RandomGeometry(flip=True, seed=1)(images, training=True))
    for original, out in zip(images, flipped):
        assert np.allclose(out, original, atol=1e-3) or np.allclose(out, original[:, ::-1], atol=1e-3)
    assert not all(np.allclose(o, i, atol=1e-3) for o, i in zip(flipped, images)), "some images are mirrored"
    np.testing.assert_allclose(np.asarray(RandomGeometry(seed=1)(images, training=True)), images, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(RandomGeometry(rotation=0.2)(images, training=False)), images)

    model = keras.Sequential([keras.Input((12, 10, 3)), RandomGeometry(rotation=0.1, zoom=0.2, seed=3)])
    model.save(tmp_path / "aug.keras")
    restored = keras.saving.load_model(tmp_path / "aug.keras")
    assert restored.layers[0].get_config()["zoom"] == 0.2


def test_splits_that_together_exceed_the_memory_limit_are_cached_on_disk(tmp_path, monkeypatch):
    from keras_transfer.data import cache as cache_module

    bundle = load_data(DataConfig(source="digits", image_size=16, augment=(), cache_dir=str(tmp_path)))
    per_image = 16 * 16 * 3
    total = sum(len(split) for split in bundle.splits.values())
    monkeypatch.setattr(cache_module, "MEMORY_CACHE_LIMIT", (len(bundle.splits["train"]) + 1) * per_image)
    for _ in bundle.dataset("val"):  # val and train each fit, all three splits do not
        pass
    assert total * per_image > cache_module.MEMORY_CACHE_LIMIT
    assert list(tmp_path.glob("val_*.index")), "val was cached in memory beside train and test"
    monkeypatch.setattr(cache_module, "MEMORY_CACHE_LIMIT", (total + 1) * per_image)
    for _ in bundle.dataset("test"):
        pass
    assert not list(tmp_path.glob("test_*"))
