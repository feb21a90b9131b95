"""Regression end to end on real features, and what standardising the targets buys, in one run.

The embedded digits become a regression set: an `.npz` whose float `y` is the digit's value
(0-9) times `--scale`. A linear head on cached EfficientNet-Lite0 features trains for `--epochs`
at `--lr` (default 0.01, the head rate of the packaged configs), once as the toolkit builds it (the head
learns standardised targets, `head_target_units` rescales them) and once without that layer (the
head must reach the targets' own scale by itself). Printed: test MAE and R^2 of each, at each scale.

    python benchmarks/bench_regression.py [--image-size 96] [--epochs 10] [--scales 1,100] [--lr 0.01]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_transfer.config import from_dict


def digits_npz(folder: Path, image_size: int, scale: float) -> Path:
    """The embedded digits as an .npz whose float y is the digit's value times `scale`."""
    from keras_transfer.data import load_embedded

    digits = load_embedded("digits", (image_size, image_size))
    path = folder / f"digits_x{scale:g}.npz"
    np.savez(path, x=digits.images, y=digits.labels.astype(np.float64) * scale)
    return path


def train(source: Path, image_size: int, epochs: int, standardise: bool, lr: float) -> tuple[dict, float]:
    """Test metrics and seconds of one head-only run on `source`."""
    import keras_transfer.training.engine as engine
    from keras_transfer.training import run

    raw = {"data": {"source": str(source), "image_size": [image_size, image_size], "augment": []},
           "model": {"backbone": "efficientnet_lite0"},
           "training": {"stages": [{"name": "head", "train": "head", "epochs": epochs, "learning_rate": lr}]}}
    original = engine.build_classifier
    if not standardise:  # the same head without head_target_units
        engine.build_classifier = lambda *args, target_scale=None, **kwargs: original(*args, **kwargs)
    try:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            result = run(from_dict(raw), Path(folder) / "run", log=lambda _: None)
        return result.metrics["test"], time.perf_counter() - started
    finally:
        engine.build_classifier = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--scales", default="1,100")
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for scale in (float(s) for s in args.scales.split(",")):
            source = digits_npz(Path(folder), args.image_size, scale)
            scored = {name: train(source, args.image_size, args.epochs, flag, args.lr)
                      for name, flag in (("standardised", True), ("raw", False))}
            for name, (test, seconds) in scored.items():
                print(f"digit value x{scale:g}, {name:>12} head: test MAE {test['mae']:.3f} "
                      f"({test['mae'] / scale:.3f} digits), R^2 {test['r2']:.3f}, {seconds:.0f} s")
            ratio = scored["raw"][0]["mae"] / scored["standardised"][0]["mae"]
            print(f"digit value x{scale:g}: raw head's MAE / standardised head's MAE = {ratio:.2f}x")


if __name__ == "__main__":
    main()
