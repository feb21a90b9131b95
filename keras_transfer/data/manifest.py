"""A manifest of the data pre-scan, so a rerun decodes only the files that changed.

The pre-scan decodes every file once (see `records.py`): 8.7 s for 43,170 small JPEGs, roughly an
hour per million full-size photos, paid again on every run and every `--resume`. The manifest
records, per file, its size and modification time (ns) and what the scan found: the skip reason,
or the image's (height, width). A later scan re-checks only files whose (size, mtime_ns) differ
or that are new; removed files drop out. It is JSON (never pickle), written atomically beside the
data cache, and carries a version and the folder and `max_pixels` it describes: a manifest that
does not parse, has another version, belongs to another folder or another `max_pixels`, or is
another user's file, or holds a reason that is not one line of printable text (our reasons are),
is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_VERSION = 1
MAX_REASON = 300  # characters; the longest reason the scan writes is about 120


@dataclass
class ScanManifest:
    """The scan results of one data folder (or one CSV's images) under one `max_pixels`.

    `entries` maps a path relative to `base` to [size, mtime_ns, reason, height, width] (reason
    None for a usable image, height and width None for a skipped one). `store` is the JSON file
    it is read from and saved to (None: kept in memory only). `rechecked` and `reused` count this
    scan's files decoded and taken from the manifest.
    """

    identity: str
    base: str
    max_pixels: int
    given: str = ""
    store: Path | None = None
    entries: dict[str, list] = field(default_factory=dict)
    seen: dict[str, list] = field(default_factory=dict)
    rechecked: int = 0
    reused: int = 0

    @classmethod
    def open(cls, folder: Path | None, source: Path, max_pixels: int) -> ScanManifest:
        """The manifest for `source` (a data folder or CSV file) stored in `folder`, empty if absent or unusable."""
        source = Path(source)
        identity = str(source.resolve())
        base = os.path.abspath(source if source.is_dir() else source.parent)
        key = hashlib.blake2b(repr((MANIFEST_VERSION, identity, max_pixels)).encode(), digest_size=12).hexdigest()
        store = Path(folder) / f"scan_{key}.json" if folder is not None else None
        given = str(source if source.is_dir() else source.parent)
        manifest = cls(identity, base, int(max_pixels), given, store)
        if store is not None:
            manifest.entries = _read_entries(store, identity, int(max_pixels))
        return manifest

    def key(self, path: str) -> str:
        """`path` relative to the manifest's base folder (the entries' key)."""
        for prefix in (self.given + os.sep, self.base + os.sep):
            if path.startswith(prefix) and ".." not in path:  # the common case, without relpath's cost
                return path[len(prefix):]
        return os.path.relpath(path, self.base)

    def known(self, path: str, stat: os.stat_result) -> tuple[bool, str | None]:
        """(True, reason) if `path` is in the manifest with this size and mtime, else (False, None)."""
        key = self.key(path)
        entry = self.entries.get(key)
        if entry is None or entry[0] != stat.st_size or entry[1] != stat.st_mtime_ns:
            return False, None
        self.seen[key] = entry
        self.reused += 1
        return True, entry[2]

    def record(self, path: str, stat: os.stat_result, reason: str | None, size: tuple[int, int] | None) -> None:
        """Note that `path` (as of `stat`) was checked: skipped for `reason`, or of (height, width) `size`."""
        height, width = size if size is not None else (None, None)
        self.seen[self.key(path)] = [stat.st_size, stat.st_mtime_ns, reason, height, width]
        self.rechecked += 1

    def save(self) -> None:
        """Write the files seen in this scan (removed files drop out), atomically; only if anything changed.

        A store that cannot be written (read-only cache folder, full disk) costs the next run a
        full scan, never this run.
        """
        if self.store is None or self.seen == self.entries:
            return
        from keras_transfer.core.files import atomic_write_text

        content = {"version": MANIFEST_VERSION, "source": self.identity, "max_pixels": self.max_pixels,
                   "entries": self.seen}
        try:
            self.store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write_text(self.store, json.dumps(content, separators=(",", ":")))
        except OSError:
            pass
        self.entries = dict(self.seen)


def _read_entries(store: Path, identity: str, max_pixels: int) -> dict[str, list]:
    """The entries of `store` if it is a valid manifest of `identity` at `max_pixels`, else {}."""
    from keras_transfer.data.cache import trusted

    if not trusted(store):  # absent, or another user's: a planted "good" verdict would skip the decode
        return {}
    try:
        content = json.loads(store.read_bytes())
    except (OSError, ValueError):  # unreadable, garbage bytes, truncated JSON, bad UTF-8
        return {}
    if (not isinstance(content, dict) or content.get("version") != MANIFEST_VERSION
            or content.get("source") != identity or content.get("max_pixels") != max_pixels
            or not isinstance(content.get("entries"), dict)):
        return {}
    entries = content["entries"]
    if not all(_valid_entry(entry) for entry in entries.values()):
        return {}
    return entries


def _valid_entry(entry) -> bool:
    if not isinstance(entry, list) or len(entry) != 5:
        return False
    size, mtime, reason, height, width = entry
    ints = all(type(v) is int for v in (size, mtime))
    if reason is None:
        return ints and type(height) is int and type(width) is int
    # Reasons are our own one-line words: anything else (escape codes, pages of text) was not written here.
    return (ints and isinstance(reason, str) and reason.isprintable() and len(reason) <= MAX_REASON
            and height is None and width is None)
