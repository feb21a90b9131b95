"""What every `python -m keras_transfer.X` command shares: user errors as one line, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(main: Callable[[], int]) -> int:
    """Run a CLI `main`; print a user error (bad name, missing file) as one line and return 2.

    Tracebacks are for bugs; a misspelt layer or a missing file deserves a sentence. Set
    `KT_DEBUG=1` to see the traceback anyway.
    """
    import os

    try:
        return main()
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        if os.environ.get("KT_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_config_arguments(parser) -> None:
    """The `--config FILE` and repeatable `--set key=value` options every config-driven command takes."""
    from pathlib import Path

    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: the packaged default.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. data.few_shot=10 (repeatable)")


def config_from_args(args):
    """(config path, validated RunConfig) from `--config` (or the packaged default) and `--set` overrides."""
    from keras_transfer.config import load_config
    from keras_transfer.train import default_config_path

    path = args.config or default_config_path()
    return path, load_config(path, args.overrides)
