"""Choosing C for the linear SVM against logistic regression, as ratios measured in one run.

On the same standardised features, `fit_classifier("linear_svm", ...)` (L-BFGS along a
warm-started C path) and `fit_classifier("logistic", ...)` choose C over the nine-value grid on
a validation split and fit the final classifier; the goal is at most 3x logistic's time. The
previous solver (liblinear's `LinearSVC`, dual coordinate descent, one cold fit per C) runs too,
for its time and accuracy (`--skip-liblinear` leaves it out: minutes). Two feature sets:

1. synthetic: 3,000 x 1,280 train and 1,000 validation / test rows, five Gaussian classes with a
   shared low-rank structure;
2. flowers: EfficientNet-Lite0 (ImageNet) pooled features of ../shared/data/flowers5 at
   `--image-size` (train / validation / test as `load_data` carves them; cached after one run).

    python benchmarks/bench_svm.py [--image-size 128] [--skip-liblinear] [--features synthetic,flowers]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
FLOWERS = next((p for p in (_ROOT.parent / "shared", _ROOT.parent.parent / "shared") if p.is_dir()),
               _ROOT.parent / "shared") / "data" / "flowers5"


def synthetic(seed: int = 0):
    """(train, validation, test) pairs of 3,000 / 1,000 / 1,000 rows of 1,280 features, five classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.15, size=(5, 1280))
    basis = rng.normal(size=(64, 1280))

    def sample(n):
        y = rng.integers(0, 5, n)
        return centres[y] + 0.3 * rng.normal(size=(n, 64)) @ basis + rng.normal(size=(n, 1280)), y

    return sample(3000), sample(1000), sample(1000)


def flowers(image_size: int):
    """(train, validation, test) Lite0 features of flowers5 at image_size."""
    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features import extract_features

    data = load_data(DataConfig(source=f"folder:{FLOWERS}", image_size=image_size, augment=()))
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(image_size, image_size, 3))
    features = extract_features(backbone, data)
    return tuple(features.xy(split) for split in ("train", "val", "test"))


def liblinear_selection(train, val, test) -> tuple[float, float, float]:
    """The previous linear SVM: LinearSVC per C of the grid, the best on validation refitted; (s, C, accuracy)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from keras_transfer.features.classifiers import C_GRID

    started = time.perf_counter()
    scaler = StandardScaler().fit(train[0])
    z, zv, zt = (scaler.transform(x) for x in (train[0], val[0], test[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = [(float((LinearSVC(C=c, max_iter=1000, random_state=0).fit(z, train[1]).predict(zv) == val[1]).mean()), -i)
                  for i, c in enumerate(C_GRID)]
        best = C_GRID[-max(scores)[1]]
        final = LinearSVC(C=best, max_iter=1000, random_state=0).fit(z, train[1])
    return time.perf_counter() - started, best, float((final.predict(zt) == test[1]).mean())


def compare(name: str, train, val, test, liblinear: bool) -> None:
    """Print selection time, chosen C and test accuracy of each classifier on one feature set."""
    from keras_transfer.features import fit_classifier

    print(f"{name}: {train[0].shape[0]:,} x {train[0].shape[1]:,} train, {len(val[1]):,} validation, "
          f"{len(test[1]):,} test")
    times = {}
    for kind in ("logistic", "linear_svm"):
        started = time.perf_counter()
        classifier = fit_classifier(kind, *train, validation=val)
        times[kind] = time.perf_counter() - started
        print(f"  {kind:22s} {times[kind]:7.1f} s  C={classifier.chosen['C']:g}  test {classifier.score(*test):.3f}")
    if liblinear:
        seconds, c, accuracy = liblinear_selection(train, val, test)
        print(f"  {'linear_svm (liblinear)':22s} {seconds:7.1f} s  C={c:g}  test {accuracy:.3f}")
    print(f"  SVM / logistic selection time: {times['linear_svm'] / times['logistic']:.2f}x (goal: at most 3x)"
          + (f"; liblinear / logistic: {seconds / times['logistic']:.1f}x" if liblinear else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--skip-liblinear", action="store_true", help="leave out the previous solver (minutes)")
    parser.add_argument("--features", default="synthetic,flowers", help="which feature sets, comma-separated")
    args = parser.parse_args()
    chosen = args.features.split(",")
    if "synthetic" in chosen:
        compare("synthetic", *synthetic(), liblinear=not args.skip_liblinear)
    if "flowers" in chosen:
        compare(f"flowers5, Lite0 at {args.image_size} px", *flowers(args.image_size), liblinear=not args.skip_liblinear)


if __name__ == "__main__":
    main()
