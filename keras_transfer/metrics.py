"""Evaluation metrics and the plots of a run: training curves with stage boundaries, confusion matrix,
predicted-vs-true targets for regression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def two_column(outputs: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Probabilities with one column per class: a binary head's single sigmoid [N, 1] becomes
    [1 - p, p]; softmax outputs [N, C] come back unchanged."""
    outputs = np.asarray(outputs, dtype=dtype)
    return np.concatenate([1 - outputs, outputs], axis=-1) if outputs.shape[-1] == 1 else outputs


def classification_metrics(outputs: np.ndarray, labels: np.ndarray, class_names: list[str], task: str) -> dict[str, Any]:
    """Accuracy, balanced accuracy, top-k, per-class precision/recall and the confusion matrix of one split.

    Balanced accuracy is the mean of the per-class recalls (classes present in the split); when
    the split's largest class has more than 1.5x the images of its smallest, `imbalanced` says so
    and `note` asks to read balanced accuracy and per-class recall, which accuracy can hide.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from keras_transfer.data.health import IMBALANCE_RATIO

    n = len(class_names)
    if task == "multilabel":
        predicted = outputs >= 0.5
        per_class = precision_recall_fscore_support(labels.astype(bool), predicted, zero_division=0)
        return {"examples": int(len(labels)), "exact_match": float((predicted == labels.astype(bool)).all(axis=1).mean()),
                "per_class": _per_class(per_class, class_names)}
    if task == "binary":
        predicted = (outputs.reshape(-1) >= 0.5).astype(int)
        probabilities = two_column(outputs.reshape(-1, 1))
    else:
        predicted = outputs.argmax(axis=1)
        probabilities = outputs
    labels = labels.astype(int).reshape(-1)
    k = min(5, n - 1) if n > 2 else 1
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    per_class = precision_recall_fscore_support(labels, predicted, labels=list(range(n)), zero_division=0)
    support = per_class[3]
    present = support > 0
    ratio = float(support[present].max() / support[present].min()) if present.any() else 1.0
    out = {
        "examples": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(per_class[1][present].mean()) if present.any() else 0.0,
        f"top_{k}_accuracy": float((top_k == labels[:, None]).any(axis=1).mean()),
        "per_class": _per_class(per_class, class_names),
        "per_class_recall": {name: float(r) for name, r in zip(class_names, per_class[1])},
        "class_ratio": round(ratio, 3),
        "imbalanced": ratio > IMBALANCE_RATIO,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=list(range(n))).tolist(),
    }
    if out["imbalanced"]:
        out["note"] = (f"imbalanced split (largest class {ratio:.2f}x the smallest): read balanced accuracy "
                       "and per-class recall, which accuracy can hide")
    return out


def score_line(split: str, values: dict[str, Any], shown: int = 10) -> str:
    """One log line: accuracy, balanced accuracy and per-class recall of a split (and its imbalance)."""
    recalls = values.get("per_class_recall") or {}
    from keras_transfer.core.names import printable

    recall = ", ".join(f"{printable(name)} {r:.2f}" for name, r in list(recalls.items())[:shown])
    recall += ", ..." if len(recalls) > shown else ""
    line = f"{split} accuracy: {values['accuracy']:.4f}"
    if "balanced_accuracy" in values:
        line += f", balanced accuracy {values['balanced_accuracy']:.4f}"
    line += f" ({values['examples']} images)"
    if recall:
        line += f"; recall per class: {recall}"
    if values.get("imbalanced"):
        line += f"; imbalanced split ({values['class_ratio']:.2f}x): read balanced accuracy"
    return line


def _per_class(scores, class_names):
    precision, recall, f1, support = scores
    return {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)}


def plot_training_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with each stage's start marked."""
    from keras_transfer.core.plots import new_figure, save_figure

    epochs = [row["epoch"] for row in history]
    panels = [("loss", "loss"), ("accuracy", "accuracy"), ("mae", "MAE")]
    panels = [(key, title) for key, title in panels if any(key in row for row in history)]
    fig, axes = new_figure(1, len(panels), size=(6 * len(panels), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        ax.plot(epochs, [row.get(key, np.nan) for row in history], "o-", label=f"train {title}")
        if any(f"val_{key}" in row for row in history):
            ax.plot(epochs, [row.get(f"val_{key}", np.nan) for row in history], "s-", label=f"val {title}")
        previous = None
        for row in history:
            if row["stage"] != previous:
                ax.axvline(row["epoch"] - 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(row["epoch"] - 0.45, 1.0, f" {row['stage']}", transform=ax.get_xaxis_transform(),
                        va="top", fontsize=9, color="dimgrey")
                previous = row["stage"]
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    save_figure(fig, path)


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path, title: str = "") -> None:
    """The confusion matrix as a labelled heat map with counts in the cells."""
    from keras_transfer.core.plots import new_figure, save_figure

    matrix = np.asarray(matrix)
    size = max(4, 0.6 * len(class_names) + 2)
    fig, ax = new_figure(size=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > limit else "black")
    save_figure(fig, path)


def regression_metrics(outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """MSE, MAE, RMSE and R^2 (1 - MSE / variance of the targets) of one split, in the targets' units."""
    predicted = np.asarray(outputs, dtype=np.float64).reshape(len(targets), -1)[:, 0]
    truth = np.asarray(targets, dtype=np.float64).reshape(-1)
    errors = predicted - truth
    mse = float(np.mean(errors ** 2))
    variance = float(np.var(truth))
    return {
        "examples": int(len(truth)),
        "mse": mse,
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(mse)),
        # R^2 is undefined when every target is the same; NaN would not survive JSON, so None.
        "r2": 1.0 - mse / variance if variance > 0 else None,
    }


def plot_predicted_vs_true(targets: np.ndarray, outputs: np.ndarray, path: Path, title: str = "",
                           target: str = "target") -> None:
    """Predicted against true targets, one dot per image, with the diagonal a perfect model lies on."""
    from keras_transfer.core.plots import new_figure, save_figure

    truth = np.asarray(targets, dtype=np.float64).reshape(-1)
    predicted = np.asarray(outputs, dtype=np.float64).reshape(len(truth), -1)[:, 0]
    fig, ax = new_figure(size=(5, 5))
    ax.scatter(truth, predicted, s=12, alpha=0.6)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="predicted = true")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(title or "predicted vs true")
    ax.legend()
    save_figure(fig, path)
