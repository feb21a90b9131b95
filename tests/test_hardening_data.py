"""Hostile and unlucky inputs to the data and weights readers: tensors outside their storage,
decompression bombs, CSV paths outside their folder, files that only the training decoder rejects,
and a disk cache that must never hand back another ordering's examples."""

from __future__ import annotations

import io
import pickle
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_transfer.backbones.torch_state import CorruptCheckpointError, read_legacy_state_dict
from keras_transfer.data import DataConfig, load_data
from keras_transfer.data.cache import cache_key
from keras_transfer.data.images import ImageReadError, image_header, read_rgb

# --- crafted legacy .pth files, written opcode by opcode (no torch needed) -----------------------


def _int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1: any size, any sign


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor_pickle(name: str, numel: int, offset, shape, stride) -> bytes:
    """The pickle of {name: tensor} as torch's legacy writer lays it out, from the allowed globals only."""
    storage = _tuple([_str("storage"), b"ctorch\nFloatStorage\n", _str("0"), _str("cpu"), _int(numel)]) + b"Q"
    args = _tuple([storage, _int(offset), _tuple([_int(n) for n in shape]), _tuple([_int(s) for s in stride]),
                   b"\x89", b"ccollections\nOrderedDict\n)R"])
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + _str(name) + tensor + b"u."


def _legacy_pth(path: Path, numel: int, offset, shape, stride, data: np.ndarray | None = None) -> Path:
    data = np.arange(numel, dtype="<f4") if data is None else data
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(_tensor_pickle("w", numel, offset, shape, stride))
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", data.size) + data.astype("<f4").tobytes())
    path.write_bytes(out.getvalue())
    return path


def test_a_crafted_pth_within_its_storage_reads_as_the_strided_tensor(tmp_path):
    state = read_legacy_state_dict(_legacy_pth(tmp_path / "ok.pth", 12, 2, (2, 3), (1, 2)))
    np.testing.assert_array_equal(state["w"], np.arange(12, dtype=np.float32)[2:][np.array([[0, 2, 4], [1, 3, 5]])])


@pytest.mark.parametrize("offset, shape, stride, why", [
    (0, (4, 4), (4, 1), "shape beyond the storage"),
    (0, (2, 3), (1_000_000_000, 1), "stride beyond the storage"),
    (10, (4,), (1,), "offset plus extent beyond the storage"),
    (-4, (2,), (1,), "negative offset"),
    (0, (2, 2), (-1, 1), "negative stride"),
    (0, (-2, 2), (1, 1), "negative shape"),
    (0, (2**62, 2**62), (2**62, 1), "sizes that overflow 64 bits"),
    (0, (10**9,), (0,), "a stride-0 broadcast larger than the storage"),
    (12, (), (), "a scalar past the end"),
    (0, (2, 2), (1,), "a stride shorter than the shape"),
])
def test_a_tensor_outside_its_storage_is_refused_with_one_line(tmp_path, offset, shape, stride, why):
    path = _legacy_pth(tmp_path / "crafted.pth", 12, offset, shape, stride)
    with pytest.raises(CorruptCheckpointError, match=r"crafted\.pth.*tensor w") as raised:
        read_legacy_state_dict(path)
    assert isinstance(raised.value, ValueError) and "\n" not in str(raised.value), why


def test_a_storage_longer_than_the_file_is_refused_before_reading(tmp_path):
    path = _legacy_pth(tmp_path / "short.pth", 12, 0, (12,), (1,))
    raw = bytearray(path.read_bytes())
    raw[-48 - 8:-48] = struct.pack("<q", 2**60)  # the element count in front of the 12 floats
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="more than the file holds"):
        read_legacy_state_dict(path)


