"""What every `python -m keras_transfer.X` command shares: user errors as one line, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(main: Callable[[], int]) -> int:
    """Run a CLI `main`; print a user error (bad name, missing or unwritable file, damaged archive,
    any toolkit error) as one line and return 2.

    Tracebacks are for bugs; a misspelt layer or a missing file deserves a sentence. Set
    `KT_DEBUG=1` to see the traceback anyway.
    """
    import os
    import zipfile

    try:
        return main()
    except (ValueError, OSError, RuntimeError, zipfile.BadZipFile) as error:
        if os.environ.get("KT_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_config_arguments(parser) -> None:
    """The `--config FILE` and repeatable `--set key=value` options every config-driven command takes."""
    parser.add_argument("--config", default=None,
                        help="YAML config file, or the name of a packaged one (default, small_similar, "
                             "small_different, large_similar, large_different); default: default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. data.few_shot=10 (repeatable)")


def config_from_args(args):
    """(config path, validated RunConfig) from `--config` (or the packaged default) and `--set` overrides."""
    from keras_transfer.config import find_config, load_config

    path = find_config(args.config)
    return path, load_config(path, args.overrides)
