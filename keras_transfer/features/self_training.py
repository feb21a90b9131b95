"""Self-training on cached features: pseudo-label the confident unlabelled images, refit, repeat.

The oldest semi-supervised recipe (Yarowsky 1995; "pseudo-labelling", Lee 2013): a classifier
fitted on the labelled images predicts the unlabelled ones; the most confident join the training
set with the predicted class; the classifier is refitted and the round repeats, each round
re-deciding every pseudo-label with the newest classifier. On frozen, cached features (feature
extraction) a round costs one classifier fit.

Which images join is class-balanced and grows by round (Zou et al. 2018, CBST): round r of R
takes, per predicted class, the most confident images up to `share * r / R` of the pool's
per-class share. A fixed probability threshold alone lets the class the shifted domain looks
most like swallow the pool: on plates, thresholded rounds took 290 images of which 41% were
right and gained nothing, where balanced ones gained 4-8 points
(`benchmarks/bench_unlabeled.py`). `threshold` still bars any image below that probability.

The unlabelled images' own labels, when a source has them, never reach this module's fits:
`self_train` takes features only, and a `score` callback (for experiments) that says how many of
a round's pseudo-labels were right, for the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from keras_transfer.features.classifiers import FeatureClassifier, fit_classifier


@dataclass
class SelfTrainingRound:
    """One round: how many unlabelled images were taken, per class, and (when known) how many were right."""

    round: int
    taken: int
    unlabeled: int
    per_class: list[int]
    right: int | None = None

    def line(self) -> str:
        """One line for the run log."""
        right = "" if self.right is None else f", {self.right:,} right ({self.right / max(self.taken, 1):.1%})"
        return (f"self-training round {self.round}: took {self.taken:,} of {self.unlabeled:,} unlabelled images "
                f"(per class {self.per_class}){right}")

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return asdict(self)


def self_train(kind: str, x: np.ndarray, y: np.ndarray, unlabeled: np.ndarray, *, num_classes: int,
               scaling: str = "features",
               rounds: int = 3, threshold: float = 0.0, share: float = 0.6,
               validation: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0,
               classifier: FeatureClassifier | None = None,
               score: Callable[[np.ndarray, np.ndarray], int | None] | None = None,
               log: Callable[[str], None] | None = None) -> tuple[FeatureClassifier, list[SelfTrainingRound]]:
    """Fit `kind` on labelled features (`x`, `y`), then `rounds` times pseudo-label the most
    confident `unlabeled` features, class by class (round r: up to `share * r / rounds` of the
    pool's size over the classes, per class, each at least `threshold` probability), and refit on both.

    `classifier` is the round-0 fit when the caller already has it; its C (or k), chosen on
    `validation` as in `fit_classifier`, is kept for every round (a round is then one fit, not a
    search). `score(indices, pseudo_labels)` may count the right ones
    for the report; it never changes what is fitted. Returns the last classifier and one
    `SelfTrainingRound` per round.
    """
    x, y = np.asarray(x), np.asarray(y)
    unlabeled = np.asarray(unlabeled)
    current = classifier or fit_classifier(kind, x, y, num_classes=num_classes, validation=validation, seed=seed)
    grid = tuple(current.chosen.values())
    history = []
    for number in range(1, rounds + 1):
        if not len(unlabeled):
            break
        probabilities = current.predict_proba(unlabeled)
        pseudo = probabilities.argmax(axis=1)
        taken = balanced_picks(probabilities, share * number / rounds, threshold)
        report = SelfTrainingRound(number, int(len(taken)), int(len(unlabeled)),
                                   np.bincount(pseudo[taken], minlength=num_classes).astype(int).tolist(),
                                   score(taken, pseudo[taken]) if score is not None else None)
        history.append(report)
        if log:
            log(report.line())
        if not len(taken):
            break  # nothing confident: another round would fit the same classifier again
        current = fit_classifier(kind, np.concatenate([x, unlabeled[taken]]), np.concatenate([y, pseudo[taken]]),
                                 num_classes=num_classes, validation=validation, grid=grid, seed=seed,
                                 scaling=scaling)
    return current, history


def balanced_picks(probabilities: np.ndarray, share: float, threshold: float = 0.0) -> np.ndarray:
    """Indices of the rows to pseudo-label: per predicted class, the most confident rows with top
    probability at least `threshold`, up to `share` of the rows divided by the classes."""
    predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    quota = int(np.ceil(share * len(probabilities) / probabilities.shape[1]))
    picks = []
    for c in range(probabilities.shape[1]):
        rows = np.flatnonzero((predicted == c) & (confidence >= threshold))
        picks.append(rows[np.argsort(-confidence[rows], kind="stable")[:quota]])
    return np.sort(np.concatenate(picks)).astype(int)
