"""Is the input pipeline fast enough? Pipeline images/s against training images/s, in one run.

Reads the real flower photos (../shared/data/flowers5, or --folder), decodes, resizes to 224x224
and augments them through `keras_transfer.data`, and times a whole uncached epoch and a cached
one. Then times the training step it must feed: EfficientNet-Lite0 (ImageNet weights) with a new
head, the head plus the top block trainable, batch 32. Goal: pipeline >= 5x the training step.

    python benchmarks/bench_pipeline.py [--folder PATH] [--steps 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"


def pipeline_rate(folder: Path, cache: str) -> tuple[float, int]:
    from keras_transfer.data import DataConfig, load_data

    config = DataConfig(source=f"folder:{folder}", image_size=(224, 224), batch_size=32, val_split=0.0,
                        test_split=0.0, augment=("flip", "rotation", "zoom"), cache=cache)
    bundle = load_data(config)
    dataset = bundle.dataset("train")
    count = 0
    if cache != "none":
        for _, labels in dataset:  # fill the cache first: steady-state epochs read from it
            count += len(labels)
    start, count = time.perf_counter(), 0
    for _, labels in dataset:
        count += len(labels)
    return count / (time.perf_counter() - start), count


def training_rate(steps: int) -> float:
    import keras

    from keras_transfer.backbones import build_backbone
    from keras_transfer.freeze import set_trainable
    from keras_transfer.heads import build_classifier

    model = build_classifier(build_backbone("efficientnet_lite0", weights="imagenet"), 5)
    set_trainable(model, "top:1")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 5, 32)
    model.train_on_batch(x, y)  # compile and warm up
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * 32 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"no photos at {args.folder}: pass --folder PATH (class folders of images)")
    uncached, n = pipeline_rate(args.folder, "none")
    cached, _ = pipeline_rate(args.folder, "memory")
    train = training_rate(args.steps)
    print(f"images per epoch:                         {n}")
    print(f"pipeline, decode+resize+augment, uncached: {uncached:8.0f} images/s")
    print(f"pipeline, cached decode, augment:          {cached:8.0f} images/s")
    print(f"training step (Lite0 head + top block):    {train:8.0f} images/s")
    print(f"ratio uncached pipeline / training:        {uncached / train:8.1f}x (goal >= 5x)")
    print(f"ratio cached pipeline / training:          {cached / train:8.1f}x")


if __name__ == "__main__":
    main()
