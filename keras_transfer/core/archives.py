"""Loading `.keras` files that someone else made: sizes checked before Keras inflates anything.

A `.keras` file is a zip archive. Keras reads its `config.json` and `metadata.json` into memory
whole and inflates its weights, so a 2 MB file whose members inflate to gigabytes would fill the
memory or the disk before anything could say why. Python's zip reader never inflates a member
past the size the archive declares for it (more data is a CRC error), so the declared sizes are
a true bound, and checking them costs a read of the central directory. Together with Keras's
`safe_mode=True` (no Python lambdas run from the file), this is what loading trusts.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

MAX_CONFIG_BYTES = 64 << 20  # config.json / metadata.json; a Lite0 classifier's config is 151 KB
MAX_ARCHIVE_BYTES = 8 << 30  # every member inflated; ConvNeXtXLarge's weights, the largest, are 1.4 GB
_READ_WHOLE = ("config.json", "metadata.json")


def check_keras_archive(path: str | os.PathLike) -> None:
    """Raise ValueError naming `path` when a `.keras` archive declares members too large to load.

    Files that are not zip archives (a legacy `.h5`) are left to their loader, which reads
    nothing it has not been told the size of.
    """
    path = Path(path)
    if path.is_dir() or not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    total = 0
    for member in members:
        total += member.file_size
        if member.filename in _READ_WHOLE and member.file_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: its {member.filename} inflates to {member.file_size:,} bytes (a real one is "
                             f"under {MAX_CONFIG_BYTES >> 20} MB); refused before reading it")
    if total > MAX_ARCHIVE_BYTES:
        raise ValueError(f"{path}: its members inflate to {total:,} bytes, over the {MAX_ARCHIVE_BYTES >> 30} GB "
                         "any model here needs; refused before reading it")


def load_keras_model(path: str | os.PathLike, **kwargs):
    """`keras.saving.load_model(path, safe_mode=True, **kwargs)` after `check_keras_archive(path)`."""
    import keras

    check_keras_archive(path)
    return keras.saving.load_model(path, **{"safe_mode": True, **kwargs})
