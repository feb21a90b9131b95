"""`keras-transfer check FOLDER_OR_SOURCE`: know the data before trusting a score.

    keras-transfer check FOLDER_OR_SOURCE [--output-dir DIR] [--backbone NAME] [--image-size PX]
                                   [--threshold COSINE] [--cache-dir DIR]

Finds exact duplicates (content hash) and near-duplicates (cosine of backbone features) within a
class, across classes and across splits; suspect labels (confident learning on out-of-fold
probabilities); outliers (far from every class); and the class balance. Writes data_health.json,
duplicates.csv, near_duplicates.csv, suspects.csv, outliers.csv, contact sheets and report.html, prints a
short summary, and never moves, changes or deletes a file of the data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from keras_transfer.cli.common import command_parser, run_cli


def build_parser() -> argparse.ArgumentParser:
    # Defaults stay None here and are filled in main(): --help answers without importing TensorFlow.
    parser = command_parser("check", __doc__)
    parser.add_argument("source", help="a folder of class folders (or train/ and test/), csv:PATH, npz:PATH or "
                                       "an embedded name such as digits")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: runs/check-<name>-<time>)")
    parser.add_argument("--backbone", default=None, help="feature extractor (default efficientnet_lite0)")
    parser.add_argument("--image-size", type=int, default=None, help="pixels (default 128)")
    parser.add_argument("--threshold", type=float, default=None, help="near-duplicate cosine (default 0.90, measured)")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default $KT_CACHE_DIR or ~/.cache)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Check the data and write the lists; return the process exit status."""
    args = build_parser().parse_args(argv)
    from keras_transfer.features.data_check import CHECK_BACKBONE, CHECK_IMAGE_SIZE, check_data
    from keras_transfer.features.health import NEAR_DUPLICATE_COSINE

    name = Path(args.source.partition(":")[2] or args.source).stem or "data"
    out_dir = args.output_dir or Path("runs") / f"check-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = check_data(args.source, out_dir, backbone=args.backbone or CHECK_BACKBONE,
                        image_size=args.image_size or CHECK_IMAGE_SIZE,
                        threshold=NEAR_DUPLICATE_COSINE if args.threshold is None else args.threshold,
                        cache_dir=args.cache_dir)
    from keras_transfer.interpret.report_html import write_report_html

    result.files["report"] = write_report_html(out_dir)  # the "Data health" section of a run's report.html
    print("\n".join(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
