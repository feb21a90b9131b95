"""A frozen backbone's forward pass on Keras (compiled `tf.function`) vs onnxruntime, and their agreement.

EfficientNet-Lite0 (ImageNet weights, offline) at 224x224 as a pooled-feature model (the model
`extract_features` runs for the top layer), batch 32: images per second through each runtime,
measured round-robin in `--rounds` rounds of `--batches` batches (the cores are shared: a burst of
load elsewhere falls on both alike), after one warm-up batch each; the median round counts. Also
the conversion's time and the largest absolute difference of the features over every measured
batch (the goal of issue 28: at least 1.5x the images per second, identical to 1e-4). Then the
same through `extract_features` end to end (the tf.data pipeline included, the converted model
read from the cache), `--images` images, Keras and onnxruntime alternating `--repeats` times.

    python benchmarks/bench_frozen_runtime.py [--backbone efficientnet_lite0] [--size 224] [--batch 32]
                                              [--batches 4] [--rounds 5] [--weights imagenet]
                                              [--images 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet", help="'none' for random weights (speed only)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="batches per round and runtime")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=256, help="images for the end-to-end extract_features part")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import tensorflow as tf

    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features import extract_features, feature_model
    from keras_transfer.forward import compiled_forward, frozen_forward
    from keras_transfer.forward.runtime import onnx_threads

    size = (args.size, args.size)
    weights = None if args.weights == "none" else args.weights
    backbone = build_backbone(args.backbone, weights=weights, input_shape=(*size, 3))
    model = feature_model(backbone, [backbone.layers[-1].name], "avg")
    # Real images, not noise, for the parity figure: scikit-learn's digits upsampled, as
    # bench_features.py uses; decoded once and held as tensors, so the pipeline is not timed.
    per_class = -(-args.batch * args.batches // 10)
    data = load_data(DataConfig(source="digits", image_size=size, val_split=0.0, test_split=0.0, few_shot=per_class,
                                augment=(), cache="none", batch_size=args.batch))
    batches = [tf.constant(x) for x, _ in data.dataset("train", training=False).take(args.batches)]

    keras_step = compiled_forward(model, as_list=True)
    folder = tempfile.mkdtemp(prefix="bench-frozen-")
    started = time.perf_counter()
    lines: list[str] = []
    onnx_step = frozen_forward(model, runtime="onnx", cache_dir=Path(folder) / backbone.name, log=lines.append)
    onnx_step(batches[0])  # converts, checks parity on the first images, caches the converted model
    convert_s = time.perf_counter() - started
    if onnx_step.runtime != "onnxruntime":
        raise SystemExit(f"onnxruntime was refused: {onnx_step.reason}")
    calls = {"keras": lambda x: np.asarray(keras_step(x)[0]), "onnxruntime": lambda x: onnx_step(x)[0]}
    calls["keras"](batches[0])  # traces

    rates: dict[str, list[float]] = {name: [] for name in calls}
    difference, scale = 0.0, 0.0
    for _ in range(args.rounds):
        outputs = {}
        for name, call in calls.items():
            start = time.perf_counter()
            outputs[name] = [call(x) for x in batches]
            rates[name].append(args.batch * len(batches) / (time.perf_counter() - start))
        for a, b in zip(outputs["keras"], outputs["onnxruntime"]):
            difference = max(difference, float(np.abs(a - b).max()))
            scale = max(scale, float(np.abs(a).max()))
    median = {name: statistics.median(r) for name, r in rates.items()}
    ranges = {name: f"{min(r):.0f}-{max(r):.0f}" for name, r in rates.items()}
    print(f"{args.backbone} ({args.weights}) at {size[0]}x{size[1]}, pooled top features, batch {args.batch}, "
          f"{args.rounds} rounds of {args.batches} batches; onnxruntime on {onnx_threads()} threads")
    print(f"  conversion + parity check      {convert_s:6.1f} s  ({lines[0] if lines else ''})")
    print(f"  Keras (compiled tf.function)   {median['keras']:6.1f} images/s  (rounds {ranges['keras']})")
    print(f"  onnxruntime                    {median['onnxruntime']:6.1f} images/s  (rounds {ranges['onnxruntime']})"
          f"  = {median['onnxruntime'] / median['keras']:.2f}x Keras (goal >= 1.5x)")
    print(f"  max |difference| of the features  {difference:.2g} (features up to {scale:.3g}; goal <= 1e-4)")

    per_class = -(-args.images // 10)
    data = load_data(DataConfig(source="digits", image_size=size, val_split=0.0, test_split=0.0, few_shot=per_class,
                                augment=(), cache="memory", batch_size=args.batch))
    data.splits = {"train": data.splits["train"].subset(np.arange(min(args.images, len(data.splits["train"]))))}
    count = len(data.splits["train"])
    seconds: dict[str, list[float]] = {"keras": [], "onnx": []}
    features = {}
    extract_features(backbone, data, cache=False, runtime="keras", cache_dir=folder)  # fills the decoded-image cache
    for _ in range(args.repeats):
        for name in seconds:
            start = time.perf_counter()
            features[name] = extract_features(backbone, data, cache=False, runtime=name, cache_dir=folder)
            seconds[name].append(time.perf_counter() - start)
    layer = features["keras"].layers[0]
    end_difference = float(np.abs(features["keras"]["train"][layer] - features["onnx"]["train"][layer]).max())
    keras_rate, onnx_rate = count / min(seconds["keras"]), count / min(seconds["onnx"])
    print(f"extract_features, {count} images, best of {args.repeats} (converted model read from the cache):")
    print(f"  Keras {keras_rate:6.1f} images/s, onnxruntime {onnx_rate:6.1f} images/s = {onnx_rate / keras_rate:.2f}x; "
          f"max |difference| {end_difference:.2g}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
