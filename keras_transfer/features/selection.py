"""What the linear probe fits on, chosen by cross-validation: the block (or the top blocks together) and C.

A user's folder of 25 photos per class leaves a dozen validation images, on which every block
can score 100%. So the choice is scored by stratified k-fold cross-validation over every labelled
training image (train and val pooled; the features are cached, so a fit costs little), and
reported with its spread, the standard error over the folds. Three rules make it robust to the
noise of small data:

- a difference inside one standard error of the best goes to the deeper block (Zeiler & Fergus and
  the source material: higher layers are more discriminative), and between candidates ending at the
  same depth to the one with fewer features;
- features are centred and divided by one global scale, not standardised per feature (see
  `global_scale`);
- C is chosen by cross-validated log-loss, the logistic regression's own objective, which keeps
  discriminating where accuracies tie; inside one standard error of the best, the smaller C (the
  stronger regularisation) wins. A best C at either end of the grid widens the grid.

Without two labelled images in every class there are no folds: the documented default is the
deepest block at `DEFAULT_C`, never a shallow block without evidence. Candidates are every block
and the pooled features of the top blocks concatenated (Head2Toe, Evci et al. 2022); the nearest
class mean's leave-one-out accuracy, a closed form, prunes them to `KEEP_AFTER_PROXY` before the
logistic regressions are fitted, so the search costs seconds on a hundred classes.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

FOLDS = 5
DEFAULT_C = 1.0
# Five values over four decades, around what small labelled sets picked in benchmarks/bench_auto.py;
# two decades more on the side where the best sits at the end, at most twice.
C_GRID = tuple(float(c) for c in np.logspace(-3, 1, 5))
WIDEN_TIMES = 2
CONCAT_TOP = 3
KEEP_AFTER_PROXY = 3
# With a thousand labelled images or more, three folds: their standard error is still small, and
# the logistic regressions cost 40% less.
LARGE = 1000
MAX_ITER = 200
TOLERANCE = 1e-3


@dataclass
class Candidate:
    """Features a linear probe can fit on: one block, or several blocks' pooled features concatenated."""

    layers: tuple[str, ...]
    depth: int  # position of its deepest block, shallow to deep

    @property
    def name(self) -> str:
        """`block6`, or `block6+block7+top` for a concatenation."""
        return "+".join(self.layers)


@dataclass
class Score:
    """One candidate's cross-validated accuracy (mean and standard error over folds) at its chosen C."""

    candidate: Candidate
    C: float | None
    accuracy: float
    sem: float
    log_loss: float | None = None
    proxy: float | None = None
    folds: list[float] = field(default_factory=list)
    grid: list[dict] = field(default_factory=list)  # per C: mean accuracy, log-loss and their spreads

    def describe(self) -> str:
        """`block6 84.2% ± 2.1 (C = 0.1)`."""
        c = "" if self.C is None else f" (C = {self.C:g})"
        return f"{self.candidate.name} {100 * self.accuracy:.1f}% ± {100 * self.sem:.1f}{c}"


@dataclass
class Selection:
    """The candidates scored, the one chosen with its C, how it was scored, and what each part cost."""

    scores: list[Score]
    chosen: Score
    method: str
    examples: int
    reasons: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def layers(self) -> tuple[str, ...]:
        """The blocks the chosen classifier fits on."""
        return self.chosen.candidate.layers

    @property
    def C(self) -> float:
        """The chosen regularisation."""
        return DEFAULT_C if self.chosen.C is None else float(self.chosen.C)


def held_in(splits) -> list[str]:
    """The labelled splits cross-validation pools: train and val, or train alone when no test split
    is held out (val is then the held-out score, so it must not help choose)."""
    return [s for s in ("train", "val") if s in splits] if "test" in splits else ["train"]


def candidates(blocks: list[str], concat_top: int = CONCAT_TOP) -> list[Candidate]:
    """Every block (shallow to deep), then the concatenation of the top `concat_top` blocks."""
    out = [Candidate((name,), depth) for depth, name in enumerate(blocks)]
    if concat_top > 1 and len(blocks) >= concat_top:
        out.append(Candidate(tuple(blocks[-concat_top:]), len(blocks) - 1))
    return out


