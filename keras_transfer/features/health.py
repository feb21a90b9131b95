"""What backbone features tell about a data set: near-duplicates, suspect labels, outliers.

All three work on pooled features of a frozen backbone (`extract.py`, cached), as arrays:

- near-duplicates: pairs whose cosine similarity of the pooled features is above
  `NEAR_DUPLICATE_COSINE`, a threshold measured on augmented copies of flower photos against
  distinct photos (`benchmarks/bench_check.py`, `benchmarks/results/check.json`);
- suspect labels: confident learning (Northcutt, Jiang and Chuang, JAIR 2021) on out-of-fold
  predicted probabilities of a logistic regression: an example is a label issue when some other
  class's probability reaches that class's own threshold (the mean probability of the class over
  the examples labelled with it) and beats every other class that does; issues are ranked by the
  probability given to their own label (self-confidence), lowest first;
- outliers: images far from every class (the cosine distance to the nearest class centroid
  more than `OUTLIER_Z` robust standard deviations above the median) or on which the backbone
  barely responds (a feature vector `QUIET_Z` robust standard deviations shorter than the
  median: blank and placeholder frames).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# Measured by benchmarks/bench_check.py on 300 flower photos (Lite0 at 128 px, raw cosine): at 0.90
# it finds 93% of mildly augmented copies (95-100% crop, mirror, JPEG 80-95) and 68% of strongly
# augmented ones (80-95% crop, JPEG 60-90), while 1% of photos have a distinct photo above it (24
# pairs among the 4,317 flowers, some of them burst shots); see docs/data_health.md.
NEAR_DUPLICATE_COSINE = 0.90
OUTLIER_Z = 4.0
QUIET_Z = 3.5
# The suspect model: PCA to 256 dimensions, standardised, logistic regression with strong L2. On
# the flowers (Lite0, 128 px, 5% of labels flipped) its top list held as many flipped labels as
# the full 1,280 dimensions (113 against 118 of 215) in a quarter of the time (3.5 s against 15 s).
SUSPECT_DIMENSIONS = 256
SUSPECT_C = 0.01


def centred_unit(features: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Features minus their mean (or `mean`), scaled to unit length: dot products are cosines.

    Centring makes "far from every class" measurable (pooled activations are all positive, so
    raw cosines of unrelated photos sit near 0.7); near-duplicates are found on raw cosines,
    which separated augmented copies from distinct photos better (benchmarks/bench_check.py).
    """
    x = np.asarray(features, dtype=np.float32)
    x = x - (x.mean(axis=0) if mean is None else mean)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def near_duplicate_pairs(features: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE,
                         block: int = 2048) -> list[tuple[int, int, float]]:
    """Every pair (i, j, cosine) with i < j and cosine of the features >= `threshold`, most similar first.

    The similarity matrix is computed in blocks of rows, so memory stays at block x N floats
    (the 4,317 flowers: one block of 35 MB).
    """
    z = centred_unit(features, mean=np.zeros(np.shape(features)[1], dtype=np.float32))
    pairs = []
    for start in range(0, len(z), block):
        sims = z[start:start + block] @ z.T
        rows, cols = np.nonzero(sims >= threshold)
        keep = cols > rows + start
        pairs.extend((int(r + start), int(c), float(sims[r, c])) for r, c in zip(rows[keep], cols[keep]))
    return sorted(pairs, key=lambda pair: -pair[2])


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0,
                              C: float = SUSPECT_C) -> np.ndarray:
    """Predicted class probabilities [N, C] for every example from a model that never saw it.

    A multinomial logistic regression on the centred unit features reduced by PCA to at most
    `SUSPECT_DIMENSIONS` and standardised, in stratified k-fold cross-validation (scikit-learn's
    `cross_val_predict`); `folds` is lowered to the smallest class's count. An example scored by
    a model trained on its label would look confident whatever that label is. The PCA sees no
    labels, so it is fitted once on all examples (from the 1,280 x 1,280 covariance: 0.1 s for
    the flowers, where a randomized PCA per fold took 20 s).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    folds = int(min(folds, counts.min()))
    if len(classes) < 2 or folds < 2:
        raise ValueError("suspect labels need at least two classes with at least two images each; "
                         f"got counts {dict(zip(classes.tolist(), counts.tolist()))}")
    x = centred_unit(features)
    dimensions = min(SUSPECT_DIMENSIONS, x.shape[1], len(x) - 1)
    if dimensions < x.shape[1]:  # PCA from the covariance's eigenvectors, largest first
        x = x - x.mean(axis=0)
        _, vectors = np.linalg.eigh(x.T @ x)
        x = x @ vectors[:, ::-1][:, :dimensions]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probabilities = cross_val_predict(model, x, labels,
                                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                          method="predict_proba")
    full = np.zeros((len(labels), int(labels.max()) + 1))
    full[:, classes] = probabilities
    return full


def confident_learning(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_issue [N] bool, suggested class [N]) by confident learning's per-class thresholds.

    Threshold t_j is the mean probability of class j over the examples labelled j. Example i
    is counted for class j* = the most probable class among those whose probability reaches
    its threshold; it is a label issue when j* exists and differs from its given label (an
    off-diagonal entry of Northcutt et al.'s confident joint). Without such a class the
    suggestion is the arg-max.
    """
    labels = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    thresholds = np.array([p[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(p.shape[1])])
    above = p >= thresholds[None, :] - 1e-12
    masked = np.where(above, p, -1.0)
    confident = masked.argmax(axis=1)
    has_class = above.any(axis=1)
    suggested = np.where(has_class, confident, p.argmax(axis=1))
    return has_class & (confident != labels), suggested


def rank_suspects(labels: np.ndarray, probabilities: np.ndarray, *, every: bool = False) -> list[dict]:
    """The label issues, most suspect first: index, given and suggested class, self-confidence.

    Ranked by self-confidence (the probability of the given label), lowest first, as cleanlab's
    default `self_confidence` ranking does. With `every`, the examples not flagged follow, also
    by self-confidence, so that a top-N list is N long even when fewer than N are flagged (each
    entry's `flagged` tells which).
    """
    labels = np.asarray(labels, dtype=np.int64)
    issue, suggested = confident_learning(labels, probabilities)
    confidence = probabilities[np.arange(len(labels)), labels]
    groups = [np.flatnonzero(issue)] + ([np.flatnonzero(~issue)] if every else [])
    order = [int(i) for group in groups for i in group[np.argsort(confidence[group], kind="stable")]]
    return [{"index": i, "given": int(labels[i]), "suggested": int(suggested[i]),
             "self_confidence": round(float(confidence[i]), 4),
             "suggested_probability": round(float(probabilities[i, suggested[i]]), 4),
             "flagged": bool(issue[i])} for i in order]


def outlier_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per example, the cosine distance (centred features) to the nearest class centroid: large
    means far from every class (a placeholder, a blank frame, an image of another domain)."""
    z = centred_unit(features)
    labels = np.asarray(labels, dtype=np.int64)
    centroids = np.stack([z[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(z.shape[1])
                          for c in range(int(labels.max()) + 1)])
    centroids = centred_unit(centroids, mean=np.zeros(z.shape[1], dtype=np.float32))
    return 1.0 - (z @ centroids.T).max(axis=1)


def _robust_z(values: np.ndarray) -> np.ndarray:
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median))) or float(np.std(values)) or 1.0
    return (values - median) / spread


def rank_outliers(features: np.ndarray, labels: np.ndarray, z_limit: float = OUTLIER_Z,
                  quiet_limit: float = QUIET_Z) -> list[dict]:
    """The examples far from every class or on which the backbone barely responds, most extreme first.

    Far: the distance to the nearest class centroid (`outlier_scores`) more than `z_limit`
    robust standard deviations (1.4826 MAD) above the median. Quiet: the length of the feature
    vector more than `quiet_limit` robust standard deviations below the median; a blank, flat or
    placeholder frame activates little (on the flowers, blank frames lay 3.8-4.4 below, the
    photos at most 2.8), while its direction can sit near a class centroid. Each entry has the
    index, the distance, both robust z values and the `reason`.
    """
    far = _robust_z(outlier_scores(features, labels))
    quiet = -_robust_z(np.linalg.norm(np.asarray(features, dtype=np.float64), axis=1))
    extreme = np.maximum(far / z_limit, quiet / quiet_limit)
    order = np.argsort(-extreme, kind="stable")
    return [{"index": int(i), "robust_z": round(float(far[i]), 2), "quiet_z": round(float(quiet[i]), 2),
             "reason": "far from every class" if far[i] / z_limit >= quiet[i] / quiet_limit else "little activation"}
            for i in order if extreme[i] > 1.0]


@dataclass
class FeatureHealth:
    """The feature-based findings on one set of examples (indices into the arrays given)."""

    near_duplicates: list[tuple[int, int, float]]
    suspects: list[dict]
    outliers: list[dict]
    probabilities: np.ndarray


def feature_health(features: np.ndarray, labels: np.ndarray, *, threshold: float = NEAR_DUPLICATE_COSINE,
                   folds: int = 5, seed: int = 0) -> FeatureHealth:
    """Near-duplicate pairs, ranked suspect labels and outliers of (features, integer labels).

    BLAS runs on one thread here: beside TensorFlow's thread pools, on 2 busy cores, threaded
    BLAS made the five logistic fits take 25 s instead of 0.8 s (threadpoolctl, which
    scikit-learn installs).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        probabilities = out_of_fold_probabilities(features, labels, folds=folds, seed=seed)
        return FeatureHealth(near_duplicate_pairs(features, threshold), rank_suspects(labels, probabilities),
                             rank_outliers(features, labels), probabilities)
