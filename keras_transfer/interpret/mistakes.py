"""Error analysis: which examples the model gets wrong, how confidently, and what they look like.

One pass over a split gives every example's probabilities; the mistakes are ranked by their loss
(-log of the probability given to the true class), so the top of `mistakes.csv` and the grid in
`plots/misclassified.png` are the confident errors worth a look: label noise, look-alike classes,
unreadable files. Only the worst few images are kept in memory, never the whole split.
"""

from __future__ import annotations

import csv
import heapq
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_transfer.core.files import atomic_write_text
from keras_transfer.metrics import two_column


@dataclass
class Mistake:
    """One misclassified example: its index in the split, labels, probabilities, loss and file."""

    index: int
    true: str
    predicted: str
    probability: float  # of the predicted class
    true_probability: float
    loss: float
    path: str = ""


@dataclass
class Predictions:
    """A split's probabilities [N, C] (two columns for a binary head), true class indices [N],
    and the pixels of a few examples (the worst mistakes and the most confident hits) by index."""

    probabilities: np.ndarray
    labels: np.ndarray
    images: dict[int, np.ndarray]
    paths: list[str] | None = None

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def losses(self) -> np.ndarray:
        true = self.probabilities[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(true, 1e-12, 1.0))


def collect_predictions(model, dataset, *, keep: int = 16, paths: Sequence[str] | None = None,
                        predict=None, images: int | None = None, log=None) -> Predictions:
    """Run `model` (or `predict(x)`, e.g. test-time augmentation) over a (pixels, labels) dataset.

    Keeps the pixels (uint8) of the `keep` highest-loss mistakes and the `keep` most confident
    correct examples, for the mistakes grid and the Grad-CAM plot; everything else is dropped as
    the pass goes, so memory does not grow with the split. Without `predict` the pass is
    `frozen_forward(model, images=images, log=log)`: the model converted for the run's
    evaluation, if it was, is reused.
    """
    from keras_transfer.forward import frozen_forward

    if predict is None:
        frozen = frozen_forward(model, images=images, log=log)
        predict = lambda x: frozen(x)[0]  # noqa: E731
    step = predict
    worst: list[tuple[float, int, np.ndarray]] = []  # min-heaps of (score, index, pixels)
    best: list[tuple[float, int, np.ndarray]] = []
    probabilities, labels, seen = [], [], 0
    for x, y in dataset:
        p = two_column(np.asarray(step(x)))
        y = np.asarray(y).astype(int).reshape(-1)
        true_p = p[np.arange(len(y)), y]
        pixels = np.asarray(x)
        for i in range(len(y)):
            wrong = p[i].argmax() != y[i]
            heap, score = (worst, -np.log(max(true_p[i], 1e-12))) if wrong else (best, true_p[i])
            item = (float(score), seen + i, np.clip(pixels[i], 0, 255).astype(np.uint8))
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        probabilities.append(p)
        labels.append(y)
        seen += len(y)
    images = {index: image for _, index, image in worst + best}
    return Predictions(np.concatenate(probabilities), np.concatenate(labels), images,
                       list(paths) if paths is not None else None)


def find_mistakes(predictions: Predictions, class_names: Sequence[str]) -> list[Mistake]:
    """Every misclassified example, worst (highest loss) first."""
    p, y = predictions.probabilities, predictions.labels
    predicted, losses = predictions.predicted, predictions.losses
    wrong = np.flatnonzero(predicted != y)
    order = wrong[np.argsort(-losses[wrong], kind="stable")]
    paths = predictions.paths
    return [Mistake(int(i), class_names[y[i]], class_names[predicted[i]], float(p[i, predicted[i]]),
                    float(p[i, y[i]]), float(losses[i]), paths[i] if paths else "") for i in order]


def mistakes_csv(mistakes: Sequence[Mistake]) -> str:
    """The mistakes as CSV text: file, index, true, predicted, probability, true_probability, loss.

    Names that a spreadsheet would run as a formula are neutralised (see `spreadsheet_safe`).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; it also quotes a CR or LF inside a name
    writer.writerow(["file", "index", "true", "predicted", "probability", "true_probability", "loss"])
    for m in mistakes:
        writer.writerow([spreadsheet_safe(m.path), m.index, spreadsheet_safe(m.true), spreadsheet_safe(m.predicted),
                         f"{m.probability:.4f}", f"{m.true_probability:.4f}", f"{m.loss:.4f}"])
    return out.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """`text` as a CSV cell no spreadsheet runs as a formula (CSV injection, the OWASP way).

    A cell that starts with `= + - @`, a tab or a carriage return gets a leading single quote:
    Excel, LibreOffice and Google Sheets then show it as text (`=HYPERLINK(...)` stays words).
    Class names and file names come from users, so every such cell goes through here.
    """
    text = str(text)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def plot_mistakes(mistakes: Sequence[Mistake], images: dict[int, np.ndarray], path: str | Path,
                  *, top: int = 16, title: str = "") -> Path:
    """Save a grid of the `top` worst mistakes: image, true and predicted label, probability, loss, file."""
    from keras_transfer.core.plots import new_figure, save_figure

    shown = [m for m in mistakes if m.index in images][:top]
    columns = max(1, min(4, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    fig, axes = new_figure(rows, columns, size=(2.4 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), shown):
        ax.imshow(images[m.index])
        name = Path(m.path).name if m.path else f"#{m.index}"
        ax.set_title(f"true: {m.true}\npred: {m.predicted} {m.probability:.2f}\nloss {m.loss:.2f}  {name[:28]}",
                     fontsize=7)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.suptitle(title or f"worst {len(shown)} of {len(mistakes)} mistakes", fontsize=10)
    return save_figure(fig, path)


def write_error_analysis(predictions: Predictions, class_names: Sequence[str], out_dir: str | Path,
                         *, split: str = "") -> dict[str, Any]:
    """Write `mistakes.csv` and `plots/misclassified.png` into `out_dir`; return a short summary."""
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    mistakes = find_mistakes(predictions, class_names)
    atomic_write_text(out_dir / "mistakes.csv", mistakes_csv(mistakes))
    label = f" ({split} split)" if split else ""
    plot_mistakes(mistakes, predictions.images, out_dir / "plots" / "misclassified.png",
                  title=f"worst {min(16, len(mistakes))} of {len(mistakes)} mistakes{label}")
    return {"split": split, "examples": len(predictions.labels), "mistakes": len(mistakes)}
