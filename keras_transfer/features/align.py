"""Feature statistics re-estimated on the target domain (`model.adapt: feature_stats`).

A linear classifier on frozen features learns under the labelled images' feature statistics:
it standardises every feature with their mean and spread. Images from another domain (number
plates where the labels came from printed digits) give features centred and spread elsewhere,
and the classifier reads that offset as evidence for some class. Re-estimating the
standardisation on the unlabelled target images is AdaBN (Li et al., 2016) applied to the one
normalisation a feature-extraction classifier has: every feature is mapped so that its target
mean and spread match the source's, then classified as before. No label of the target is read.

Measured on plates (`benchmarks/bench_unlabeled.py`): ImageNet Lite0 features at 64 px went from
near chance to +28 points, where re-estimating Lite0's 49 BatchNorm layers (`adabn`) fell below
source-only; on a small source CNN trained on printed digits both help.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_transfer.features.classifiers import FeatureClassifier


@dataclass
class FeatureAlignment:
    """Per-feature mean and spread of the source (labelled) and target (unlabelled) features."""

    source_mean: np.ndarray
    source_std: np.ndarray
    target_mean: np.ndarray
    target_std: np.ndarray

    def to_source(self, x: np.ndarray) -> np.ndarray:
        """Target features mapped onto the source's statistics, feature by feature."""
        x = np.asarray(x, dtype=np.float64)
        return (x - self.target_mean) / self.target_std * self.source_std + self.source_mean

    def retarget(self, classifier: FeatureClassifier) -> FeatureClassifier:
        """`classifier` (fitted on source features) folded with `to_source`, so that it takes raw
        target features: its standardisation becomes the target's. The estimator is shared."""
        ratio = self.target_std / self.source_std
        classifier.mean = self.target_mean + (classifier.mean - self.source_mean) * ratio
        classifier.scale = classifier.scale * ratio
        return classifier

    def shift(self) -> float:
        """How far the target sits from the source: the mean over features of the distance between
        their means, in source standard deviations (what the log reports)."""
        return float(np.mean(np.abs(self.target_mean - self.source_mean) / self.source_std))


def feature_alignment(source: np.ndarray, target: np.ndarray) -> FeatureAlignment:
    """The per-feature statistics of `source` and `target` features ([N, D] each, D equal).

    A feature constant on one side keeps a spread of 1 there, so it passes through unscaled
    rather than dividing by zero."""
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"feature statistics need [N, D] source and target features of one width; got "
                         f"{source.shape} and {target.shape}")
    if len(target) < 2:
        raise ValueError(f"feature statistics need at least 2 unlabelled images, got {len(target)}")

    def spread(x: np.ndarray) -> np.ndarray:
        std = x.std(axis=0)
        return np.where(std > 1e-12, std, 1.0)

    return FeatureAlignment(source.mean(axis=0), spread(source), target.mean(axis=0), spread(target))


# `adaptation_plan`'s rule. Per-feature means and spreads need a few dozen images to be better
# than the labelled ones'; self-training pays when pseudo-labels can outnumber labels.
FEATURE_STATS_FROM = 30
SELF_TRAINING = {"rounds": 3, "share": 0.6}


def adaptation_plan(n_unlabeled: int, n_labeled: int) -> dict:
    """What `recipe: auto` adds to feature extraction for `n_unlabeled` unlabelled images, as
    config values with one reason each: {"adapt": "feature_stats" | "none", "self_training":
    {...} | None, "reasons": [...]}.

    The rule: `model.adapt: feature_stats` from `FEATURE_STATS_FROM` unlabelled images (where
    the domains match the statistics barely move, and where they differ it gained 4-28 points
    on plates); `training.self_training: SELF_TRAINING` when the unlabelled images outnumber the
    labelled ones. BatchNorm re-estimation (`adabn`) is never picked: on ImageNet Lite0 it fell
    below source-only on plates (`benchmarks/bench_unlabeled.py`); a user may still name it.
    """
    if n_unlabeled <= 0:
        return {"adapt": "none", "self_training": None, "reasons": ["no unlabelled images (data.unlabeled)"]}
    if n_unlabeled >= FEATURE_STATS_FROM:
        adapt, reasons = "feature_stats", [f"feature statistics: the classifier standardises with the {n_unlabeled:,} "
                                           "unlabelled images' own feature means and spreads"]
    else:
        adapt, reasons = "none", [f"no feature statistics: {n_unlabeled:,} unlabelled images are fewer than "
                                  f"{FEATURE_STATS_FROM}"]
    self_training = None
    if n_unlabeled > n_labeled:
        self_training = dict(SELF_TRAINING)
        reasons.append(f"self-training: {n_unlabeled:,} unlabelled images outnumber the {n_labeled:,} labelled ones")
    else:
        reasons.append(f"no self-training: {n_unlabeled:,} unlabelled images do not outnumber the "
                       f"{n_labeled:,} labelled ones")
    return {"adapt": adapt, "self_training": self_training, "reasons": reasons}
