"""What every finished run writes about itself: error analysis, Grad-CAM and `report.html`.

`write_run_insights` is the one call at the end of a run (fine-tuning or feature extraction). It makes one
extra pass over the test split (validation when there is no test split), keeping only the worst
mistakes' and best hits' pixels, then explains a handful of them with Grad-CAM and renders the
run directory into a self-contained page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keras_transfer.interpret.gradcam import GradCAM, NoGradientError, plot_gradcam
from keras_transfer.interpret.mistakes import (
    Predictions,
    collect_predictions,
    write_error_analysis,
)
from keras_transfer.interpret.report_html import write_report_html


def explained_examples(predictions: Predictions, class_names: list[str], count: int = 4) -> tuple[list[int], list[str]]:
    """Indices of the `count` worst mistakes and `count` surest hits kept in `predictions`, with titles."""
    p, y = predictions.probabilities, predictions.labels
    kept = np.array(sorted(predictions.images), dtype=int)
    if not len(kept):
        return [], []
    wrong = kept[p[kept].argmax(axis=1) != y[kept]]
    right = kept[p[kept].argmax(axis=1) == y[kept]]
    wrong = wrong[np.argsort(p[wrong, y[wrong]])][:count]
    right = right[np.argsort(-p[right, y[right]])][:count]
    indices = [int(i) for i in (*wrong, *right)]
    titles = [("WRONG " if p[i].argmax() != y[i] else "") + f"true: {class_names[y[i]]}\npred: "
              f"{class_names[p[i].argmax()]} {p[i].max():.2f}" for i in indices]
    return indices, titles


def write_gradcam_plot(model, predictions: Predictions, class_names: list[str], path: str | Path,
                       *, block: str | None = None, count: int = 4) -> Path | None:
    """Grad-CAM overlays of up to `count` mistakes and `count` correct examples; None if none kept."""
    indices, titles = explained_examples(predictions, class_names, count)
    if not indices:
        return None
    images = np.stack([predictions.images[i] for i in indices])
    cam = GradCAM(model, block)
    heatmaps = cam(images, predictions.probabilities[indices].argmax(axis=1))
    return plot_gradcam(images, heatmaps, titles, path,
                        suptitle=f"Grad-CAM on {cam.layer.name} for the predicted class")


def write_run_insights(run_dir: str | Path, model, data, metrics: dict[str, Any], history: list[dict[str, Any]],
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write mistakes.csv, plots/misclassified.png, plots/gradcam.png and report.html into `run_dir`.

    Error analysis and Grad-CAM need a single-label classifier and a validation or test split;
    without them (regression, multilabel, train-only data) only report.html is written. Returns
    what was written and how long it took, so benchmarks can weigh the cost.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    split = next((s for s in ("test", "val") if s in metrics and "accuracy" in metrics[s]), None)
    summary: dict[str, Any] = {"split": split}
    if split is not None and data is not None and split in data.splits:
        examples = data.splits[split]
        predictions = collect_predictions(model, data.dataset(split, training=False), paths=examples.paths,
                                          images=len(examples) if examples.tfds is None else None, log=log)
        summary.update(write_error_analysis(predictions, data.class_names, run_dir, split=split))
        try:
            write_gradcam_plot(model, predictions, data.class_names, run_dir / "plots" / "gradcam.png")
        except NoGradientError as error:  # a kNN head: the run is fine, there is just no map to draw
            log(f"no Grad-CAM plot: {error}")
    write_report_html(run_dir)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    if split is not None:
        log(f"{summary.get('mistakes', 0)} {split} mistakes in mistakes.csv; report: {run_dir / 'report.html'} "
            f"({summary['seconds']:.1f} s)")
    return summary
