"""`python -m keras_transfer.evaluate --run DIR`: accuracy, top-k, per-class precision/recall and
the confusion matrix of a trained run, on any split, or on other data with the same classes.

    python -m keras_transfer.evaluate --run runs/default-20261123 [--split test] [--data folder:new_photos]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from keras_transfer.cli_util import run_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_transfer.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by keras_transfer.train")
    parser.add_argument("--split", default="test", help="train, val or test (default: test)")
    parser.add_argument("--data", default=None, help="another data source with the same classes (default: the run's)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Evaluate a run's model on a split and print the report; return the exit status."""
    args = _parser().parse_args(argv)
    import keras

    import keras_transfer  # noqa: F401  (registers the toolkit's layers for loading)
    from keras_transfer.config import load_config
    from keras_transfer.data import load_data
    from keras_transfer.training.engine import resolve_task
    from keras_transfer.training.feature_cache import extract
    from keras_transfer.training.report import classification_metrics

    model_path = args.run / "model.keras"
    if not model_path.is_file():
        raise FileNotFoundError(f"{args.run} has no model.keras: is it a finished keras_transfer run?")
    config = load_config(args.run / "config.yaml")
    data_config = config.data if args.data is None else dataclasses.replace(config.data, source=args.data)
    if args.data is not None:
        data_config = dataclasses.replace(data_config, val_split=0.0, test_split=0.0, few_shot=None, balance="none")
    data = load_data(data_config)
    labels = (args.run / "labels.txt").read_text().split("\n")[:-1]
    if data.class_names != labels:
        raise ValueError(f"the data's classes {data.class_names} differ from the model's {labels}")
    split = args.split if args.data is None else "train"
    model = keras.saving.load_model(model_path, safe_mode=True)
    outputs, truth = extract(model, data.dataset(split, training=False))
    metrics = classification_metrics(outputs, truth, labels, resolve_task(config, data))
    if args.json:
        print(json.dumps(metrics, indent=1))
        return 0
    print(f"{args.run} on {data_config.source} ({split}, {metrics['examples']} images)")
    for key, value in metrics.items():
        if key.endswith("accuracy") or key == "exact_match":
            print(f"{key:>16}: {value:.4f}")
    print(f"{'class':>16}  precision  recall  support")
    for name, row in metrics["per_class"].items():
        print(f"{name:>16}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['support']:7d}")
    if "confusion_matrix" in metrics:
        print("confusion matrix (rows: true, columns: predicted)")
        for name, row in zip(labels, metrics["confusion_matrix"]):
            print(f"{name:>16}  " + " ".join(f"{v:4d}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
