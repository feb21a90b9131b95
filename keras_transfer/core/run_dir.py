"""The run folder's layout, owned in one place: where a run keeps its config, labels, model and plots.

A run folder written by `keras-transfer train` (or `keras_transfer.runs.fit`) holds:

    config.yaml        the validated configuration the run trained with
    labels.txt         one class name per line (a regression run: its target's name)
    split.json         the exact split, for --resume and evaluate
    data_report.json   counts per split and skipped files; data_health.json: duplicates, leaks
    model.keras        the trained model (no optimizer): plain keras.saving.load_model reads it
    metrics.json       scores per split; history.json: every epoch, with its stage and rate
    checkpoints/       the last epochs, for --resume; tensorboard/: one folder per stage
    plots/             training curves, confusion matrix, mistakes, Grad-CAM
    mistakes.csv       the misclassified images; report.html: all of it on one page
    export/            SavedModel versions, .keras, TFLite, ONNX, export_report.json

Every module that reads or writes a run asks a `RunDir` for the path, so the layout is stated
once, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from keras_transfer.core.files import read_labels


@dataclass(frozen=True)
class RunDir:
    """One run folder: the path of each file a run writes, and the readers of its labels and model."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    config_path = property(lambda self: self.path / "config.yaml")
    labels_path = property(lambda self: self.path / "labels.txt")
    split_path = property(lambda self: self.path / "split.json")
    data_report_path = property(lambda self: self.path / "data_report.json")
    data_health_path = property(lambda self: self.path / "data_health.json")
    model_path = property(lambda self: self.path / "model.keras")
    metrics_path = property(lambda self: self.path / "metrics.json")
    history_path = property(lambda self: self.path / "history.json")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    tensorboard_dir = property(lambda self: self.path / "tensorboard")
    plots_dir = property(lambda self: self.path / "plots")
    mistakes_path = property(lambda self: self.path / "mistakes.csv")
    report_path = property(lambda self: self.path / "report.html")
    export_dir = property(lambda self: self.path / "export")
    exported_keras_path = property(lambda self: self.export_dir / "model.keras")
    exported_labels_path = property(lambda self: self.export_dir / "labels.txt")
    saved_model_dir = property(lambda self: self.export_dir / "saved_model")

    def plot(self, name: str) -> Path:
        """The path of the figure `name` (e.g. "confusion_matrix.png") in the run's plots folder."""
        return self.plots_dir / name

    def is_finished(self) -> bool:
        """True when the run has written its model (a run killed before its end has not)."""
        return self.model_path.is_file()

    def labels(self) -> list[str]:
        """The run's class names (a regression run: its one target name), checked line by line."""
        return read_labels(self.labels_path)

    def load_model(self, *, compile: bool = True):
        """The run's trained Keras model, loaded with Keras's safe mode after the archive's member
        sizes are checked (nothing is inflated without a bound); a folder that is not a finished run
        is one FileNotFoundError naming it."""
        from keras_transfer.core import layers  # noqa: F401  (registers the toolkit's layers with Keras)
        from keras_transfer.core.archives import load_keras_model

        if not self.is_finished():
            raise FileNotFoundError(f"{self.path} has no model.keras: is it a finished keras_transfer run?")
        return load_keras_model(self.model_path, compile=compile)
