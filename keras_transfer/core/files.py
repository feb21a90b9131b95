"""Atomic writes for everything the toolkit leaves on disk, and the `labels.txt` format.

Run directories, checkpoints, exports and weight caches must survive a kill at any moment: a
reader sees the old file or the new one, never half of one. Temporary files are made private by
`tempfile`; before the rename they get the permissions an ordinary `open()` would have given
under the process umask, so a team can read a shared run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(path: Path, *, folder: bool) -> None:
    """Give a temporary file or folder the permissions a plain create would have had."""
    mode = (0o777 if folder else 0o666) & ~_umask()
    if folder:
        for root, dirs, files in os.walk(path):
            os.chmod(root, mode)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~_umask())
    else:
        os.chmod(path, mode)


def atomic_write_bytes(path: str | Path, content: bytes) -> Path:
    """Write `content` to `path` through a temporary file, fsync and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        _publish(Path(tmp), folder=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode())


@contextmanager
def terminate_cleanly():
    """While the block runs, SIGTERM raises SystemExit (status 143) instead of killing the process.

    `kill` (and job schedulers ending a job) send SIGTERM, whose default action skips every
    `finally`: an export stopped that way left `.tmp-*` files in `export/`. Raised as an
    exception, it lets the temporary files be removed on the way out. Only the main thread can
    take signals, and a handler someone else installed (a notebook, a server) is left alone.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def atomic_file(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Let `write(tmp_path)` produce a file (e.g. `model.save`), then rename it to `target`.

    The temporary name ends with `target`'s whole name, because writers such as Keras choose the
    format from its suffixes (`.keras`, `.weights.h5`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with terminate_cleanly():
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=f".{target.name}")
        os.close(fd)
        tmp = Path(name)
        try:
            write(tmp)
            _publish(tmp, folder=False)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def atomic_folder(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Let `write(tmp_dir)` fill a new folder, then replace `target` with it; on failure remove it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with terminate_cleanly():
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            shutil.rmtree(tmp)  # writers such as tf.saved_model.save want to create the folder
            write(tmp)
            _publish(tmp, folder=True)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return target


def make_dir(path: str | Path) -> Path:
    """`mkdir -p` that leaves the permissions to the umask (Path.mkdir's default mode does too)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_labels(path: str | os.PathLike, class_names: Iterable[str]) -> Path:
    """Write `labels.txt`: one class name per line, in class-index order.

    A name that would not read back from a plain line (a line break or other control character
    in it, spaces at either end, empty, a leading `"`, bytes that are not UTF-8) is written as a
    JSON string on its line, e.g. `"  two spaces"`, so every name a folder can have round-trips;
    every other name is written as it is, and the file stays readable. `read_labels` reads both.
    """
    return atomic_write_text(path, "".join(f"{_label_line(name)}\n" for name in class_names))


def _label_line(name: str) -> str:
    if name and name == name.strip() and name.isprintable() and not name.startswith('"'):
        return name
    return json.dumps(name, ensure_ascii=True)  # pure ASCII: no reader can split or mis-decode it


def is_regression(labels: list[str]) -> bool:
    """Whether a `labels.txt` belongs to a regression model: it names the one target (a classifier,
    binary ones included, always names at least two classes)."""
    return len(labels) == 1


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read a `labels.txt` written by `write_labels`: the class names in class-index order.

    The file is UTF-8 and split at `\\n` only; a `\\r` before it (a file edited on Windows) and
    blank lines (which `write_labels` never writes) are dropped. A line that is a JSON string is
    that string; any other line is the name as it stands.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start}): is it a labels.txt?") from None
    names = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line:
            continue
        if line.startswith('"') and line.endswith('"') and len(line) > 1:
            try:
                name = json.loads(line)
            except ValueError:
                name = None
            if isinstance(name, str):
                names.append(name)
                continue
        names.append(line)
    return names


def check_label_count(labels: list[str], outputs: int, where: str | os.PathLike) -> None:
    """Raise ValueError unless the class names `labels` (read from `where`) fit a model with `outputs` outputs.

    One name per output (a regression model's one output names its target), or two names for a
    binary classifier's one sigmoid output. A wrong `labels.txt` once gave an IndexError
    traceback, or, with one name left, made a 5-class model print one number as a regression.
    """
    if len(labels) == outputs or (outputs == 1 and len(labels) == 2):
        return
    expected = "1 (a regression target) or 2 (a binary classifier)" if outputs == 1 else str(outputs)
    raise ValueError(f"{where} names {len(labels)} class{'es' if len(labels) != 1 else ''} but the model has "
                     f"{outputs} output{'s' if outputs != 1 else ''}; it needs {expected}: is it the labels.txt "
                     "of another run?")


def check_writable(folder: str | Path, *, purpose: str = "write to",
                   hint: str = "choose a writable --output-dir") -> None:
    """Raise a one-line PermissionError unless `folder` (or the nearest existing folder it would be
    created in) accepts a new file, tried for real: permission bits lie to root and to read-only mounts.

    Called before any expensive work, so a read-only output folder is a one-line error at start-up
    rather than a traceback after the data was loaded and the model built. The message reads
    "cannot {purpose} {folder}: ..., {hint}".
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    where = "" if probe == folder else f" (it would be created in {probe})"
    if not probe.is_dir():
        raise PermissionError(f"cannot {purpose} {folder}{where}: {probe} is not a folder; {hint}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:
        raise PermissionError(f"cannot {purpose} {folder}{where}: {probe} is not writable ({error.strerror}); "
                              f"{hint}") from None


class FolderBusyError(RuntimeError):
    """Another process holds the lock of a run directory."""


@contextmanager
def claimed_folder(folder: str | Path):
    """Hold an exclusive advisory lock on `folder` (created if needed) while the block runs.

    A second process claiming the same folder fails at once with FolderBusyError instead of
    writing a mixed run. If the block fails and the folder was created here and holds nothing but
    the lock, it is removed again, with the empty parent folders created for it (`runs/`): a run
    refused at start-up leaves nothing behind.
    """
    import fcntl

    folder = Path(folder)
    created = not folder.exists()
    new_parents = [p for p in folder.parents if not p.exists()]  # runs/ of runs/x, made here too
    check_writable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    stream = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            owner = stream.read().strip() or "another process"
            raise FolderBusyError(f"{folder} is in use by {owner}; wait for that run to finish or choose "
                                  "another --output-dir") from None
        stream.seek(0)
        stream.truncate()
        stream.write(f"pid {os.getpid()}\n")
        stream.flush()
        ok = False
        try:
            yield folder
            ok = True
        finally:
            # The lock file stays (unlinking it would let a waiting and a new process lock two
            # different files); flock itself is released when the stream closes.
            if not ok and created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
                shutil.rmtree(folder, ignore_errors=True)
                for parent in new_parents:  # innermost first; a parent something else filled stays
                    try:
                        parent.rmdir()
                    except OSError:
                        break
    finally:
        stream.close()


LOCK_NAME = ".lock"


def optional_output(what: str, log: Callable[[str], None], draw: Callable[..., object], *args, **kwargs) -> None:
    """Write one optional output of a finished run (a figure, the report); a failure is one logged
    line naming `what`, never a lost run. MemoryError and interrupts still stop the process."""
    try:
        draw(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - a picture must never cost the trained model
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        log(f"warning: {what} not written ({type(error).__name__}: {reason}); model.keras and metrics.json are")
