"""Which unlabelled images to label next: uncertainty first, then diversity (active learning).

A user with a trained run and a folder of unlabelled images has labelling time to spend. The
images the model is least sure of teach it most (uncertainty sampling: the smallest `margin`
between the two top classes, or the largest `entropy`), but the most uncertain images are often
near-duplicates of one another. So the `CANDIDATES` x k most uncertain images are kept, and k of
them chosen by k-center greedy (Sener & Savarese, ICLR 2018) on the model's own penultimate
features: each pick is the candidate farthest from every image already picked, so the batch
covers the uncertain region instead of repeating one corner of it (the "uncertainty then
diversity" two-step of Ash et al.'s and Citovsky et al.'s batch methods, without gradients).

With few labels the model's own uncertainty is a poor guide (the cold start), and the images that
teach most are the *typical* ones of regions no label covers yet: `typical_indices` follows
TypiClust (Hacohen et al., ICML 2022): k-means into (labelled + k) clusters, and from each of the
largest uncovered clusters its densest member. `auto` (the default) takes typical images while
the run had fewer than `TYPICAL_BELOW_PER_CLASS` training images per class, uncertain ones after.

`suggest_indices` and `typical_indices` work on any features (the benchmark's active-learning
curve uses them on cached Lite0 features); `suggest_for_run` reads a run folder and an image folder and
writes `suggestions.csv` and a contact sheet `suggestions.png`. Ties break by a seeded order, so
a seed gives the same picks on every run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from keras_transfer.core.names import unknown_name_message
from keras_transfer.core.run_dir import RunDir

UNCERTAINTY = ("margin", "entropy")
METHODS = ("auto", "uncertain", "typical")
CANDIDATES = 4  # the k-center step picks k among the CANDIDATES * k most uncertain images
# `auto` picks typical images while the model has fewer labels per class than this, uncertain ones
# after: with few labels the model's uncertainty is itself unreliable (Hacohen et al., ICML 2022).
TYPICAL_BELOW_PER_CLASS = 20
_PCA_DIMS = 50
_TYPICALITY_NEIGHBOURS = 20


def uncertainty_scores(probabilities: np.ndarray, kind: str = "margin") -> np.ndarray:
    """Per row, how unsure the model is (higher = more unsure): 1 - (top1 - top2) for `margin`, the
    Shannon entropy for `entropy`."""
    if kind not in UNCERTAINTY:
        raise ValueError(unknown_name_message("uncertainty", kind, UNCERTAINTY))
    p = np.asarray(probabilities, dtype=np.float64)
    if kind == "entropy":
        return -np.sum(p * np.log(np.clip(p, 1e-12, 1.0)), axis=1)
    top = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros_like(p), p], axis=1)
    return 1.0 - (top[:, 1] - top[:, 0])


def k_center_greedy(features: np.ndarray, k: int, *, first: int = 0,
                    centers: np.ndarray | None = None) -> np.ndarray:
    """k row indices of `features`, each the row farthest (Euclidean) from all picked so far.

    `centers` are already-covered points (e.g. the labelled images' features); without them the
    first pick is row `first`.
    """
    x = np.asarray(features, dtype=np.float64)
    k = min(int(k), len(x))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if centers is not None and len(centers):
        c = np.asarray(centers, dtype=np.float64)
        distance = np.min(((x[:, None, :] - c[None, :, :]) ** 2).sum(-1), axis=1) if len(c) * len(x) < 4e6 else \
            np.array([np.min(((c - row) ** 2).sum(-1)) for row in x])
        picks = []
    else:
        picks = [int(first)]
        distance = ((x - x[first]) ** 2).sum(-1)
    while len(picks) < k:
        nxt = int(np.argmax(distance))
        picks.append(nxt)
        distance = np.minimum(distance, ((x - x[nxt]) ** 2).sum(-1))
    return np.array(picks, dtype=np.int64)


def suggest_indices(features: np.ndarray, probabilities: np.ndarray, k: int, *, uncertainty: str = "margin",
                    labelled_features: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The k pool rows to label next, in pick order: the `CANDIDATES * k` most uncertain rows, then
    k of them by k-center greedy on L2-normalised `features` (from `labelled_features` when given,
    else from the most uncertain row). Deterministic for a `seed` (it only orders ties)."""
    scores = uncertainty_scores(probabilities, uncertainty)
    tiebreak = np.random.default_rng(seed).permutation(len(scores))
    order = np.lexsort((tiebreak, -scores))  # most uncertain first; equal scores in a seeded order
    candidates = order[: max(int(k), CANDIDATES * int(k))]
    z = _normalise(features)
    centers = _normalise(labelled_features) if labelled_features is not None else None
    return candidates[k_center_greedy(z[candidates], k, first=0, centers=centers)]


def typical_indices(features: np.ndarray, k: int, *, labelled_features: np.ndarray | None = None,
                    seed: int = 0) -> np.ndarray:
    """k pool rows that are typical of the regions no label covers yet (TypiClust, Hacohen et al. 2022).

    The pool (and the labelled images) are clustered by k-means into (labelled + k) clusters on
    L2-normalised features reduced to 50 principal components; the largest clusters without a
    labelled image each give their most typical member (the highest inverse mean distance to its
    20 nearest neighbours in the cluster). Representative images first: what a model that knows
    little needs. Rows left over when the clusters run out come from k-center greedy.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    pool = _normalise(features)
    known = _normalise(labelled_features) if labelled_features is not None else np.zeros((0, pool.shape[1]))
    both = np.concatenate([pool, known])
    dims = min(_PCA_DIMS, both.shape[1], len(both))
    z = PCA(dims, random_state=seed).fit_transform(both) if dims < both.shape[1] else both
    clusters = min(len(known) + int(k), len(both))
    assignment = KMeans(clusters, n_init=1, random_state=seed).fit(z).labels_
    covered = set(assignment[len(pool):].tolist())
    zp, members_of = z[: len(pool)], assignment[: len(pool)]
    sizes = np.bincount(members_of, minlength=clusters)
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        if len(picks) >= k or sizes[cluster] == 0:
            break
        if cluster in covered:
            continue
        members = np.flatnonzero(members_of == cluster)
        if len(members) > 500:  # typicality on a sample keeps the distance matrix small
            members = np.sort(rng.choice(members, 500, replace=False))
        picks.append(int(members[np.argmax(_typicality(zp[members]))]))
    if len(picks) < k:
        rest = np.setdiff1d(np.arange(len(pool)), picks)
        centers = np.concatenate([known, pool[picks]])
        picks.extend(rest[k_center_greedy(pool[rest], k - len(picks), centers=centers)].tolist())
    return np.array(picks, dtype=np.int64)


def _typicality(z: np.ndarray) -> np.ndarray:
    if len(z) == 1:
        return np.ones(1)
    distance = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    near = np.sort(distance, axis=1)[:, 1: min(_TYPICALITY_NEIGHBOURS, len(z) - 1) + 1]
    return 1.0 / (near.mean(axis=1) + 1e-12)


def choose_method(method: str, labelled_per_class: float | None) -> str:
    """`auto` -> `typical` below `TYPICAL_BELOW_PER_CLASS` labels per class (or when unknown), else `uncertain`."""
    if method not in METHODS:
        raise ValueError(unknown_name_message("--method", method, METHODS))
    if method != "auto":
        return method
    return "typical" if labelled_per_class is None or labelled_per_class < TYPICAL_BELOW_PER_CLASS else "uncertain"


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Suggestions:
    """The picks: pool indices in pick order, their files (or None), predicted class and scores."""

    indices: np.ndarray
    paths: list[str | None]
    predicted: list[str]
    confidence: np.ndarray
    uncertainty: np.ndarray
    csv_path: Path | None = None
    sheet_path: Path | None = None


def suggest_for_run(run_dir: str | Path, pool: str, *, k: int = 50, method: str = "auto", uncertainty: str = "margin",
                    seed: int = 0, output_dir: str | Path | None = None,
                    log: Callable[[str], None] = print) -> Suggestions:
    """Rank the images of `pool` (a folder, or any source whose labels are ignored) for labelling
    with the run's model, and write `suggestions.csv` and `suggestions.png` into `output_dir`
    (default `run_dir/suggestions`). The model's penultimate layer gives the features. `method`:
    `uncertain` (uncertainty, then k-center diversity), `typical` (TypiClust), or `auto` (typical
    while the run had fewer than `TYPICAL_BELOW_PER_CLASS` training images per class, from its
    data_report.json)."""
    import keras

    from keras_transfer.config import load_config
    from keras_transfer.data import DataConfig
    from keras_transfer.data.unlabeled import load_unlabeled
    from keras_transfer.forward import frozen_forward

    if uncertainty not in UNCERTAINTY:
        raise ValueError(unknown_name_message("--uncertainty", uncertainty, UNCERTAINTY))
    choose_method(method, None)
    if k < 1:
        raise ValueError(f"--k must be at least 1, got {k}")
    run = RunDir(run_dir)
    for path in (run.model_path, run.config_path, run.labels_path):
        if not path.is_file():
            raise ValueError(f"{run.path} is not a finished run folder: {path.name} is missing")
    config = load_config(run.config_path)
    labels = run.labels()
    data_config = DataConfig(source=config.data.source, image_size=config.data.image_size, unlabeled=pool,
                             resize=config.data.resize, augment=(), cache="none")
    images = load_unlabeled(data_config, labels)
    model = run.load_model(compile=False)  # safe mode, archive sizes checked: a run folder may come from anyone
    head = model.layers[-1]
    # One pass gives the head's input (the features the diversity is measured in) and the
    # probabilities; onnxruntime runs it for a large pool.
    step = frozen_forward(keras.Model(model.input, [head.input, model.output], name=f"{model.name}_suggest"),
                          images=len(images), log=log)
    features, probabilities = [], []
    for x, _ in images.dataset(batch_size=64):
        f, p = step(x)
        features.append(np.asarray(f, dtype=np.float32).reshape(len(f), -1))
        probabilities.append(np.asarray(p, dtype=np.float32))
    features, probabilities = np.concatenate(features), np.concatenate(probabilities)
    if probabilities.shape[1] != len(labels):
        raise ValueError(f"{run.model_path} has {probabilities.shape[1]} outputs and labels.txt {len(labels)} "
                         "labels; suggest needs a classifier run")
    method = choose_method(method, _labelled_per_class(run))
    chosen = (typical_indices(features, k, seed=seed) if method == "typical"
              else suggest_indices(features, probabilities, k, uncertainty=uncertainty, seed=seed))
    scores = uncertainty_scores(probabilities, uncertainty)
    paths = images.paths
    result = Suggestions(chosen, [paths[i] if paths else None for i in chosen],
                         [labels[j] for j in probabilities[chosen].argmax(axis=1)],
                         probabilities[chosen].max(axis=1), scores[chosen])
    out = Path(output_dir) if output_dir else run.path / "suggestions"
    out.mkdir(parents=True, exist_ok=True)
    result.csv_path = _write_csv(result, uncertainty, out / "suggestions.csv")
    thumbs = _pixels(images, chosen)
    result.sheet_path = _contact_sheet(thumbs, result, out / "suggestions.png")
    how = "typical images of uncovered clusters" if method == "typical" else f"{uncertainty} uncertainty, then k-center"
    log(f"suggested {len(chosen)} of {len(images):,} images to label next ({how}); wrote {result.csv_path} and "
        f"{result.sheet_path}")
    return result


def _labelled_per_class(run: RunDir) -> float | None:
    import json

    try:
        counts = json.loads(run.data_report_path.read_text())["counts"]["train"]
        return sum(counts.values()) / max(len(counts), 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_csv(result: Suggestions, uncertainty: str, path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "index", "path", "predicted", "confidence", uncertainty])
        for rank, (index, file, predicted, confidence, score) in enumerate(
                zip(result.indices, result.paths, result.predicted, result.confidence, result.uncertainty), start=1):
            writer.writerow([rank, int(index), file or "", predicted, f"{confidence:.4f}", f"{score:.4f}"])
    return path


def _pixels(images, chosen: np.ndarray) -> np.ndarray:
    """uint8 pixels of the chosen pool images, in pick order (decoded through the pool's pipeline)."""
    wanted = {int(i): rank for rank, i in enumerate(chosen)}
    out = [None] * len(chosen)
    position = 0
    for x, _ in images.dataset(batch_size=64):
        for row in np.asarray(x):
            if position in wanted:
                out[wanted[position]] = np.clip(row, 0, 255).astype(np.uint8)
            position += 1
    return np.stack(out)


def _contact_sheet(thumbs: np.ndarray, result: Suggestions, path: Path, columns: int = 10) -> Path:
    from keras_transfer.core import plots

    rows = -(-len(thumbs) // columns)
    fig, axes = plots.new_figure(rows, columns, size=(1.5 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for rank, (ax, image) in enumerate(zip(axes.flat, thumbs), start=1):
        ax.imshow(image)
        ax.set_title(f"#{rank} {result.predicted[rank - 1]}? {result.confidence[rank - 1]:.2f}", fontsize=7)
    fig.suptitle("label these next (rank, predicted class, confidence)", fontsize=9)
    return plots.save_figure(fig, path)
