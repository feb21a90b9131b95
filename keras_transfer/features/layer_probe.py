"""The layer probe: a linear classifier on each block's features, "which layer?" for your data.

Zeiler & Fergus (ECCV 2014, Table 6) trained a linear SVM and a softmax on each layer of their
ImageNet network and found accuracy rising layer by layer on Caltech-101. `probe_layers` repeats
that measurement on the user's own data and backbone: one pass extracts the pooled output of
every block, then a Kornblith-protocol logistic regression (C chosen on validation) is fitted
per block, and its validation and test accuracy recorded.
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
from keras_transfer.features.classifiers import fit_classifier
from keras_transfer.features.extract import extract_features, feature_layers
from keras_transfer.files import atomic_write_text


@dataclass
class ProbeRow:
    """One probed layer: its block (or layer) name, the Keras layer, feature width and accuracies."""

    layer: str
    keras_layer: str
    dim: int
    C: float
    val_accuracy: float | None
    test_accuracy: float | None
    train_accuracy: float
    fit_seconds: float


@dataclass
class ProbeResult:
    """The probe of one backbone on one dataset, shallow to deep."""

    backbone: str
    source: str
    classifier: str
    examples: dict[str, int]
    rows: list[ProbeRow] = field(default_factory=list)
    feature_seconds: float = 0.0

    def accuracy(self, layer: str) -> float:
        """The probe's held-out accuracy at `layer` (validation if there is one, else test, else train)."""
        row = next(r for r in self.rows if r.layer == layer)
        for value in (row.val_accuracy, row.test_accuracy, row.train_accuracy):
            if value is not None:
                return value
        raise AssertionError("unreachable")

    def best(self) -> ProbeRow:
        """The layer whose features classify best on held-out data (the shallower one on a tie)."""
        return max(self.rows, key=lambda r: self.accuracy(r.layer))

    def table(self) -> str:
        """A markdown table: layer, feature width, chosen C, validation and test accuracy."""
        lines = [f"Linear probe ({self.classifier}) of `{self.backbone}` on `{_short(self.source)}` "
                 f"({', '.join(f'{k} {v}' for k, v in self.examples.items())} images)", "",
                 "| layer | Keras layer | features | C | val accuracy | test accuracy |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {r.layer} | `{r.keras_layer}` | {r.dim} | {r.C:g} | {_pct(r.val_accuracy)} "
                         f"| {_pct(r.test_accuracy)} |")
        return "\n".join(lines) + "\n"


def probe_layers(backbone: keras.Model, data: DataBundle, layers: str | Sequence[str] = "blocks", *,
                 classifier: str = "logistic", pooling: str = "avg", cache_dir: str | Path | None = None,
                 grid: tuple[float, ...] | None = None, log: Callable[[str], None] | None = None) -> ProbeResult:
    """Fit `classifier` on the pooled features of each of `layers` (default: every block) and score it.

    Labels must be one class per image. Features come from `extract_features` (cached); the
    classifier's C is chosen from `grid` (default: `fit_classifier`'s) on the validation split when
    there is one, else by cross-validation.
    """
    if data.task != "multiclass":
        raise ValueError(f"the layer probe needs one class per image; {data.config.source} is {data.task}")
    resolved = feature_layers(backbone, layers)
    features = extract_features(backbone, data, list(resolved), pooling=pooling, cache_dir=cache_dir, log=log)
    result = ProbeResult(backbone.name, data.config.source, classifier,
                         {split: int(len(labels)) for split, labels in features.labels.items()},
                         feature_seconds=round(features.seconds, 3))
    validation = "val" in features.splits
    for name, keras_layer in resolved.items():
        started = time.perf_counter()
        x, y = features.xy("train", name)
        fitted = fit_classifier(classifier, x, y, num_classes=data.num_classes, grid=grid,
                                validation=features.xy("val", name) if validation else None)
        scores = {split: fitted.score(*features.xy(split, name)) if split in features.splits else None
                  for split in ("train", "val", "test")}
        row = ProbeRow(name, keras_layer, int(x.shape[1]), float(next(iter(fitted.chosen.values()))),
                       scores["val"], scores["test"], scores["train"], round(time.perf_counter() - started, 3))
        result.rows.append(row)
        if log:
            log(f"  {name:<12} {row.dim:>6} features  val {_pct(row.val_accuracy):>6}  test {_pct(row.test_accuracy):>6}")
    return result


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
    from keras_transfer.plots import new_figure, save_figure

    x = np.arange(len(result.rows))
    fig, ax = new_figure(size=(max(6, 0.7 * len(x) + 2), 4))
    for key, label, style in (("val_accuracy", "validation", "o-"), ("test_accuracy", "test", "s--"),
                              ("train_accuracy", "train", ":")):
        values = [getattr(r, key) for r in result.rows]
        if any(v is not None for v in values):
            ax.plot(x, [np.nan if v is None else v for v in values], style, label=label)
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
