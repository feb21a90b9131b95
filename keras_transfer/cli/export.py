"""`keras-transfer export`: a finished run's model for deployment, each format checked.

    keras-transfer export --run DIR [--format saved_model,keras,tflite,onnx] [--tflite float32,float16,dynamic,int8]

The SavedModel goes to `DIR/export/saved_model/<version>/` for TensorFlow Serving; `.keras`,
TFLite and ONNX files beside it, with `labels.txt` and `export_report.json` (the parity of each
TFLite and ONNX export with the Keras model on validation images). The library is
`keras_transfer.deploy`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_transfer.cli.common import command_parser, run_cli

from keras_transfer.config import EXPORT_FORMATS
from keras_transfer.deploy.tflite import TFLITE_MODES

def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("export", __doc__)
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by keras-transfer train")
    parser.add_argument("--format", default="saved_model,keras", help=f"comma-separated: {', '.join(EXPORT_FORMATS)}")
    parser.add_argument("--tflite", default="float32", help=f"TFLite modes, comma-separated: {', '.join(TFLITE_MODES)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export a run's model in the requested formats; return the exit status."""
    args = build_parser().parse_args(argv)
    from keras_transfer.deploy import export_run

    export_run(args.run, [f.strip() for f in args.format.split(",") if f.strip()],
               [m.strip() for m in args.tflite.split(",") if m.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
