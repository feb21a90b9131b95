"""`keras-transfer evaluate --run DIR`: accuracy, top-k, per-class precision/recall/F1,
the confusion matrix and the worst mistakes of a trained run, on any split, or on other data with
the same classes. For a regression run: MSE, MAE, RMSE, R^2 and the predicted-vs-true plot.

    keras-transfer evaluate --run runs/default-20261123 [--split test] [--data folder:new_photos] [--tta]

With `--data`, the source's own splits are used (a folder with train/ val/ test/ subfolders), none
are carved out; `--split` picks one of them (default: test if the source has it, else all of it).
The mistakes go to `DIR/evaluation/<split>/` (`mistakes.csv`, `plots/misclassified.png`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_transfer.cli.common import command_parser, run_cli


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
    from keras_transfer.core.names import printable
    from keras_transfer.runs import evaluate

    say = (lambda line: print(line, file=sys.stderr)) if args.json else print  # stdout stays JSON with --json
    result = evaluate(args.run, split=args.split, data=args.data, tta=args.tta, out=args.out, log=say)
    metrics = result.metrics
    if args.json:
        print(json.dumps(metrics, indent=1))
        return 0
    tta = f", TTA over original + {' + '.join(result.views)}" if args.tta else ""
    head = f"{args.run} on {result.source} ({result.split}, {metrics['examples']} images{tta})"
    if result.task == "regression":
        print(f"{head}: regression of {result.labels[0]!r}")
        r2 = "undefined (constant targets)" if metrics["r2"] is None else f"{metrics['r2']:.4f}"
        print("\n".join([f"{'MSE':>16}: {metrics['mse']:.4g}", f"{'MAE':>16}: {metrics['mae']:.4g}",
                         f"{'RMSE':>16}: {metrics['rmse']:.4g}", f"{'R^2':>16}: {r2}",
                         f"predicted vs true: {result.files['predicted_vs_true']}"]))
        return 0
    print(head)
    print("\n".join(printable(line) for line in per_class_table(metrics, result.labels)))
    if result.written is not None:
        print(f"{result.written['mistakes']} mistakes: {result.files['mistakes']}, {result.files['misclassified']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
