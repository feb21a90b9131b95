"""`keras-transfer suggest`: which unlabelled images to label next, for a trained run.

    keras-transfer suggest --run RUN --pool FOLDER [--k 50] [--method auto|uncertain|typical]
                                     [--uncertainty margin|entropy] [--seed 0] [--output-dir DIR]

`uncertain`: the run model's most uncertain images, k diverse ones among them (k-center greedy on
the model's features); `typical`: the most typical image of each large region no label covers
(TypiClust); `auto`: typical while the run had fewer than 20 training images per class, else
uncertain. Writes suggestions.csv and a contact sheet suggestions.png (default:
RUN/suggestions/). See docs/unlabeled.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_transfer.cli.common import command_parser, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("suggest", __doc__)
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (with model.keras)")
    parser.add_argument("--pool", required=True, help="a folder of unlabelled images (or any data source)")
    parser.add_argument("--k", type=int, default=50, help="how many images to suggest (default 50)")
    parser.add_argument("--method", default="auto", help="auto (default), uncertain or typical")
    parser.add_argument("--uncertainty", default="margin", help="margin (default) or entropy")
    parser.add_argument("--seed", type=int, default=0, help="orders ties; the same seed gives the same picks")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default RUN/suggestions)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Suggest the images to label next and write the CSV and contact sheet; return the exit status."""
    args = build_parser().parse_args(argv)
    from keras_transfer.features.suggest import suggest_for_run

    suggest_for_run(args.run, args.pool, k=args.k, method=args.method, uncertainty=args.uncertainty, seed=args.seed,
                    output_dir=args.output_dir, log=print)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
