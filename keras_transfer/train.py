"""`python -m keras_transfer.train`: run a transfer-learning job from a YAML config.

    python -m keras_transfer.train [--config FILE.yaml] [--output-dir DIR] [--set a.b=value ...] [--resume]

With `model.head.type: logistic | linear_svm | knn` it runs Solution II (an external classifier
on frozen features) instead of staged fine-tuning. With no --config it runs the packaged `configs/default.yaml` (EfficientNet-Lite0 with offline
ImageNet weights on the embedded digits). Configuration errors print one line naming the key and
the closest valid choice, exit with status 2, and write nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from keras_transfer.cli_util import add_config_arguments, config_from_args, run_cli
from keras_transfer.files import check_writable


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_transfer.train", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=None, help="run directory (default: runs/<config>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --output-dir from its last completed epoch")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Validate the configuration, then train; return the process exit status."""
    args = _parser().parse_args(argv)
    from keras_transfer.config import ConfigError, load_config

    if args.resume:
        if args.output_dir is None or not (args.output_dir / "config.yaml").is_file():
            raise ConfigError("--resume needs --output-dir pointing at an interrupted run (a folder with config.yaml)")
        if args.overrides or args.config:
            raise ConfigError("--resume continues a run with its own saved config; drop --config and --set")
        config = load_config(args.output_dir / "config.yaml")
        run_dir = args.output_dir
    else:
        path, config = config_from_args(args)
        run_dir = args.output_dir or Path("runs") / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        if config.training.strategy == "multi_worker" and args.output_dir is None:
            raise ConfigError("training.strategy: multi_worker needs --output-dir, the same folder on every worker "
                              "(a shared file system): the chief writes it, the others resume from it")
        if args.output_dir is not None and (run_dir / "checkpoints").exists():
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --output-dir")

    check_writable(run_dir)  # before the data is loaded and the model built
    if args.resume:
        check_writable(run_dir / "checkpoints")
    if config.model.head.type != "dense":
        # Solution II: no epochs to resume; a rerun reads the features from the cache.
        from keras_transfer.features import run_feature_classifier

        result = run_feature_classifier(config, run_dir)
    else:
        from keras_transfer.training import run

        result = run(config, run_dir, resume=args.resume)
    extra = [fmt for fmt in config.export.formats if fmt != "keras"]  # model.keras is always written
    if extra and result.chief:  # only the chief of a multi-worker run writes
        from keras_transfer.deploy import export_run

        export_run(run_dir, extra, model=result.model, data=result.data)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
