"""`keras-transfer train`: run a transfer-learning job on your data, or from a YAML config.

    keras-transfer train [PATH_OR_SOURCE] [--config NAME|FILE.yaml] [--output-dir DIR]
                                   [--set a.b=value ...] [--time-limit 10m] [--resume]

PATH_OR_SOURCE (or `--data`) is the data: a folder with one subfolder of images per class, a
`.csv` or `.npz` file, or any `data.source` (`folder:PATH`, `tfds:NAME`, `digits`, ...). Given a
source and no --config, it runs the packaged `photos` config (EfficientNet-Lite0 at 224x224,
mild augmentation, head then top blocks); with neither, the packaged `default` (the embedded
digits demo). With `model.head.type: logistic | linear_svm | knn` it trains that classifier on
frozen features (feature extraction) instead of fine-tuning in stages. Configuration errors print
one line naming the key and the closest valid choice, exit with status 2, and write nothing.
`--time-limit` (`training.time_limit`) bounds the run: at the limit training stops with the model
so far, which is scored and saved as usual.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from keras_transfer.cli.common import add_config_arguments, command_parser, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("train", __doc__)
    parser.add_argument("source", nargs="?", default=None, metavar="PATH_OR_SOURCE",
                        help="the data: a folder of class subfolders, a .csv or .npz file, or a data.source "
                             "(folder:PATH, tfds:NAME, digits); without --config it trains with the packaged photos config")
    parser.add_argument("--data", default=None, metavar="PATH_OR_SOURCE", help="the same as PATH_OR_SOURCE")
    add_config_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="run directory (default: runs/<data folder>-<time>, or runs/<config>-<time>)")
    parser.add_argument("--time-limit", default=None, metavar="DURATION",
                        help="stop training at this much time (90s, 10m, 1h, 1.5h) and finish with the best model so "
                             "far; recipe: auto picks a cheaper recipe when fine-tuning clearly would not fit")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --output-dir from its last completed epoch")
    return parser


def _config(args: argparse.Namespace):
    """(config path, validated RunConfig) with the data source put first among the overrides.

    A source without --config means photos: the packaged `photos` config, not the digits demo's
    recipe (no flips, 96x96). So does `--set data.source=...` alone, the spelling users try first.
    """
    import json

    from keras_transfer.config import ConfigError, find_config, load_config

    if args.source and args.data:
        raise ConfigError(f"give the data once: {args.source} or --data {args.data}")
    source = args.source or args.data
    overrides = list(args.overrides)
    if source is not None:
        overrides.insert(0, f"data.source={json.dumps(source)}")  # JSON quotes are YAML: any path survives
    path = find_config(args.config or ("photos" if _is_photos(overrides) else None))
    return path, load_config(path, overrides)


def _is_photos(overrides: list[str]) -> bool:
    """Whether the (last) data.source set is the user's own files rather than an embedded set."""
    import yaml

    from keras_transfer.config import EMBEDDED_DATASETS

    sources = [o.partition("=")[2] for o in overrides if o.startswith("data.source=")]
    try:
        return bool(sources) and str(yaml.safe_load(sources[-1])) not in EMBEDDED_DATASETS
    except yaml.YAMLError:
        return False  # load_config reports the value in one line


def _named(overrides: list[str]) -> tuple[str, ...]:
    """The keys of `--set` overrides that name a head, a cut point or stages, which auto must not overrule."""
    from keras_transfer.features.advisor import NAMED_KEYS

    keys = [o.partition("=")[0].strip() for o in overrides]
    return tuple(sorted({n for k in keys for n in NAMED_KEYS if k == n or k.startswith(n + ".")}))


def _run_name(path: Path, config) -> str:
    """The run folder's stem: the data folder's (or file's) name for your own data, else the config's."""
    from keras_transfer.config import source_kind

    kind, argument = source_kind(config.data.source)
    if kind in ("folder", "csv", "npz"):
        where = Path(argument).expanduser().resolve()  # "." and "photos/" name their folder too
        return (where.name if kind == "folder" else where.stem) or path.stem
    return path.stem


def _time_limit(text: str | None) -> float | None:
    """--time-limit in seconds, or None; a form it does not read is one line naming the option."""
    from keras_transfer.config import ConfigError
    from keras_transfer.core.timing import DURATION_EXAMPLE, parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(f"--time-limit {text}: write a number and s, m or h, e.g. --time-limit {DURATION_EXAMPLE}") from None


def main(argv: list[str] | None = None) -> int:
    """Validate the configuration, then train; return the process exit status."""
    args = build_parser().parse_args(argv)
    from keras_transfer.config import ConfigError, load_config

    limit = _time_limit(args.time_limit)
    if args.resume:
        if args.output_dir is None or not (args.output_dir / "config.yaml").is_file():
            raise ConfigError("--resume needs --output-dir pointing at an interrupted run (a folder with config.yaml)")
        if args.overrides or args.config or args.source or args.data:
            raise ConfigError("--resume continues a run with its own saved config and data; drop the data source, "
                              "--config and --set")
        config = load_config(args.output_dir / "config.yaml",
                             [] if limit is None else [f"training.time_limit={limit}"])
        run_dir = args.output_dir
    else:
        if limit is not None:
            args.overrides = [*args.overrides, f"training.time_limit={limit}"]
        path, config = _config(args)
        if args.config is None and path.stem == "photos":  # say which recipe, never silently
            print(f"recipe: the packaged photos config ({path}); --config NAME or FILE picks another")
        run_dir = args.output_dir or Path("runs") / f"{_run_name(path, config)}-{time.strftime('%Y%m%d-%H%M%S')}"
        if config.training.strategy == "multi_worker" and args.output_dir is None:
            raise ConfigError("training.strategy: multi_worker needs --output-dir, the same folder on every worker "
                              "(a shared file system): the chief writes it, the others resume from it")
        if args.output_dir is not None and (run_dir / "checkpoints").exists():
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --output-dir")

    from keras_transfer.runs import fit

    fit(config, run_dir, resume=args.resume, named=() if args.resume else _named(args.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
