"""Atomic, verified checkpoints of a staged run, so an interrupted run continues where it stopped.

After every epoch the model weights, the optimizer's variables, the early-stopping state (best
weights included) and the run state (stage, epoch, history) go into a fresh folder that is renamed
into place, and a one-line `LATEST` pointer is replaced atomically. The last two checkpoints are
kept. On resume every file of a checkpoint is read and checked before it is trusted; a damaged
one (a truncated `.npz`, an empty `state.json`) is reported and the previous intact one is used.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from keras_transfer.core.files import atomic_folder, atomic_write_text

_ARRAYS = ("model.npz", "optimizer.npz", "best.npz")


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint: the run state and every array it holds."""

    folder: Path
    state: dict[str, Any]
    arrays: dict[str, list[np.ndarray]]

    def restore_model(self, model) -> None:
        """Load the checkpoint's weights into `model`, rebuilt from the run's own config.

        Weights are stored by position; the checkpoint also names each one (`weight_paths`), so
        a model whose weights come in another order (a Keras upgrade, an edited config) is
        refused instead of loaded silently into the wrong variables.
        """
        values = self.arrays["model.npz"]
        if len(values) != len(model.weights) or any(tuple(v.shape) != tuple(w.shape) for v, w in zip(values, model.weights)):
            raise RuntimeError(f"checkpoint {self.folder} does not match the model built from the run's config.yaml")
        saved = self.state.get("weight_paths")
        if saved is not None:  # checkpoints written before weight_paths existed load by position
            now = [w.path for w in model.weights]
            wrong = next((i for i, (a, b) in enumerate(zip(saved, now)) if _weight_key(a) != _weight_key(b)), None)
            if wrong is not None:
                raise RuntimeError(f"checkpoint {self.folder} holds weight {wrong} as {saved[wrong]!r}, and the model "
                                   f"built from the run's config.yaml has {now[wrong]!r} there (another Keras version, "
                                   "or an edited config?); resume with what wrote it, or start a new run")
        for variable, value in zip(model.weights, values):
            variable.assign(value)

    def optimizer_variables(self) -> list[np.ndarray] | None:
        """The optimizer's variables at the end of the checkpoint's epoch, or None between stages."""
        return self.arrays.get("optimizer.npz")

    def best_weights(self) -> list[np.ndarray] | None:
        """Early stopping's best weights so far in the interrupted stage, if it kept any."""
        return self.arrays.get("best.npz")


def _weight_key(path: str) -> str:
    """A weight's path without auto-numbering (`dense_3/kernel` -> `dense/kernel`): the numbers
    depend on what the process built before, the rest does not."""
    return re.sub(r"_\d+(?=/|$)", "", path)


def _savez(path: Path, values) -> None:
    np.savez(path, **{f"v{i}": np.asarray(v) for i, v in enumerate(values)})


def _loadz(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"v{i}"] for i in range(len(archive.files))]


def _read(folder: Path) -> Checkpoint:
    """Read and verify every file of a checkpoint folder; raise ValueError saying what is wrong."""
    name = "state.json"
    try:
        state = json.loads((folder / name).read_text())
        if not isinstance(state, dict) or "stage_index" not in state:
            raise ValueError("it holds no run state")
        arrays = {}
        for name in _ARRAYS:
            if (folder / name).is_file():
                arrays[name] = _loadz(folder / name)
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as error:
        raise ValueError(f"{name}: {type(error).__name__}: {error}") from None
    if "model.npz" not in arrays:
        raise ValueError("model.npz is missing")
    return Checkpoint(folder, state, arrays)


class Checkpointer:
    """Saves checkpoints of a run under `folder` and finds the latest intact one."""

    def __init__(self, folder: Path, keep: int = 2):
        self.folder = Path(folder)
        self.keep = keep

    def save(self, model, optimizer, state: dict[str, Any], best_weights: list | None = None) -> Path:
        """Write weights, optimizer variables (if built), best weights (if any) and `state` atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{int(state['global_epoch']):04d}-{state['stage_index']}-{state['stage_epoch']}"

        def write(tmp: Path) -> None:
            tmp.mkdir()
            # An ordered .npz of the weights: ~6x faster than Keras's .weights.h5 walk (0.035 s vs
            # 0.22 s for Lite0), and always reloaded into the same model rebuilt from the run's config.
            _savez(tmp / "model.npz", (v.numpy() for v in model.weights))
            if optimizer is not None and optimizer.built:
                _savez(tmp / "optimizer.npz", (v.numpy() for v in optimizer.variables))
            if best_weights is not None:
                _savez(tmp / "best.npz", best_weights)
            named = {**state, "weight_paths": [v.path for v in model.weights]}
            (tmp / "state.json").write_text(json.dumps(named))

        final = atomic_folder(self.folder / name, write)
        atomic_write_text(self.folder / "LATEST", name + "\n")
        self._prune(keep=name)
        return final

    def latest(self, log: Callable[[str], None] = print) -> Checkpoint | None:
        """The newest intact checkpoint (LATEST's, else the one before it), or None when there is none.

        A damaged checkpoint is reported through `log` and skipped; if every checkpoint is
        damaged, RuntimeError says so and how to start over.
        """
        pointer = self.folder / "LATEST"
        candidates = sorted((p for p in self.folder.glob("ckpt-*") if p.is_dir()), reverse=True)
        if pointer.is_file():
            named = self.folder / pointer.read_text().strip()
            candidates = [named] + [c for c in candidates if c != named]
        problems = []
        for folder in candidates:
            try:
                checkpoint = _read(folder)
            except ValueError as error:
                problems.append(f"{folder.name}: {error}")
                log(f"checkpoint {folder} is damaged ({error}); trying the previous one")
                continue
            return checkpoint
        if problems:
            raise RuntimeError(f"no intact checkpoint in {self.folder} ({'; '.join(problems)}); "
                               "start the run again without --resume, in a new --output-dir")
        return None

    def _prune(self, keep: str) -> None:
        done = sorted(p for p in self.folder.glob("ckpt-*") if p.name != keep)
        for old in done[: max(0, len(done) - (self.keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.folder.glob(".*tmp-*"):  # left by a run killed mid-write
            shutil.rmtree(stale, ignore_errors=True)
