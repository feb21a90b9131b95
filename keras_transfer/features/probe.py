"""The layer probe: a linear classifier on each block's features, "which layer?" for your data.

Zeiler & Fergus (ECCV 2014, Table 6) trained a linear SVM and a softmax on each layer of their
ImageNet network and found accuracy rising layer by layer on Caltech-101. `probe_layers` repeats
that measurement on the user's own data and backbone: one pass extracts the pooled output of
every block, then a Kornblith-protocol logistic regression is scored on each block, and on the
top blocks' features together, by stratified k-fold cross-validation over every labelled image
with its spread (`keras_transfer.features.selection`), and fitted on train for the test score.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from keras_transfer.data import DataBundle
from keras_transfer.features import selection
from keras_transfer.features.classifiers import fit_classifier
from keras_transfer.features.extract import extract_features, feature_layers
from keras_transfer.core.files import atomic_write_text


@dataclass
class ProbeRow:
    """One probed candidate: its block name (or blocks joined by +), Keras layer(s), feature width, scores.

    `cv_accuracy` and `cv_sem` are the cross-validated accuracy over the labelled images (train
    and val) and its standard error; `proxy_accuracy` the nearest class mean's leave-one-out
    accuracy that pruned the candidates; val and test accuracies are those of the classifier
    fitted on train at the chosen C.
    """

    layer: str
    keras_layer: str
    dim: int
    C: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    train_accuracy: float | None
    fit_seconds: float
    cv_accuracy: float | None = None
    cv_sem: float | None = None
    proxy_accuracy: float | None = None


@dataclass
class ProbeResult:
    """The probe of one backbone on one dataset, shallow to deep, and the candidate chosen with why."""

    backbone: str
    source: str
    classifier: str
    examples: dict[str, int]
    rows: list[ProbeRow] = field(default_factory=list)
    feature_seconds: float = 0.0
    chosen: str | None = None
    method: str = ""
    reasons: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=lambda: ["full"])
    seconds: dict[str, float] = field(default_factory=dict)

    def accuracy(self, layer: str) -> float:
        """The held-out accuracy at `layer`: cross-validated, else validation, test, train, or the proxy's."""
        row = next(r for r in self.rows if r.layer == layer)
        for value in (row.cv_accuracy, row.val_accuracy, row.test_accuracy, row.train_accuracy, row.proxy_accuracy):
            if value is not None and not np.isnan(value):
                return value
        return 0.0

    def best(self) -> ProbeRow:
        """The chosen candidate: best cross-validated, a tie inside one standard error to the deeper."""
        if self.chosen is not None:
            return next(r for r in self.rows if r.layer == self.chosen)
        return max(reversed(self.rows), key=lambda r: self.accuracy(r.layer))

    def table(self) -> str:
        """A markdown table: layer, feature width, chosen C, cross-validated, validation and test accuracy."""
        lines = [f"Linear probe ({self.classifier}) of `{self.backbone}` on `{_short(self.source)}` "
                 f"({', '.join(f'{k} {v}' for k, v in self.examples.items())} images; {self.method})", "",
                 "| layer | Keras layer | features | C | cross-validated | val accuracy | test accuracy |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            cv = "—" if r.cv_accuracy is None or np.isnan(r.cv_accuracy) else \
                f"{100 * r.cv_accuracy:.1f}% ± {100 * (r.cv_sem or 0):.1f}"
            if cv == "—" and r.proxy_accuracy is not None:
                cv = f"(class means {100 * r.proxy_accuracy:.1f}%)"
            mark = " **chosen**" if r.layer == self.chosen else ""
            lines.append(f"| {r.layer}{mark} | `{r.keras_layer}` | {r.dim} | {'—' if r.C is None else f'{r.C:g}'} "
                         f"| {cv} | {_pct(r.val_accuracy)} | {_pct(r.test_accuracy)} |")
        return "\n".join(lines) + "\n"


def probe_layers(backbone: keras.Model, data: DataBundle, layers: str | Sequence[str] = "blocks", *,
                 classifier: str = "logistic", pooling: str = "avg", cache_dir: str | Path | None = None,
                 grid: tuple[float, ...] | None = None, views: Sequence[str] = ("full",), prune: bool = False,
                 score_splits: bool = True, seed: int = 0, class_weight: str | None = None,
                 log: Callable[[str], None] | None = None) -> ProbeResult:
    """Score `classifier` on the pooled features of each of `layers` (default: every block) and choose one.

    Labels must be one class per image. Features come from `extract_features` (cached, with
    `views`). For logistic regression every block, and the top blocks together when probing
    every block, is scored by cross-validation over the labelled images (`selection.select`; with
    `prune`, only the candidates the nearest class mean ranks best are fitted); the linear SVM and kNN
    choose their C or k by cross-validation per layer. With `score_splits`, each fitted candidate
    is then fitted on train at its chosen C and scored on val and test.
    """
    if data.task != "multiclass":
        raise ValueError(f"the layer probe needs one class per image; {data.config.source} is {data.task}")
    resolved = feature_layers(backbone, layers)
    features = extract_features(backbone, data, list(resolved), pooling=pooling, cache_dir=cache_dir, views=views,
                                log=log)
    result = ProbeResult(backbone.name, data.config.source, classifier,
                         {split: int(len(labels)) for split, labels in features.labels.items()},
                         feature_seconds=round(features.seconds, 3), views=list(views))
    labelled = selection.held_in(features.splits)
    y = np.concatenate([features.labels[s] for s in labelled])
    stacked = {name: np.concatenate([features.stacked(s, name) for s in labelled]) for name in resolved}
    names = list(resolved)
    if classifier == "logistic":
        chosen = selection.select(stacked, y, names, seed=seed, grid=tuple(grid or selection.C_GRID),
                                  concat_top=selection.CONCAT_TOP if layers == "blocks" else 0,
                                  keep=selection.KEEP_AFTER_PROXY if prune else len(names) + 1,
                                  class_weight=class_weight)
        scores = chosen.scores
        result.chosen, result.method, result.reasons = chosen.chosen.candidate.name, chosen.method, chosen.reasons
        result.seconds = chosen.seconds
    else:
        scores = [_cv_score(classifier, stacked[name], y, data.num_classes, grid, seed, selection.Candidate((name,), depth))
                  for depth, name in enumerate(names)]
        result.method = "cross-validation per layer (the classifier's own)"
    for score in scores:
        started = time.perf_counter()
        cand = score.candidate
        row = ProbeRow(cand.name, "+".join(resolved[n] for n in cand.layers),
                       int(sum(stacked[n].shape[-1] for n in cand.layers)), score.C, None, None, None, 0.0,
                       cv_accuracy=score.accuracy, cv_sem=score.sem, proxy_accuracy=score.proxy)
        if score_splits and score.C is not None:
            x, y_train = features.joined("train", cand.layers, views=True)
            fitted = fit_classifier(classifier, x, y_train, num_classes=data.num_classes, grid=(score.C,), seed=seed,
                                    scaling="global" if classifier == "logistic" else "features")
            for split in ("train", "val", "test"):
                if split in features.splits:
                    setattr(row, f"{split}_accuracy", fitted.score(*features.joined(split, cand.layers)))
        row.fit_seconds = round(time.perf_counter() - started, 3)
        result.rows.append(row)
        if log:
            cv = "—" if row.cv_accuracy is None or np.isnan(row.cv_accuracy) else \
                f"{100 * row.cv_accuracy:.1f}% ± {100 * (row.cv_sem or 0):.1f}"
            log(f"  {row.layer:<18} {row.dim:>6} features  cross-validated {cv:>13}  test {_pct(row.test_accuracy):>6}")
    if result.chosen is None:
        result.chosen = result.best().layer
    return result


def _cv_score(kind: str, stacked: np.ndarray, y: np.ndarray, num_classes: int, grid, seed: int,
              candidate: selection.Candidate) -> selection.Score:
    """A linear SVM's or kNN's cross-validated accuracy on one layer (its own choice of C or k)."""
    fitted = fit_classifier(kind, stacked.mean(axis=1), y, num_classes=num_classes, grid=grid, seed=seed)
    value, accuracy = max(fitted.selection, key=lambda pair: pair[1]) if fitted.selection else \
        (next(iter(fitted.chosen.values())), float("nan"))
    return selection.Score(candidate, float(value), float(accuracy), 0.0)


def write_probe(result: ProbeResult, out_dir: str | Path) -> dict[str, Path]:
    """Write probe.json, probe.md and plots/layer_probe.png into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "probe.json", "table": out_dir / "probe.md", "plot": out_dir / "plots" / "layer_probe.png"}
    payload = {**asdict(result), "best": result.best().layer}
    atomic_write_text(paths["json"], json.dumps(payload, indent=1))
    atomic_write_text(paths["table"], result.table())
    plot_probe(result, paths["plot"])
    return paths


def plot_probe(result: ProbeResult, path: Path):
    """Plot accuracy per layer, shallow to deep (feature width under each name), to `path`; return the figure."""
    from keras_transfer.core.plots import new_figure, save_figure

    x = np.arange(len(result.rows))
    fig, ax = new_figure(size=(max(6, 0.7 * len(x) + 2), 4))
    for key, label, style in (("cv_accuracy", "cross-validated", "D-"), ("val_accuracy", "validation", "o-"),
                              ("test_accuracy", "test", "s--"), ("train_accuracy", "train", ":")):
        values = [np.nan if getattr(r, key) is None else getattr(r, key) for r in result.rows]
        if not np.isnan(values).all():
            ax.plot(x, values, style, label=label)
            if key == "cv_accuracy":
                sem = np.array([np.nan if r.cv_sem is None else r.cv_sem for r in result.rows])
                ax.fill_between(x, np.array(values) - sem, np.array(values) + sem, alpha=0.2)
    if result.chosen in [r.layer for r in result.rows]:
        ax.axvline([r.layer for r in result.rows].index(result.chosen), color="grey", linestyle=":", label="chosen")
    ax.set_xticks(x, [f"{r.layer}\n{r.dim}" for r in result.rows], fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("layer (feature width)")
    ax.set_title(f"Linear probe of {result.backbone} on {_short(result.source)}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return fig


def _short(source: str) -> str:
    """A data source as shown in titles: a folder by its name, not the machine's full path."""
    kind, _, path = source.partition(":")
    return f"{kind}:{Path(path).name}" if kind in ("folder", "csv", "npz") and path else source


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"
