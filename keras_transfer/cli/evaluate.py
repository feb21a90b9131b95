"""`keras-transfer evaluate --run DIR`: accuracy, top-k, per-class precision/recall/F1,
the confusion matrix and the worst mistakes of a trained run, on any split, or on other data with
the same classes. For a regression run: MSE, MAE, RMSE, R^2 and the predicted-vs-true plot.

    keras-transfer evaluate --run runs/default-20261123 [--split test] [--data folder:new_photos] [--tta]

With `--data`, the source's own splits are used (a folder with train/ val/ test/ subfolders), none
are carved out; `--split` picks one of them (default: test if the source has it, else all of it).
The mistakes go to `DIR/evaluation/<split>/` (`mistakes.csv`, `plots/misclassified.png`).
"""

from __future__ import annotations

from keras_transfer.cli.common import command_parser

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from keras_transfer.cli.common import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("evaluate", __doc__)
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by keras-transfer train")
    parser.add_argument("--split", default=None,
                        help="train, val or test (default: test; with --data: its test split if any, else all of it)")
    parser.add_argument("--data", default=None, help="another data source with the same classes (default: the run's)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average over two crops, and the mirror image if the run "
                             "trained with flips")
    parser.add_argument("--out", type=Path, default=None,
                        help="where mistakes.csv and plots/misclassified.png go (default: RUN/evaluation/SPLIT)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def choose_split(available: list[str], requested: str | None, *, other_data: bool, source: str) -> str:
    """The split to evaluate: the requested one if the data has it, refused in one line if not; by
    default test, else val, else all of it (`load_data` calls a source without splits train)."""
    from keras_transfer.core.names import unknown_name_message

    if requested is None:
        return next((s for s in ("test", "val") if s in available), available[0])
    if requested not in available:
        if other_data:
            raise ValueError(f"--data {source} has no {requested!r} split (it has: {', '.join(available)}); "
                             "omit --split to evaluate all of it, or give it train/ val/ test/ subfolders")
        raise ValueError(unknown_name_message("--split", requested, available))
    return requested


def per_class_table(metrics: dict, labels: list[str]) -> list[str]:
    """The printed report's lines: scores, per-class precision/recall/F1/support, confusion matrix."""
    lines = []
    for key, value in metrics.items():
        if key.endswith("accuracy") or key == "exact_match":
            lines.append(f"{key:>16}: {value:.4f}")
    if metrics.get("note"):
        lines.append(metrics["note"])
    lines.append(f"{'class':>16}  precision  recall      F1  support")
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:>16}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:6.3f}  {row['support']:7d}")
    if "confusion_matrix" in metrics:
        lines.append("confusion matrix (rows: true, columns: predicted)")
        for name, row in zip(labels, metrics["confusion_matrix"]):
            lines.append(f"{name:>16}  " + " ".join(f"{v:4d}" for v in row))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Evaluate a run's model on a split, print the report and write its mistakes; return the exit status."""
    args = build_parser().parse_args(argv)
    import keras

    from keras_transfer import register_serializables

    register_serializables()
    from keras_transfer.config import load_config
    from keras_transfer.data import load_data
    from keras_transfer.core.names import printable
    from keras_transfer.data.fingerprint import RECORD_NAME, recorded_data
    from keras_transfer.core.files import check_label_count, read_labels
    from keras_transfer.interpret import (
        collect_predictions,
        default_views,
        tta_forward,
        write_error_analysis,
    )
    from keras_transfer.training.engine import resolve_task
    from keras_transfer.training.feature_cache import extract
    from keras_transfer.training.report import classification_metrics, plot_predicted_vs_true, regression_metrics

    model_path = args.run / "model.keras"
    if not model_path.is_file():
        raise FileNotFoundError(f"{args.run} has no model.keras: is it a finished keras_transfer run?")
    config = load_config(args.run / "config.yaml")
    data_config = config.data
    if args.data is not None:
        # The other data is evaluated as it comes: its own train/val/test folders, nothing carved out.
        data_config = dataclasses.replace(config.data, source=args.data, val_split=0.0, test_split=0.0,
                                          few_shot=None, balance="none")
    record = args.run / RECORD_NAME
    if args.data is None and record.is_file():  # the run's own split: its test images stay unseen
        data = recorded_data(data_config, record, task=config.model.task)
    else:
        data = load_data(data_config, task=config.model.task)
    labels = read_labels(args.run / "labels.txt")
    if data.task == "regression" and len(labels) != 1:
        raise ValueError(f"{data_config.source} holds regression targets, and the model of {args.run} classifies "
                         f"{', '.join(labels)}")
    if data.class_names != labels and data.task != "regression":
        raise ValueError(f"the data's classes {data.class_names} differ from the model's {labels}")
    split = choose_split(list(data.splits), args.split, other_data=args.data is not None, source=data_config.source)
    from keras_transfer.core.archives import check_keras_archive

    check_keras_archive(model_path)  # member sizes, before Keras inflates any
    model = keras.saving.load_model(model_path, safe_mode=True)
    check_label_count(labels, int(model.output.shape[-1]), args.run / "labels.txt")
    task = resolve_task(config, data)
    dataset = data.dataset(split, training=False)
    views = default_views(config.data.augment) if args.tta else ()
    forward = tta_forward(model, views) if args.tta else None
    written = None
    if task == "regression":
        outputs, truth = extract(model, dataset) if forward is None else _forward_all(forward, dataset)
        metrics = regression_metrics(outputs, truth)
        out = args.out or args.run / "evaluation" / (f"{split}-tta" if args.tta else split)
        plot = out / "plots" / "predicted_vs_true.png"
        plot_predicted_vs_true(truth, outputs, plot, title=f"{split} split", target=labels[0])
        if args.json:
            print(json.dumps(metrics, indent=1))
            return 0
        tta = f", TTA over original + {' + '.join(views)}" if args.tta else ""
        print(f"{args.run} on {data_config.source} ({split}, {metrics['examples']} images{tta}): regression of "
              f"{labels[0]!r}")
        r2 = "undefined (constant targets)" if metrics["r2"] is None else f"{metrics['r2']:.4f}"
        print("\n".join([f"{'MSE':>16}: {metrics['mse']:.4g}", f"{'MAE':>16}: {metrics['mae']:.4g}",
                         f"{'RMSE':>16}: {metrics['rmse']:.4g}", f"{'R^2':>16}: {r2}", f"predicted vs true: {plot}"]))
        return 0
    if task in ("multiclass", "binary"):
        predictions = collect_predictions(model, dataset, paths=data.splits[split].paths, predict=forward)
        outputs = predictions.probabilities if task == "multiclass" else predictions.probabilities[:, 1:]
        truth = predictions.labels
        out = args.out or args.run / "evaluation" / (f"{split}-tta" if args.tta else split)
        written = write_error_analysis(predictions, labels, out, split=split)
    else:
        outputs, truth = extract(model, dataset) if forward is None else _forward_all(forward, dataset)
    metrics = classification_metrics(outputs, truth, labels, task)
    if args.json:
        print(json.dumps(metrics, indent=1))
        return 0
    tta = f", TTA over original + {' + '.join(views)}" if args.tta else ""
    print(f"{args.run} on {data_config.source} ({split}, {metrics['examples']} images{tta})")
    print("\n".join(printable(line) for line in per_class_table(metrics, labels)))
    if written is not None:
        print(f"{written['mistakes']} mistakes: {out / 'mistakes.csv'}, {out / 'plots' / 'misclassified.png'}")
    return 0


def _forward_all(forward, dataset):
    import numpy as np

    outputs, truth = zip(*[(np.asarray(forward(x)), np.asarray(y)) for x, y in dataset])
    return np.concatenate(outputs), np.concatenate(truth)


if __name__ == "__main__":
    sys.exit(run_cli(main))
