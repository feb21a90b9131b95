"""The pre-scan manifest: a rerun decodes only new or changed files, and a bad manifest is never trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from keras_transfer.data import DataConfig, load_data
from keras_transfer.data import records as records_module
from keras_transfer.data.manifest import MANIFEST_VERSION, ScanManifest
from tests.support import save_digits


@pytest.fixture
def decodes(monkeypatch):
    """The paths `scan_image` decodes, in order (the real scan runs)."""
    seen: list[str] = []
    real = records_module.scan_image

    def counting(path, max_pixels):
        seen.append(Path(path).name)
        return real(path, max_pixels)

    monkeypatch.setattr(records_module, "scan_image", counting)
    return seen


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    save_digits(root / "cats", n=3)
    save_digits(root / "dogs", n=3, fmt="jpg")
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _load(root: Path, cache: Path, **overrides):
    return load_data(DataConfig(source=f"folder:{root}", image_size=16, augment=(), val_split=0.0, test_split=0.0,
                                cache_dir=str(cache), **overrides))


def _manifest_file(cache: Path) -> Path:
    (store,) = cache.glob("scan_*.json")
    return store


def test_a_rerun_over_unchanged_files_decodes_nothing_and_keeps_skip_reasons(tmp_path, decodes):
    root, cache = _folder(tmp_path), tmp_path / "cache"
    first = _load(root, cache)
    assert len(decodes) == 7 and len(first.skipped) == 1
    decodes.clear()
    second = _load(root, cache)
    assert decodes == []
    assert [(Path(s.path).name, s.reason) for s in second.skipped] == [(Path(s.path).name, s.reason) for s in first.skipped]
    assert second.counts() == first.counts()
    entries = json.loads(_manifest_file(cache).read_text())["entries"]
    assert entries[os.path.join("cats", "digit0.png")][2:] == [None, 40, 48]  # decoded (height, width)


def test_only_changed_added_files_are_decoded_and_removed_files_drop_out(tmp_path, decodes):
    root, cache = _folder(tmp_path), tmp_path / "cache"
    _load(root, cache)
    decodes.clear()
    changed = root / "cats" / "digit1.png"
    changed.write_bytes((root / "dogs" / "broken.jpg").read_bytes())  # now corrupt: size and mtime differ
    save_digits(root / "dogs" / "more", n=1)  # not a class folder: ignored by the folder layout
    (root / "dogs" / "digit0.jpg").rename(root / "dogs" / "renamed.jpg")  # one removed, one added
    os.utime(root / "cats" / "digit2.png", ns=(1, 1))  # touched: same bytes, new mtime
    bundle = _load(root, cache)
    assert sorted(decodes) == ["digit1.png", "digit2.png", "renamed.jpg"]
    assert sorted(Path(s.path).name for s in bundle.skipped) == ["broken.jpg", "digit1.png"]
    entries = json.loads(_manifest_file(cache).read_text())["entries"]
    assert os.path.join("dogs", "digit0.jpg") not in entries and os.path.join("dogs", "renamed.jpg") in entries
    decodes.clear()
    _load(root, cache)
    assert decodes == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "version", "other folder", "other max_pixels", "bad entry"])
def test_a_corrupt_or_foreign_manifest_is_ignored_and_rebuilt(tmp_path, decodes, damage):
    root, cache = _folder(tmp_path), tmp_path / "cache"
    _load(root, cache)
    store = _manifest_file(cache)
    content = json.loads(store.read_text())
    if damage == "garbage":
        store.write_bytes(os.urandom(64) + b"\x00\xff")
    elif damage == "truncated":
        store.write_text(store.read_text()[: len(store.read_text()) // 2])
    elif damage == "version":
        store.write_text(json.dumps({**content, "version": MANIFEST_VERSION + 1}))
    elif damage == "other folder":
        store.write_text(json.dumps({**content, "source": str(tmp_path / "elsewhere")}))
    elif damage == "other max_pixels":
        store.write_text(json.dumps({**content, "max_pixels": content["max_pixels"] - 1}))
    else:
        key = next(iter(content["entries"]))
        store.write_text(json.dumps({**content, "entries": {**content["entries"], key: [1, 2, {"x": 1}, 3, 4]}}))
    decodes.clear()
    bundle = _load(root, cache)
    assert len(decodes) == 7 and [Path(s.path).name for s in bundle.skipped] == ["broken.jpg"]
    assert json.loads(store.read_text()) == content  # rebuilt, with the same verdicts
    decodes.clear()
    _load(root, cache)
    assert decodes == []


def test_another_folder_or_max_pixels_gets_its_own_manifest(tmp_path):
    root, cache = _folder(tmp_path), tmp_path / "cache"
    stores = {ScanManifest.open(cache, folder, pixels).store for folder in (root, root / "cats") for pixels in (10**6, 10**7)}
    assert len(stores) == 4 and all(store.parent == cache for store in stores)


def test_an_unwritable_store_costs_a_full_scan_never_the_run(tmp_path, decodes):
    root = _folder(tmp_path)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    manifest = ScanManifest.open(blocker, root, 1000)
    records = records_module.folder_records(root)[0]["train"]
    kept, skipped = records_module.drop_bad_files(records, manifest=manifest)
    manifest.save()  # cannot mkdir under a file: ignored
    assert len(kept) == 6 and len(skipped) == 1 and manifest.rechecked == 7
