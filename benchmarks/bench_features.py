"""Feature-extraction speed, as ratios measured in one run (EfficientNet-Lite0, embedded digits).

1. Throughput: `extract_features` (one layer, and every block at once) vs a bare compiled
   `tf.function` forward pass of the same backbone over the same tf.data pipeline
   (goal: at least 90%). Fastest of `--repeats` alternating runs each, after one warm-up.
2. The cache: a second `extract_features` call (a file read) vs the first.

    python benchmarks/bench_features.py [--image-size 224] [--images 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf

    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features import extract_features

    size = (args.image_size, args.image_size)
    data = load_data(DataConfig(source="digits", image_size=size, val_split=0.0, test_split=0.0, few_shot=None,
                                augment=(), cache="memory"))
    data.splits = {"train": data.splits["train"].subset(np.arange(args.images))}
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(*size, 3))
    forward = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)

    def bare() -> float:
        started = time.perf_counter()
        for x, _ in data.dataset("train", training=False):
            forward(x).numpy()
        return time.perf_counter() - started

    def toolkit(layers) -> float:
        started = time.perf_counter()
        extract_features(backbone, data, layers, cache=False)
        return time.perf_counter() - started

    bare(), toolkit(None), toolkit("blocks")  # trace and fill the decoded-image cache
    times = {"bare": [], "one": [], "blocks": []}
    for _ in range(args.repeats):
        times["bare"].append(bare())
        times["one"].append(toolkit(None))
        times["blocks"].append(toolkit("blocks"))
    best = {k: min(v) for k, v in times.items()}
    rate = {k: args.images / v for k, v in best.items()}
    print(f"EfficientNet-Lite0 at {size[0]}x{size[1]}, {args.images} images, best of {args.repeats}:")
    print(f"  compiled forward (bare)       {rate['bare']:7.1f} images/s")
    print(f"  extract_features, top layer   {rate['one']:7.1f} images/s  = {rate['one'] / rate['bare']:.1%} of bare (goal >= 90%)")
    print(f"  extract_features, 9 blocks    {rate['blocks']:7.1f} images/s  = {rate['blocks'] / rate['bare']:.1%} of bare")

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        extract_features(backbone, data, "blocks", cache_dir=folder)
        first = time.perf_counter() - started
        started = time.perf_counter()
        extract_features(backbone, data, "blocks", cache_dir=folder)
        second = time.perf_counter() - started
    print(f"  cache: first call {first:.2f} s, second call {second:.3f} s ({first / second:.0f}x faster)")


if __name__ == "__main__":
    main()
