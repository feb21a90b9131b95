"""What seeing into a run costs, and what test-time augmentation gains.

1. `run`: a default run (`keras_transfer/configs/default.yaml`, EfficientNet-Lite0 on digits), with
   `write_run_insights` timed inside it: the extra share of wall time of mistakes, Grad-CAM and
   report.html (goal: at most 10%). One run; "without" is its wall time minus the insights.
2. `gradcam`: Grad-CAM of 16 Lite0 images at 224x224 (goal: under 5 s on 2 cores), eager and as a
   traced tf.function: the first call (one-time setup, tracing) and the fastest of three after it.
3. `tta`: flowers5 at 128x128, a linear head trained on cached Lite0 features of `--shots` images per
   class; test accuracy without and with TTA (original + mirror + two 90% crops).

    python benchmarks/bench_insights.py [run|gradcam|tta|all] [--flowers /work/shared/data/flowers5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_run() -> None:
    from keras_transfer.config import load_config
    from keras_transfer.interpret import insights
    from keras_transfer.cli.train import default_config_path
    from keras_transfer.training import engine

    spent = []
    original = insights.write_run_insights

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        spent.append(time.perf_counter() - started)
        return result

    engine.write_run_insights = timed
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        engine.run(load_config(default_config_path()), Path(folder) / "run", log=lambda line: None)
        total = time.perf_counter() - started
    extra = sum(spent)
    print(f"default run: {total:.1f} s with insights, {total - extra:.1f} s without; insights {extra:.1f} s "
          f"= +{100 * extra / (total - extra):.1f}% wall time")


def bench_gradcam() -> None:
    from keras_transfer.backbones import build_backbone
    from keras_transfer.heads import build_classifier
    from keras_transfer.interpret import GradCAM

    model = build_classifier(build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(224, 224, 3)), 5)
    images = np.random.default_rng(0).uniform(0, 255, (16, 224, 224, 3)).astype(np.float32)
    for compiled in (False, True):
        started = time.perf_counter()
        cam = GradCAM(model, compiled=compiled)
        cam(images)
        first = time.perf_counter() - started
        times = []
        for _ in range(3):
            started = time.perf_counter()
            cam(images)
            times.append(time.perf_counter() - started)
        print(f"Grad-CAM ({'tf.function' if compiled else 'eager, the default'}), 16 Lite0 images at 224x224 on "
              f"{cam.layer.name}: first call {first:.2f} s, then {min(times):.2f} s")


def bench_tta(flowers: str, shots: int, epochs: int) -> None:
    import keras

    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.heads import build_classifier
    from keras_transfer.interpret import tta_predict
    from keras_transfer.forward import extract
    from keras_transfer.training.feature_cache import split_at_head

    keras.utils.set_random_seed(0)
    data = load_data(DataConfig(source=f"folder:{flowers}", image_size=(128, 128), val_split=0.0, test_split=0.2,
                                few_shot=shots, augment=(), seed=0))
    model = build_classifier(build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(128, 128, 3)),
                             data.num_classes)
    extractor, head = split_at_head(model)
    x, y = extract(extractor, data.dataset("train", training=False))
    head.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    head.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    test = data.dataset("test", training=False)
    truth = np.concatenate([np.asarray(labels) for _, labels in test])
    plain = extract(model, test)[0].argmax(axis=1)
    line = [(f"flowers5 at 128x128, {shots} training images per class, {len(truth)} test images: "
             f"plain {np.mean(plain == truth):.4f}")]
    for views in (("flip",), ("crop",), ("flip", "crop")):
        started = time.perf_counter()
        tta = tta_predict(model, test, views).argmax(axis=1)
        line.append(f"TTA {'+'.join(views)} {np.mean(tta == truth):.4f} ({time.perf_counter() - started:.0f} s)")
    print("; ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?", default="all", choices=("run", "gradcam", "tta", "all"))
    parser.add_argument("--flowers", default="/work/shared/data/flowers5")
    parser.add_argument("--shots", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    if args.what in ("gradcam", "all"):
        bench_gradcam()
    if args.what in ("tta", "all"):
        bench_tta(args.flowers, args.shots, args.epochs)
    if args.what in ("run", "all"):
        bench_run()


if __name__ == "__main__":
    main()
