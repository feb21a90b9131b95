"""`python -m keras_transfer.export`: a finished run's model for deployment, each format checked.

    python -m keras_transfer.export --run DIR [--format saved_model,keras,tflite,onnx] [--tflite float32,float16,dynamic,int8]

The SavedModel goes to `DIR/export/saved_model/<version>/` for TensorFlow Serving; `.keras`,
TFLite and ONNX files beside it, with `labels.txt` and `export_report.json` (the parity of each
TFLite and ONNX export with the Keras model on validation images). The library is
`keras_transfer.deploy`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_transfer.cli_util import run_cli

from keras_transfer.deploy.runs import FORMATS
from keras_transfer.deploy.tflite import TFLITE_MODES

# The names this module held before the library moved to keras_transfer.deploy still import from
# here, loaded on first use so that `--help` does not wait for TensorFlow.
_MOVED = ("export_keras", "export_run", "export_saved_model", "export_tflite", "inference_model", "tflite_parity")


def __getattr__(name: str):
    if name in _MOVED:
        import keras_transfer.deploy

        return getattr(keras_transfer.deploy, name)
    raise AttributeError(f"module 'keras_transfer.export' has no attribute {name!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_transfer.export", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by keras_transfer.train")
    parser.add_argument("--format", default="saved_model,keras", help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--tflite", default="float32", help=f"TFLite modes, comma-separated: {', '.join(TFLITE_MODES)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export a run's model in the requested formats; return the exit status."""
    args = _parser().parse_args(argv)
    from keras_transfer.deploy import export_run

    export_run(args.run, [f.strip() for f in args.format.split(",") if f.strip()],
               [m.strip() for m in args.tflite.split(",") if m.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
