"""Where a split's decoded pixels are cached: in memory, or in a disk file named by what it holds.

A disk cache is read back by any later pipeline whose key matches, in this run or another, so the
key must pin down everything that decides the cached examples and their order: the files (path,
size, modification time) or the array bytes, the labels, the image size and resize policy, and
whether the examples were written in their own order or a seeded shuffle. A coarser key once
handed the shuffled training order to an unshuffled pipeline, pairing features with wrong labels.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the shared prefix is used as before
    fcntl = None

MEMORY_CACHE_LIMIT = 2 << 30  # bytes of uint8 pixels kept in RAM under cache: auto
# Bumped whenever the key's meaning changes, so old cache files are never read (3: images.DECODER_VERSION
# 2; 4: disk caches hold pixels only, the labels come from the scan).
_KEY_VERSION = 4
_OWNED: dict[str, Any] = {}  # shared prefixes this process writes, with their locked `.owner` files


def cache_mode(split, config, examples: int | None = None) -> str:
    """The cache a split gets: `config.cache`, or for `auto` memory if the pixels fit, else disk.

    `examples` counts every split that shares the memory budget (a bundle's train, val and test
    are cached side by side); by default only `split`'s own. Three splits each under the limit
    once held more than the limit together.
    """
    if config.cache != "auto":
        return config.cache
    if split.tfds is not None:
        return "none"
    height, width = config.image_size
    count = len(split) if examples is None else max(examples, len(split))
    return "memory" if count * height * width * 3 < MEMORY_CACHE_LIMIT else "disk"


def cache(ds, split, config, name: str, order: Any, examples: int | None = None):
    """Cache the decoded dataset `ds` of `split` by `config.cache`; `order` tags how it was ordered.

    `order` is "in order" for an unshuffled pipeline and ("shuffled", seed) for a training one: the
    two hold the same examples in different orders, so they never share a file. `examples`: as
    in `cache_mode`.
    """
    mode = cache_mode(split, config, examples)
    if mode == "none":
        return ds
    if mode == "memory":
        return ds.cache()
    folder = private_folder(cache_folder(config), default=not config.cache_dir)
    return ds.cache(disk_cache_prefix(folder / f"{name}_{cache_key(split, config, order)}"))


def cache_folder(config) -> Path:
    """The disk cache's folder: `config.cache_dir`, else the user's own `$KT_CACHE_DIR/data` or
    `~/.cache/keras_transfer/data`.

    The pre-scan's manifest (`manifest.py`) lives there too, so one setting moves both. The
    default was once a fixed folder in the shared temp folder, with names anyone could work
    out: a cache planted there by another user (every label 0) was trained on as is.
    """
    if config.cache_dir:
        return Path(config.cache_dir)
    base = os.environ.get("KT_CACHE_DIR")
    return Path(base) / "data" if base else Path.home() / ".cache" / "keras_transfer" / "data"


def private_folder(folder: Path, *, default: bool = True) -> Path:
    """Create `folder` readable by its owner only (0700) if it is absent; return it.

    The default cache folder must be this user's and closed to others (it is made so if it is
    this user's); a `data.cache_dir` of the user's choosing is taken as it is, and what is read
    from it is checked file by file (`trusted`).
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if default:
        info = folder.stat()
        if _uid() is not None and info.st_uid != _uid():
            raise PermissionError(f"the cache folder {folder} belongs to another user; set data.cache_dir (or "
                                  "KT_CACHE_DIR) to a folder of your own")
        if info.st_mode & 0o077:
            folder.chmod(0o700)
    return folder


def trusted(path: str | os.PathLike) -> bool:
    """Whether a cache file may be read: it is this user's, and not writable by every user.

    A file another user wrote (or anyone could have rewritten) into a shared `cache_dir` is never
    read; this run writes its own beside it. (Group-writable files are read: a umask of 002 makes
    every file so, and the default folder is closed to the group anyway.)
    """
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (_uid() is None or info.st_uid == _uid()) and not info.st_mode & stat.S_IWOTH


def _uid() -> int | None:
    """This process's user id; None where there is none (Windows: no ownership checks there)."""
    return os.getuid() if hasattr(os, "getuid") else None


def disk_cache_prefix(prefix: Path) -> str:
    """The file prefix this process may cache under: the shared `prefix`, or a private one beside it.

    TensorFlow writes a cache behind a lockfile and refuses to start while one exists; a killed
    run leaves its lockfile behind, and every later run with the same data then died at its first
    epoch, as did two runs caching the same data at once. So a process that writes the shared
    cache holds an advisory lock (`prefix.owner`, released by the OS when the process ends): with
    the lock, leftovers of a dead writer are removed; without it, another live process is writing,
    and this one caches under a private prefix, removed when it exits. A finished cache (its
    `.index` exists) is read by everyone without any lock.
    """
    index = Path(f"{prefix}.index")
    if index.exists() and not all(trusted(p) for p in (index, *prefix.parent.glob(f"{prefix.name}.data-*"))):
        return _private(prefix)  # another user's files (or writable by others): never read
    if index.exists() or fcntl is None:
        return str(prefix)
    if str(prefix) in _OWNED:
        return str(prefix)
    handle = open(f"{prefix}.owner", "a")  # noqa: SIM115  (held open: the lock lives as long as this process)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return _private(prefix)
    _OWNED[str(prefix)] = handle
    stale = (*prefix.parent.glob(f"{prefix.name}_*.lockfile"), *prefix.parent.glob(f"{prefix.name}_*.tempstate*"))
    for leftover in stale:
        leftover.unlink(missing_ok=True)  # a dead writer's: nobody else holds the lock
    for private in prefix.parent.glob(f"{prefix.name}.pid*"):
        if not _alive(private.name[len(prefix.name) + 4:].split(".")[0].split("_")[0]):
            private.unlink(missing_ok=True)  # a killed process's private cache, never removed at its exit
    return str(prefix)


def _private(prefix: Path) -> str:
    """A prefix of this process's own beside `prefix`, removed when the process exits."""
    private = f"{prefix}.pid{os.getpid()}"
    if private not in _OWNED:
        _OWNED[private] = None
        atexit.register(_remove, private)
    return private


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _remove(private: str) -> None:
    for path in Path(private).parent.glob(f"{Path(private).name}*"):
        path.unlink(missing_ok=True)


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