def test_a_crafted_pth_never_crashes_the_process(tmp_path):
    """The reported crash: a stride beyond the storage segfaulted (exit 139); now it is exit 0 with an error."""
    path = _legacy_pth(tmp_path / "segv.pth", 4, 0, (64, 64), (1 << 30, 1))  # segfaulted before
    code = ("from keras_transfer.backbones.torch_state import read_legacy_state_dict as r\n"
            f"try:\n    r({str(path)!r})\nexcept ValueError as e:\n    print('refused', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.startswith("refused"), (done.returncode, done.stderr[-500:])


# --- image files: bombs, formats only PIL reads, CSV paths outside their folder ------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(path: Path, side: int, rows: int | None = None) -> Path:
    """A valid grey PNG of side x side zero pixels, a few hundred KB on disk (`rows`: only that many rows written)."""
    packer = zlib.compressobj(9)
    block = bytes(side + 1) * 500  # 500 rows of (filter byte + pixels)
    data = b"".join(packer.compress(block) for _ in range((rows or side) // 500)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def _photo(path: Path, seed: int, size=(12, 16), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def _pets(root: Path, per_class: int = 4) -> Path:
    for c, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            _photo(root / name / f"{i}.png", seed=10 * c + i)
    return root


def _config(source: str, **kw) -> DataConfig:
    return DataConfig(source=source, image_size=(16, 16), batch_size=4, augment=(), val_split=0.0, test_split=0.0, **kw)


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A real decompression bomb: 140 KB that decodes to 12000 x 12000 = 144 million pixels."""
    return _bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 12000)


def test_a_bomb_png_is_skipped_with_its_reason_and_the_others_train(tmp_path, bomb):
    root = _pets(tmp_path / "pets")
    (root / "cat" / "bomb.png").write_bytes(bomb.read_bytes())
    started = time.perf_counter()
    bundle = load_data(_config(f"folder:{root}"))
    seconds = time.perf_counter() - started
    reasons = {Path(s.path).name: s.reason for s in bundle.skipped}
    assert list(reasons) == ["bomb.png"]
    assert "image too large" in reasons["bomb.png"] and "12000 x 12000 = 144,000,000 pixels" in reasons["bomb.png"]
    assert "89,478,485" in reasons["bomb.png"], "the reason names the limit"
    assert bundle.counts()["train"] == {"cat": 4, "dog": 4}
    assert len(_epoch(bundle.dataset("train"))[0]) == 8
    assert seconds < 30, f"the header alone decides: {seconds:.1f} s"


def test_the_pixel_limit_is_a_data_option(tmp_path):
    root = _pets(tmp_path / "pets")
    _photo(root / "dog" / "big.png", seed=99, size=(40, 50))
    bundle = load_data(_config(f"folder:{root}", max_pixels=1000))
    assert [(Path(s.path).name, "50 x 40 = 2,000 pixels" in s.reason) for s in bundle.skipped] == [("big.png", True)]
    assert load_data(_config(f"folder:{root}")).skipped == []
    with pytest.raises(ValueError, match="data.max_pixels must be >= 1, got 0"):
        _config("digits", max_pixels=0)


def test_read_rgb_refuses_a_bomb_from_its_header_in_one_line(tmp_path, bomb):
    with pytest.raises(ImageReadError, match=r"bomb\.png: image too large.*12000 x 12000") as raised:
        read_rgb(bomb)
    assert raised.value.path == str(bomb) and "\n" not in str(raised.value)
    huge = _bomb_png(tmp_path / "huge.png", 20000, rows=500)  # above twice PIL's own limit: PIL's error, ours too
    for read in (image_header, read_rgb):  # PIL raised DecompressionBombError here: a traceback in predict
        with pytest.raises(ImageReadError, match="huge.png: image too large"):
            read(huge)
    assert image_header(bomb, max_pixels=200_000_000).width == 12000, "a raised limit lets it through"


def test_a_tiff_named_png_is_skipped_before_training_not_mid_epoch(tmp_path):
    root = _pets(tmp_path / "pets")
    _photo(root / "cat" / "scan.png", seed=7, fmt="TIFF")
    good = (root / "dog" / "0.png").read_bytes()
    end = good.index(b"IEND") - 4  # a PNG PIL reads but TensorFlow refuses: a foreign chunk after the data
    (root / "dog" / "odd.png").write_bytes(good[:end] + b"\x00\x00\x00\x04pw=hunter2\n")
    bundle = load_data(_config(f"folder:{root}"))
    reasons = {Path(s.path).name: s.reason for s in bundle.skipped}
    assert reasons["scan.png"].startswith("TIFF image, which training cannot decode")
    assert reasons["odd.png"] == "unreadable image (truncated or corrupt PNG data)"
    assert len(_epoch(bundle.dataset("train"))[0]) == 8, "a whole epoch runs"


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def test_csv_paths_outside_the_csv_root_are_errors_naming_the_line(tmp_path):
    root = _pets(tmp_path / "shared" / "pets")
    outside = _photo(tmp_path / "private" / "me.png", seed=3)
    rows = [(f"pets/{c}/{i}.png", c) for c in ("cat", "dog") for i in range(4)]
    absolute = [(str(root / "cat" / "0.png"), "cat")]
    bundle = load_data(_config(f"csv:{_csv(tmp_path / 'shared' / 'a.csv', rows + absolute)}",
                               csv_root=str(tmp_path / "shared")))
    assert bundle.counts()["train"] == {"cat": 5, "dog": 4}, "relative and absolute paths inside the root work"
    for bad in ("../private/me.png", str(outside), "pets/../../private/me.png"):
        outside_root = rf"b\.csv, line 10: image path '{re.escape(bad)}' is outside data.csv_root"
        with pytest.raises(ValueError, match=outside_root):
            load_data(_config(f"csv:{_csv(tmp_path / 'shared' / 'b.csv', rows + [(bad, 'cat')])}",
                              csv_root=str(tmp_path / "shared")))
    (root / "cat" / "link.png").symlink_to(outside)
    with pytest.raises(ValueError, match="line 10: image path 'pets/cat/link.png' is outside"):
        load_data(_config(f"csv:{_csv(tmp_path / 'shared' / 'c.csv', rows + [('pets/cat/link.png', 'cat')])}",
                          csv_root=str(tmp_path / "shared")))


def test_a_csv_row_naming_a_private_file_never_leaks_its_contents(tmp_path):
    _pets(tmp_path / "data" / "pets")
    secret = "hunter2-secret"
    (tmp_path / "passwd").write_text(f"root:x:0:0:{secret}:/root:/bin/bash\n")
    (tmp_path / "fake.tif").write_bytes(b"II*\x00" + secret.encode() * 8)  # decoders quote headers in errors
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + secret.encode() * 4)
    rows = [(f"pets/{c}/{i}.png", c) for c in ("cat", "dog") for i in range(4)]
    escapes = [("../" * 12 + str(tmp_path / name).lstrip("/"), "cat") for name in ("passwd", "fake.tif")]
    absolute = [(str(tmp_path / "fake.png"), "dog")]
    bundle = load_data(_config(f"csv:{_csv(tmp_path / 'data' / 'a.csv', rows + escapes + absolute)}"))
    assert len(bundle.skipped) == 3 and all(s.reason == "not an image file" for s in bundle.skipped)
    report = tmp_path / "data_report.json"
    bundle.write_report(report)
    text = report.read_text()
    assert "passwd" in text, "the path is reported"
    assert "hunter" not in text and "root:x" not in text and "II*" not in text


# --- the disk cache: keyed by content and order --------------------------------------------------


def _arrays(seed: int, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = (rng.integers(0, 40, (n, 16, 16, 3)) + 80 * labels[:, None, None, None]).astype(np.uint8)
    return images, labels


def test_a_disk_cache_never_hands_the_shuffled_order_to_an_unshuffled_pipeline(tmp_path):
    images, labels = _arrays(0)
    config = _config("digits", cache="disk", cache_dir=str(tmp_path / "cache"), seed=5)
    bundle = load_data(config, x=images, y=labels)
    _, shuffled_y = _epoch(bundle.dataset("train"))  # writes the training pipeline's cache first
    assert not np.array_equal(shuffled_y, labels), "the training order is shuffled"
    x, y = _epoch(bundle.dataset("train", training=False))
    np.testing.assert_array_equal(y, bundle.splits["train"].labels)
    np.testing.assert_array_equal(x, images.astype(np.float32))
    _, again_y = _epoch(load_data(config, x=images, y=labels).dataset("train", training=False))
    np.testing.assert_array_equal(again_y, labels)  # read back from the cache, still in order
    assert len(list((tmp_path / "cache").glob("train_*.index"))) == 2


def test_a_disk_cache_never_hands_another_arrays_examples_of_the_same_length(tmp_path):
    config = _config("digits", cache="disk", cache_dir=str(tmp_path / "cache"))
    first, second = _arrays(0), _arrays(1)
    _epoch(load_data(config, x=first[0], y=first[1]).dataset("train", training=False))
    x, _ = _epoch(load_data(config, x=second[0], y=second[1]).dataset("train", training=False))
    np.testing.assert_array_equal(x, second[0].astype(np.float32))


def test_a_disk_cached_folder_pairs_every_image_with_its_label(tmp_path):
    root = _pets(tmp_path / "pets", per_class=6)
    bundle = load_data(_config(f"folder:{root}", cache="disk", cache_dir=str(tmp_path / "cache")))
    _epoch(bundle.dataset("train"))
    x, y = _epoch(bundle.dataset("train", training=False))
    split = bundle.splits["train"]
    np.testing.assert_array_equal(y, split.labels)
    expected = np.stack([read_rgb(p).astype(np.float32) for p in split.paths])  # 12 x 16, resized to 16 x 16
    assert x.shape == (12, 16, 16, 3)
    assert np.abs(x.mean(axis=(1, 2, 3)) - expected.mean(axis=(1, 2, 3))).max() < 2.0, "each image is its own file"


def _cache_prefix(bundle, tmp_path: Path) -> Path:
    return tmp_path / "cache" / f"train_{cache_key(bundle.splits['train'], bundle.config, 'in order')}"


def test_a_killed_runs_cache_lockfile_does_not_stop_the_next_run(tmp_path):
    images, labels = _arrays(0)
    bundle = load_data(_config("digits", cache="disk", cache_dir=str(tmp_path / "cache")), x=images, y=labels)
    prefix = _cache_prefix(bundle, tmp_path)
    prefix.parent.mkdir()
    # What TensorFlow leaves behind when a run is killed while writing its cache.
    Path(f"{prefix}_0.lockfile").write_text("Created at: 1795499511")
    Path(f"{prefix}_0.data-00000-of-00001.tempstate123").write_bytes(b"\0" * 64)
    _, y = _epoch(bundle.dataset("train", training=False))
    np.testing.assert_array_equal(y, labels)
    assert Path(f"{prefix}.index").exists() and not Path(f"{prefix}_0.lockfile").exists()


def test_a_cache_another_live_process_is_writing_is_left_alone(tmp_path):
    import fcntl

    images, labels = _arrays(0)
    bundle = load_data(_config("digits", cache="disk", cache_dir=str(tmp_path / "cache")), x=images, y=labels)
    prefix = _cache_prefix(bundle, tmp_path)
    prefix.parent.mkdir()
    with open(f"{prefix}.owner", "a") as owner:  # another writer holds the lock (a new open file: a new owner)
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        Path(f"{prefix}_0.lockfile").write_text("Created at: now")
        _, y = _epoch(bundle.dataset("train", training=False))
        np.testing.assert_array_equal(y, labels)
        assert Path(f"{prefix}_0.lockfile").exists(), "the other writer's files are not touched"
        assert list(prefix.parent.glob(f"{prefix.name}.pid*.index")), "this process cached privately"


def test_labels_never_come_from_a_disk_cache_so_a_planted_one_cannot_relabel_the_data(tmp_path, monkeypatch):
    from keras_transfer.data import cache as cache_module

    images, labels = _arrays(0)
    config = _config("digits", cache="disk", cache_dir=str(tmp_path / "cache"))
    # Every key alike: the second bundle reads the first one's cache file as if it had been planted.
    monkeypatch.setattr(cache_module, "cache_key", lambda *a, **k: "same")
    monkeypatch.setattr("keras_transfer.data.pipeline.cache", cache_module.cache)
    _epoch(load_data(config, x=images, y=labels[::-1].copy()).dataset("train", training=False))  # other labels
    x, y = _epoch(load_data(config, x=images, y=labels).dataset("train", training=False))
    np.testing.assert_array_equal(y, labels)  # the labels of this scan, not the cache's
    np.testing.assert_array_equal(x, images.astype(np.float32))
