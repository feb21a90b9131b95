"""The experiment behind the advisor's thresholds (docs/choosing.md).

1. Similarity: the advisor's two measurements (probe gap between the best earlier block and the
   top block, and the BatchNorm shift) for ImageNet EfficientNet-Lite0 on a domain like its
   source (the flower photos of ../shared/data/flowers5, when present) and one unlike it (the
   embedded 8x8 digits), each with 5 examples per class and with all of them.
2. Size: on the flower photos (digits without them), the packaged small_similar recipe (frozen
   backbone, head only) against large_similar (head, then the top three blocks, then the whole
   network), at k examples per class: where fine-tuning starts to pay.

    python benchmarks/bench_advise.py [--image-size 64] [--flowers ../shared/data/flowers5] [--sizes 5 15 30 60 120]
                                      [--seeds 0 1] [--skip-similarity] [--skip-size]
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
    from keras_transfer.features.advisor import BN_SHIFT_LIMIT, PROBE_MARGIN, advise

    print(f"similarity (limits: probe gap {PROBE_MARGIN:.2f}, BN shift {BN_SHIFT_LIMIT:.2f}), {size}x{size}:")
    print(f"  {'data':<34} {'per class':>9} {'top':>6} {'best earlier':>18} {'gap':>6} {'BN shift':>8}  placed")
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(size, size, 3))
    for source in sources:
        for few_shot in (5, None):
            config = from_dict(_raw(source, size, few_shot))
            a = advise(config, backbone, load_data(config.data))
            print(f"  {source:<34} {a.examples_per_class:>9g} {a.top_accuracy:>6.1%} {a.best_layer:>8} "
                  f"{a.best_accuracy:>9.1%} {a.best_accuracy - a.top_accuracy:>+6.1%} {a.bn_shift:>8.2f}  {a.situation}")


def size_threshold(source: str, sizes: list[int], image_size: int, seeds: list[int]) -> None:
    """Test accuracy of the packaged small recipe against the large one, at k examples per class."""
    from importlib import resources

    import yaml

    from keras_transfer.training import run

    def stages(name: str) -> list[dict]:
        text = resources.files("keras_transfer").joinpath(f"configs/{name}.yaml").read_text()
        return yaml.safe_load(text)["training"]["stages"]

    recipes = {"small (frozen, head only)": stages("small_similar"),
               "large (head, top:3, full)": stages("large_similar")}
    print(f"size: {source}, {image_size}x{image_size}, the small_similar recipe vs the large_similar one "
          f"(test accuracy, mean of seeds {seeds}):")
    print(f"  {'per class':>9} " + " ".join(f"{name:>26}" for name in recipes) + f" {'large - small':>14}")
    for k in sizes:
        scores = []
        for recipe in recipes.values():
            accuracy = []
            for seed in seeds:
                raw = _raw(source, image_size, k, recipe)
                raw["data"]["seed"] = raw.setdefault("training", {})["seed"] = seed
                with tempfile.TemporaryDirectory() as folder:
                    result = run(from_dict(raw), folder, log=lambda line: None)
                accuracy.append(result.metrics["test"]["accuracy"])
            scores.append(sum(accuracy) / len(accuracy))
        print(f"  {k:>9} " + " ".join(f"{v:>26.1%}" for v in scores) + f" {scores[1] - scores[0]:>+14.1%}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--flowers", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/flowers5")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 15, 30, 60, 120])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-similarity", action="store_true")
    parser.add_argument("--skip-size", action="store_true")
    args = parser.parse_args()
    sources = ([f"folder:{args.flowers}"] if args.flowers.is_dir() else []) + ["digits"]
    if not args.skip_similarity:
        similarity(sources, args.image_size)
    if not args.skip_size:
        size_threshold(sources[0], args.sizes, args.image_size, args.seeds)


if __name__ == "__main__":
    main()
