"""`keras-transfer lr-find`: the learning-rate range test for one stage of a config.

    keras-transfer lr-find [--config FILE.yaml] [--stage NAME|INDEX] [--steps 200]
                                     [--from-run RUN_DIR] [--output-dir DIR] [--set a.b=value ...]

Sweeps the rate exponentially on a fresh copy of the configured model, writes lr_find.json and
plots/lr_find.png, and prints the suggested `learning_rate` for the stage, or a warning when the
loss never turned up (the sweep did not reach the edge it measures). A stage is named as in
`--set training.stages.NAME...`, or by its index counted from 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from keras_transfer.cli.common import add_config_arguments, command_parser, config_from_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("lr-find", __doc__)
    parser.add_argument("--stage", default="0",
                        help="stage name (head, top, ...) or index from 0, as in --set training.stages.X (default: the first)")
    parser.add_argument("--steps", type=int, default=None, help="sweep length (default 200; 30 with KT_SMALL=1)")
    parser.add_argument("--start-lr", type=float, default=1e-7)
    parser.add_argument("--end-lr", type=float, default=10.0)
    parser.add_argument("--from-run", type=Path, default=None,
                        help="start from this run's model.keras (to test a later stage where it would begin)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: runs/lr_find-<config>-<time>)")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the range test and write its plot; return the process exit status."""
    args = build_parser().parse_args(argv)
    path, config = config_from_args(args)
    from keras_transfer.training.lr_find import stage_index

    stage = stage_index(config, args.stage)  # before the data and the model: a misspelt stage costs nothing
    steps = args.steps or (30 if os.environ.get("KT_SMALL") == "1" else 200)
    if steps < 5:
        raise ValueError(f"--steps {steps} is too short for a sweep; use at least 5 (200 is usual)")
    initial = None
    if args.from_run is not None:
        from keras_transfer.runs import RunDir

        run = RunDir(args.from_run)
        if not run.is_finished():
            raise FileNotFoundError(f"--from-run {args.from_run}: no model.keras there (is it a finished run?)")
        initial = run.load_model(compile=False)
    out_dir = args.output_dir or Path("runs") / f"lr_find-{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"

    from keras_transfer.training.lr_find import lr_find

    result = lr_find(config, stage, start_lr=args.start_lr, end_lr=args.end_lr, steps=steps,
                     initial_weights=initial, log=print)
    paths = result.write(out_dir)
    name = config.training.stages[stage].name
    if result.suggestion is None:
        print(f"wrote {paths['plot']}; no suggestion (see the warning above): read the plot")
    else:
        print(f"wrote {paths['plot']}; set it with --set training.stages.{name}.learning_rate={result.suggestion:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
