"""Where a split's decoded pixels are cached: in memory, or in a disk file named by what it holds.

A disk cache is read back by any later pipeline whose key matches, in this run or another, so the
key must pin down everything that decides the cached examples and their order: the files (path,
size, modification time) or the array bytes, the labels, the image size and resize policy, and
whether the examples were written in their own order or a seeded shuffle. A coarser key once
handed the shuffled training order to an unshuffled pipeline, pairing features with wrong labels.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CACHE_MODES = ("auto", "memory", "disk", "none")
MEMORY_CACHE_LIMIT = 2 << 30  # bytes of uint8 pixels kept in RAM under cache: auto
_KEY_VERSION = 2  # bumped whenever the key's meaning changes, so old cache files are never read


def cache_mode(split, config) -> str:
    """The cache a split gets: `config.cache`, or for `auto` memory if its pixels fit, else disk."""
    if config.cache != "auto":
        return config.cache
    if split.tfds is not None:
        return "none"
    height, width = config.image_size
    return "memory" if len(split) * height * width * 3 < MEMORY_CACHE_LIMIT else "disk"


def cache(ds, split, config, name: str, order: Any):
    """Cache the decoded dataset `ds` of `split` by `config.cache`; `order` tags how it was ordered.

    `order` is "in order" for an unshuffled pipeline and ("shuffled", seed) for a training one: the
    two hold the same examples in different orders, so they never share a file.
    """
    mode = cache_mode(split, config)
    if mode == "none":
        return ds
    if mode == "memory":
        return ds.cache()
    folder = Path(config.cache_dir or Path(tempfile.gettempdir()) / "keras_transfer_cache")
    folder.mkdir(parents=True, exist_ok=True)
    return ds.cache(str(folder / f"{name}_{cache_key(split, config, order)}"))


def cache_key(split, config, order: Any) -> str:
    """A digest of everything that decides a split's cached examples and their order (see the module doc)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((_KEY_VERSION, order, tuple(config.image_size), config.resize, config.source,
                        config.split, config.data_dir)).encode())
    if split.tfds is None:
        labels = np.ascontiguousarray(split.labels)
        digest.update(repr((labels.dtype.str, labels.shape)).encode())
        digest.update(labels.tobytes())
    if split.paths is not None:
        for path in split.paths:
            digest.update(repr((path, _file_stamp(path))).encode())
    elif split.images is not None:
        images = np.ascontiguousarray(split.images)
        digest.update(repr((images.dtype.str, images.shape)).encode())
        digest.update(images)  # the bytes themselves (no copy): equal lengths are not equal data
    return digest.hexdigest()


def _file_stamp(path: str) -> tuple[int, int]:
    """Size and modification time: a rewritten file gets a new key without hashing every image."""
    try:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return -1, -1
