"""Deployment formats side by side on one run: size, latency per image and agreement with Keras.

For each TFLite mode (float32, float16, dynamic, int8) and ONNX: the file size, the median latency
of one image (LiteRT / onnxruntime, 1 and 2 threads, after a warm-up), the test accuracy, and the
top-1 agreement and max probability gap against the Keras model on the test split. By default it
trains the default run (EfficientNet-Lite0 on the digits, `keras_transfer/configs/default.yaml`)
into a temporary folder first; `--run DIR` uses a finished run instead.

    nice -n 5 python benchmarks/bench_tflite.py [--run DIR] [--set training.stages.1.epochs=2] [--repeats 100] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _latencies_ms(calls: dict[str, object], image: np.ndarray, repeats: int, rounds: int = 5) -> dict[str, float]:
    """Median milliseconds per single-image call of each callable, measured round-robin.

    The CPU is shared, so the formats take turns in `rounds` rounds: a burst of load elsewhere
    falls on all of them alike instead of on whichever ran at that moment.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(5):  # warm-up: first invokes allocate and pick kernels
            call(image)
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                call(image)
                samples[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(times) for name, times in samples.items()}


def _test_split(run_dir: Path, data):
    from keras_transfer.config import load_config
    from keras_transfer.data import load_data

    data = data or load_data(load_config(run_dir / "config.yaml").data)
    split = "test" if "test" in data.splits else "val"
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data.dataset(split, training=False)])
    labels = np.concatenate(ys)
    return np.concatenate(xs), (labels.argmax(-1) if labels.ndim > 1 else labels), data


def measure(run_dir: Path, model, data=None, repeats: int = 100) -> list[dict]:
    """Export every TFLite mode and ONNX for `run_dir`; return one row of figures per format."""
    from keras_transfer.deploy import (
        export_run,
        onnx_predict,
        tflite_interpreter,
        tflite_predict,
    )
    from keras_transfer.deploy.parity import compare, keras_probabilities

    pixels, labels, data = _test_split(run_dir, data)
    written = export_run(run_dir, ["keras", "tflite", "onnx"], ["float32", "float16", "dynamic", "int8"],
                         model=model, data=data)
    reference = keras_probabilities(model, pixels)
    import tensorflow as tf

    keras_call = tf.function(lambda x: model(x, training=False))  # a traced graph, as served; not eager
    rows = [{"format": "Keras (reference, tf.function)", "bytes": written["keras"].stat().st_size,
             "accuracy": float((reference.argmax(-1) == labels).mean()), "agreement": 1.0, "gap": 0.0, "ms_2": None}]
    calls = {"Keras (reference, tf.function)/1": lambda x: keras_call(tf.constant(x))}
    for mode in ("float32", "float16", "dynamic", "int8"):
        path = written[f"tflite_{mode}"]
        probabilities = tflite_predict(path, pixels)
        row = {"format": f"TFLite {mode}", "bytes": path.stat().st_size, **_scores(compare(reference, probabilities),
                                                                                 probabilities, labels)}
        for threads in (1, 2):
            interpreter = tflite_interpreter(path, threads=threads)
            calls[f"{row['format']}/{threads}"] = lambda x, i=interpreter: tflite_predict(i, x)
        rows.append(row)
    path = written["onnx"]
    probabilities = onnx_predict(path, pixels)
    row = {"format": "ONNX (onnxruntime)", "bytes": path.stat().st_size,
           **_scores(compare(reference, probabilities), probabilities, labels)}
    for threads in (1, 2):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        calls[f"{row['format']}/{threads}"] = lambda x, s=session: onnx_predict(s, x)
    rows.append(row)
    for name, ms in _latencies_ms(calls, pixels[:1], repeats).items():
        fmt, threads = name.rsplit("/", 1)
        next(r for r in rows if r["format"] == fmt)[f"ms_{threads}"] = ms
    return rows


def _scores(parity: dict, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    return {"accuracy": float((probabilities.argmax(-1) == labels).mean()), "agreement": parity["top1_agreement"],
            "gap": parity["max_abs_diff"], "images": parity["images"]}


def _table(rows: list[dict]) -> str:
    lines = ["| format | size | latency, 1 thread | 2 threads | test accuracy | top-1 agreement with Keras | max gap |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        two = f"{r['ms_2']:.2f} ms" if r["ms_2"] is not None else "-"
        lines.append(f"| {r['format']} | {r['bytes'] / 1e6:.2f} MB | {r['ms_1']:.2f} ms | {two} | {r['accuracy']:.2%} | "
                     f"{r['agreement']:.2%} | {r['gap']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    """Train (or open) a run, export every format and print the comparison as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished run (default: train the default run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for training")
    parser.add_argument("--repeats", type=int, default=100, help="timed single-image calls per format and thread count")
    parser.add_argument("--output-dir", type=Path, default=None, help="keep the trained run here (default: a temporary folder)")
    args = parser.parse_args()
    import keras

    import keras_transfer  # noqa: F401  (registers the toolkit's layers)

    with tempfile.TemporaryDirectory() as folder:
        data = None
        if args.run is None:
            from keras_transfer.config import load_config
            from keras_transfer.cli.train import default_config_path
            from keras_transfer.training import run

            start = time.perf_counter()
            target = args.output_dir or Path(folder) / "run"
            result = run(load_config(default_config_path(), args.overrides), target, log=lambda _: None)
            print(f"trained the default run in {time.perf_counter() - start:.0f} s")
            run_dir, model, data = result.run_dir, result.model, result.data
        else:
            run_dir, model = args.run, keras.saving.load_model(args.run / "model.keras", safe_mode=True)
        rows = measure(run_dir, model, data, args.repeats)
    print(f"{rows[1]['images']} test images; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(_table(rows))


if __name__ == "__main__":
    main()