def make_folds(y: np.ndarray, seed: int, folds: int = FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k folds, k = min(`folds`, the smallest class's count); none when a class has one image."""
    smallest = int(np.bincount(y)[np.unique(y)].min())
    k = min(folds if len(y) < LARGE else 3, smallest)
    if k < 2:
        return []
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def select(features: dict[str, np.ndarray], y: np.ndarray, blocks: list[str], *, seed: int = 0,
           grid: tuple[float, ...] = C_GRID, concat_top: int = CONCAT_TOP,
           keep: int = KEEP_AFTER_PROXY, class_weight: str | None = None) -> Selection:
    """Score the candidates built from `blocks` by cross-validation and choose one, with its C.

    `features` maps each block to its [N, views, D] features (one view: [N, 1, D]) of the
    labelled images, `y` their integer classes. Training folds fit on every view; held-out images
    are scored on the mean of their views, as the exported model predicts. `class_weight="balanced"`
    weights the logistic regressions as `data.balance` weights the final one.
    """
    y = np.asarray(y).reshape(-1)
    cands = candidates(blocks, concat_top)
    folds = make_folds(y, seed)
    if not folds:
        deepest = Candidate((blocks[-1],), len(blocks) - 1)
        chosen = Score(deepest, DEFAULT_C, float("nan"), float("nan"))
        smallest = int(np.bincount(y)[np.unique(y)].min())
        return Selection([chosen], chosen, "no folds", len(y), [
            f"a class has {smallest} labelled image: too few to cross-validate, so the deepest block "
            f"{blocks[-1]} at C = {DEFAULT_C:g}, the documented default"])
    method = f"{len(folds)}-fold cross-validation on {len(y)} labelled images"
    started = time.perf_counter()
    proxies = {c.name: _nearest_mean_loo(_stack(features, c).mean(axis=1), y) for c in cands}
    proxy_seconds = time.perf_counter() - started
    # The proxy keeps the best `keep` (ties to the deeper) and the concatenation; the deepest block
    # stays in as the prior the rules fall back on.
    ranked = sorted(cands, key=lambda c: (proxies[c.name], c.depth, -len(c.layers)), reverse=True)
    kept = {c.name for c in ranked[:keep]} | {cands[len(blocks) - 1].name} | {c.name for c in cands if len(c.layers) > 1}
    started = time.perf_counter()
    scores = []
    for c in cands:
        if c.name in kept:
            score = _logistic_cv(_stack(features, c), y, folds, grid, seed, class_weight)
            score.candidate = c
        else:
            score = Score(c, None, float("nan"), float("nan"))
        score.proxy = proxies[c.name]
        scores.append(score)
    logistic_seconds = time.perf_counter() - started
    fitted = [s for s in scores if s.C is not None]
    best = max(fitted, key=lambda s: s.accuracy)
    inside = [s for s in fitted if s.accuracy >= best.accuracy - best.sem]
    chosen = max(inside, key=lambda s: (s.candidate.depth, -len(s.candidate.layers)))
    reasons = [f"{method}: best {best.describe()}"]
    if chosen is not best:
        rule = ("the deeper block wins a tie" if chosen.candidate.depth > best.candidate.depth
                else "the candidate with fewer features wins a tie")
        reasons.append(f"{chosen.describe()} is within one standard error of it: {rule}")
    reasons.append(f"candidates pruned by the nearest class mean's leave-one-out accuracy ({proxy_seconds:.1f} s), "
                   f"logistic regressions on {len(fitted)} of {len(scores)} ({logistic_seconds:.1f} s)")
    return Selection(scores, chosen, method, len(y), reasons,
                     {"proxy": round(proxy_seconds, 3), "logistic": round(logistic_seconds, 3)})


def choose_C(stacked: np.ndarray, y: np.ndarray, *, seed: int = 0, grid: tuple[float, ...] = C_GRID,
             class_weight: str | None = None) -> Score:
    """Cross-validate a logistic regression's C on [N, views, D] features (see `select`); the default without folds."""
    y = np.asarray(y).reshape(-1)
    folds = make_folds(y, seed)
    if not folds:  # a given C stays given; else the default
        return Score(Candidate(("features",), 0), grid[0] if len(grid) == 1 else DEFAULT_C, float("nan"), float("nan"))
    return _logistic_cv(stacked, y, folds, grid, seed, class_weight)


def _stack(features: dict[str, np.ndarray], candidate: Candidate) -> np.ndarray:
    arrays = [features[name] for name in candidate.layers]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=-1)


def _nearest_mean_loo(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out accuracy of the nearest class mean on centred, globally scaled `x`, in closed form.

    Each image is compared with its own class's mean without itself: O(N K D), a second or less
    even for a hundred classes, where a ridge classifier's leave-one-out took 40 s on 2,626 images.
    """
    z = _standardise(x, x)
    classes = np.unique(y)
    index = np.searchsorted(classes, y)
    sums = np.stack([z[y == c].sum(axis=0) for c in classes])
    counts = np.array([(y == c).sum() for c in classes], dtype=np.float64)
    dots = z @ sums.T  # x . S_k
    sq = (z * z).sum(axis=1)
    means_sq = (sums * sums).sum(axis=1) / counts ** 2
    distance = sq[:, None] - 2 * dots / counts + means_sq  # ||x - S_k / n_k||^2
    own = np.arange(len(z)), index
    n = counts[index] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        alone = sq - 2 * (dots[own] - sq) / n + ((sums * sums).sum(axis=1)[index] - 2 * dots[own] + sq) / n ** 2
    distance[own] = np.where(n > 0, alone, np.inf)  # a class's only image has no mean without itself
    return float((distance.argmin(axis=1) == index).mean())


def global_scale(rows: np.ndarray) -> float:
    """One scale for every feature: the root mean square of the centred features.

    With a few dozen images, per-feature standardisation (Kornblith et al.'s protocol, made for
    thousands) divides by noisy estimates and inflates near-constant features: on flowers and
    satellite tiles at 5 images per class it cost 0.7-15 points of test accuracy (median 6.5)
    against centring and one scale (benchmarks/bench_feature_scaling.py).
    """
    scale = float(np.sqrt(np.mean(np.var(rows, axis=0))))
    return scale if scale > 0 else 1.0


def _standardise(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (x - reference.mean(axis=0)) / global_scale(reference)


def _logistic_cv(stacked: np.ndarray, y: np.ndarray, folds, grid, seed: int, class_weight: str | None = None) -> Score:
    """Per C: accuracy and log-loss over the folds; C by log-loss (one standard error to the smaller), widening
    the grid where the best sits at an end."""
    grid = sorted(float(c) for c in grid)
    results: dict[float, tuple[list[float], list[float]]] = {}
    widened = 0
    while True:  # every grid is fitted before it is judged; at most WIDEN_TIMES widenings
        todo = [c for c in grid if c not in results]
        for c, (acc, loss) in _fold_path(stacked, y, folds, todo, seed, class_weight).items():
            results[c] = (acc, loss)
        losses = {c: float(np.mean(results[c][1])) for c in grid}
        best = min(grid, key=lambda c: losses[c])
        if len(grid) == 1 or widened == WIDEN_TIMES:  # a given C is scored, not searched
            break
        if best == grid[0]:
            grid = [grid[0] / 100, grid[0] / 10, *grid]
        elif best == grid[-1]:
            grid = [*grid, grid[-1] * 10, grid[-1] * 100]
        else:
            break
        widened += 1
    grid = sorted(results)
    table = [{"C": c, "accuracy": float(np.mean(results[c][0])), "accuracy_sem": _sem(results[c][0]),
              "log_loss": float(np.mean(results[c][1])), "log_loss_sem": _sem(results[c][1])} for c in grid]
    best = min(table, key=lambda row: row["log_loss"])
    chosen = min((row for row in table if row["log_loss"] <= best["log_loss"] + best["log_loss_sem"]),
                 key=lambda row: row["C"])
    acc = results[chosen["C"]][0]
    return Score(Candidate(("features",), 0), chosen["C"], float(np.mean(acc)), _sem(acc), chosen["log_loss"],
                 folds=[float(a) for a in acc], grid=table)


def _fold_path(stacked, y, folds, grid, seed, class_weight=None) -> dict[float, tuple[list[float], list[float]]]:
    """Accuracy and log-loss of every C in `grid` on every fold, each fold's path warm-started from small C."""
    out = {c: ([], []) for c in grid}
    if not grid:
        return out
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        # Small dense problems: BLAS threads only wait on each other (and on TensorFlow's), so one
        # thread ran these fits 10-50 times faster on 2 shared cores.
        _fill_path(out, stacked, y, folds, grid, class_weight)
    return out


def _fill_path(out, stacked, y, folds, grid, class_weight) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    views, dim = stacked.shape[1], stacked.shape[2]
    for train, held_out in folds:
        rows = stacked[train].reshape(-1, dim)
        mean, scale = rows.mean(axis=0), global_scale(rows)
        zt, yt = (rows - mean) / scale, np.repeat(y[train], views)
        zv, yv = (stacked[held_out].mean(axis=1) - mean) / scale, y[held_out]
        if len(zt) < dim:
            # An L2-regularised linear model's weights lie in the span of its training rows (the
            # representer theorem), so fitting on the rows' coordinates in that span gives the same
            # predictions, on N columns instead of D.
            # The basis comes from the N x N Gram matrix's eigenvectors: LAPACK's SVD of the
            # N x D rows took 0.3-0.5 s on 2 cores, the Gram route 2 ms.
            values, vectors = np.linalg.eigh(zt @ zt.T)
            keep = values > max(values.max(), 1e-30) * 1e-10
            keep[-1] = True  # constant features still leave one column to fit an intercept beside
            vectors, root = vectors[:, keep], np.sqrt(values[keep])
            zt, zv = vectors * root, (zv @ zt.T) @ vectors / root
        estimator = LogisticRegression(C=grid[0], max_iter=MAX_ITER, tol=TOLERANCE, warm_start=True,
                                       class_weight=class_weight)
        for c in sorted(grid):
            estimator.set_params(C=c)
            with warnings.catch_warnings():
                # A weakly regularised fit on separable features never "converges"; its score decides.
                warnings.simplefilter("ignore", ConvergenceWarning)
                estimator.fit(zt, yt)
            proba = estimator.predict_proba(zv)
            column = {cls: i for i, cls in enumerate(estimator.classes_)}
            picked = np.array([proba[i, column[t]] if t in column else 0.0 for i, t in enumerate(yv)])
            out[c][0].append(float((estimator.classes_[proba.argmax(axis=1)] == yv).mean()))
            out[c][1].append(float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0)))))


def _sem(values: list[float]) -> float:
    """Standard error of the mean over folds."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
