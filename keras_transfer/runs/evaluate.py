"""`evaluate`: score a finished run on one split of its own data, or on other data with its classes."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from keras_transfer.core.run_dir import RunDir


@dataclass
class Evaluation:
    """What `evaluate` measured: the scores of one split, and where its figures and mistakes went."""

    run_dir: Path
    source: str
    split: str
    task: str
    labels: list[str]
    metrics: dict[str, Any]
    views: tuple[str, ...] = ()
    out: Path | None = None
    written: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)


def evaluate(run_dir: str | os.PathLike | RunDir, *, split: str | None = None, data: str | None = None,
             tta: bool = False, out: str | os.PathLike | None = None,
             log: Callable[[str], None] | None = None) -> Evaluation:
    """Score the run's model on `split` (default: test, else val) of its own recorded split, or of the
    source `data` (its own train/val/test folders, nothing carved out), with the same metrics as
    training. With `tta`, average over the views the run trained with. Classification writes its
    mistakes (`mistakes.csv`, `plots/misclassified.png`) and regression its predicted-vs-true plot
    to `out` (default RUN/evaluation/SPLIT). The pass runs on `frozen_forward` (onnxruntime for a
    large split, see `keras_transfer.forward.runtime`), which says through `log` where it ran.
    """
    from keras_transfer.config import load_config
    from keras_transfer.core.files import check_label_count
    from keras_transfer.data import load_data
    from keras_transfer.data.fingerprint import recorded_data
    from keras_transfer.forward import frozen_forward
    from keras_transfer.interpret import collect_predictions, default_views, tta_forward, write_error_analysis
    from keras_transfer.metrics import classification_metrics, plot_predicted_vs_true, regression_metrics

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.is_finished():
        raise FileNotFoundError(f"{run.path} has no model.keras: is it a finished keras_transfer run?")
    config = load_config(run.config_path)
    data_config = config.data
    if data is not None:
        data_config = dataclasses.replace(config.data, source=data, val_split=0.0, test_split=0.0,
                                          few_shot=None, balance="none")
    if data is None and run.split_path.is_file():  # the run's own split: its test images stay unseen
        bundle = recorded_data(data_config, run.split_path, task=config.model.task)
    else:
        bundle = load_data(data_config, task=config.model.task)
    labels = run.labels()
    if bundle.task == "regression" and len(labels) != 1:
        raise ValueError(f"{data_config.source} holds regression targets, and the model of {run.path} classifies "
                         f"{', '.join(labels)}")
    if bundle.class_names != labels and bundle.task != "regression":
        raise ValueError(f"the data's classes {bundle.class_names} differ from the model's {labels}")
    split = choose_split(list(bundle.splits), split, other_data=data is not None, source=data_config.source)
    model = run.load_model()
    check_label_count(labels, int(model.output.shape[-1]), run.labels_path)
    task = bundle.task
    dataset = bundle.dataset(split, training=False)
    views = tuple(default_views(config.data.augment)) if tta else ()
    images = bundle.images_in(split)
    if tta:
        forward = tta_forward(model, views)
    else:
        frozen = frozen_forward(model, images=images, log=log)
        forward = lambda x: frozen(x)[0]  # noqa: E731 - the model's one output
    out = Path(out) if out is not None else run.path / "evaluation" / (f"{split}-tta" if tta else split)
    result = Evaluation(run.path, data_config.source, split, task, labels, {}, views, out)
    if task == "regression":
        outputs, truth = _forward_all(forward, dataset)
        result.metrics = regression_metrics(outputs, truth)
        result.files["predicted_vs_true"] = out / "plots" / "predicted_vs_true.png"
        plot_predicted_vs_true(truth, outputs, result.files["predicted_vs_true"], title=f"{split} split",
                               target=labels[0])
        return result
    if task in ("multiclass", "binary"):
        predictions = collect_predictions(model, dataset, paths=bundle.splits[split].paths, predict=forward)
        outputs = predictions.probabilities if task == "multiclass" else predictions.probabilities[:, 1:]
        truth = predictions.labels
        result.written = write_error_analysis(predictions, labels, out, split=split)
        result.files.update(mistakes=out / "mistakes.csv", misclassified=out / "plots" / "misclassified.png")
    else:
        outputs, truth = _forward_all(forward, dataset)
    result.metrics = classification_metrics(outputs, truth, labels, task)
    return result


def choose_split(available: list[str], requested: str | None, *, other_data: bool, source: str) -> str:
    """The split to evaluate: the requested one if the data has it, refused in one line if not; by
    default test, else val, else all of it (`load_data` calls a source without splits train)."""
    from keras_transfer.core.names import unknown_name_message

    if requested is None:
        return next((s for s in ("test", "val") if s in available), available[0])
    if requested not in available:
        if other_data:
            raise ValueError(f"--data {source} has no {requested!r} split (it has: {', '.join(available)}); "
                             "omit --split to evaluate all of it, or give it train/ val/ test/ subfolders")
        raise ValueError(unknown_name_message("--split", requested, available))
    return requested


def _forward_all(forward, dataset) -> tuple[np.ndarray, np.ndarray]:
    outputs, truth = zip(*[(np.asarray(forward(x)), np.asarray(y)) for x, y in dataset])
    return np.concatenate(outputs), np.concatenate(truth)
