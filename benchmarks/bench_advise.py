"""The experiment behind the advisor's thresholds (README, "Choosing a strategy").

1. Similarity: the advisor's two measurements (probe gap between the best earlier block and the
   top block, and the BatchNorm shift) for ImageNet EfficientNet-Lite0 on a domain like its
   source (the flower photos of ../shared/data/flowers5, when present) and one unlike it (the
   embedded 8x8 digits), each with 5 examples per class and with all of them.
2. Size: on digits, the frozen backbone (a head on cached features) against fine-tuning the
   top two blocks after it, at k examples per class: where fine-tuning starts to pay.

    python benchmarks/bench_advise.py [--image-size 64] [--flowers ../shared/data/flowers5] [--sizes 5 10 30 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from keras_transfer.config import from_dict


def _raw(source: str, size: int, few_shot, stages=None) -> dict:
    raw = {"data": {"source": source, "image_size": [size, size], "few_shot": few_shot, "augment": []},
           "model": {"backbone": "efficientnet_lite0"}}
    if stages:
        raw["training"] = {"stages": stages}
    return raw


def similarity(sources: list[str], size: int) -> None:
    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import load_data
    from keras_transfer.features.advise import BN_SHIFT_LIMIT, PROBE_MARGIN, advise

    print(f"similarity (limits: probe gap {PROBE_MARGIN:.2f}, BN shift {BN_SHIFT_LIMIT:.2f}), {size}x{size}:")
    print(f"  {'data':<34} {'per class':>9} {'top':>6} {'best earlier':>18} {'gap':>6} {'BN shift':>8}  placed")
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(size, size, 3))
    for source in sources:
        for few_shot in (5, None):
            config = from_dict(_raw(source, size, few_shot))
            a = advise(config, backbone, load_data(config.data))
            print(f"  {source:<34} {a.examples_per_class:>9g} {a.top_accuracy:>6.1%} {a.best_layer:>8} "
                  f"{a.best_accuracy:>9.1%} {a.best_accuracy - a.top_accuracy:>+6.1%} {a.bn_shift:>8.2f}  {a.situation}")


def size_threshold(sizes: list[int], image_size: int) -> None:
    from keras_transfer.training import run

    frozen = [{"name": "head", "train": "head", "epochs": 15, "learning_rate": 0.01, "cache_features": "always"}]
    tuned = frozen + [{"name": "top", "train": "top:2", "epochs": 10, "learning_rate": 0.001,
                       "block_lr_decay": 0.5, "early_stopping": {"monitor": "val_loss", "patience": 3}}]
    print(f"size: digits 0-9, frozen backbone vs fine-tuning the top two blocks, {image_size}x{image_size} (test accuracy):")
    print(f"  {'per class':>9} {'frozen':>8} {'fine-tuned':>11} {'gain':>7}")
    for k in sizes:
        scores = []
        for stages in (frozen, tuned):
            with tempfile.TemporaryDirectory() as folder:
                result = run(from_dict(_raw("digits", image_size, k, stages)), folder, log=lambda line: None)
                scores.append(result.metrics["test"]["accuracy"])
        print(f"  {k:>9} {scores[0]:>8.1%} {scores[1]:>11.1%} {scores[1] - scores[0]:>+7.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--flowers", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/flowers5")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 30, 100])
    args = parser.parse_args()
    sources = ([f"folder:{args.flowers}"] if args.flowers.is_dir() else []) + ["digits"]
    similarity(sources, args.image_size)
    size_threshold(args.sizes, args.image_size)


if __name__ == "__main__":
    main()
