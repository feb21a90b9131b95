"""What every `python -m keras_transfer.X` command shares: user errors as one line, exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def run_cli(main: Callable[[], int]) -> int:
    """Run a CLI `main`; print an expected failure as one line on stderr and return 2.

    Expected failures are the user's or the machine's, not bugs: a bad name or value, a missing or
    unwritable file, a damaged archive, invalid YAML, a model file onnxruntime refuses, TensorFlow
    running out of memory, any toolkit error. Tracebacks are for bugs; set `KT_DEBUG=1` to see
    the traceback of an expected failure too.
    """
    import os

    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        line = expected_failure(error)
        if line is None or os.environ.get("KT_DEBUG"):
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2


MAX_MESSAGE = 400  # characters of a third-party message shown; TensorFlow's can run to pages


def expected_failure(error: BaseException) -> str | None:
    """The one line to print for an expected failure `error`, or None for a bug (keep its traceback)."""
    import zipfile

    kind = type(error).__module__.split(".")[0]
    if kind == "yaml":
        from keras_transfer.config import yaml_problem

        return f"invalid YAML: {yaml_problem(error)}"
    if _is_tf_error(error):
        name = type(error).__name__
        if name == "ResourceExhaustedError":
            return ("out of memory in TensorFlow (ResourceExhausted): lower data.batch_size or data.image_size, "
                    f"or free the device; {_one_line(error, 200)}")
        return f"TensorFlow {name}: {_one_line(error)}"
    if kind == "onnxruntime":  # InvalidProtobuf, Fail, NoSuchFile...: plain Exceptions of its own
        return f"onnxruntime {type(error).__name__}: {_one_line(error)}"
    if isinstance(error, MemoryError):
        return "out of memory: lower data.batch_size or data.image_size, or use a machine with more memory"
    if isinstance(error, (ValueError, OSError, RuntimeError, zipfile.BadZipFile)):
        return _one_line(error, None)
    return None


def _is_tf_error(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")  # never imported just to look at an error
    return tf is not None and isinstance(error, tf.errors.OpError)


def _one_line(error: BaseException, limit: int | None = MAX_MESSAGE) -> str:
    """`error`'s message on one line, safe for a terminal, cut to `limit` characters.

    A third-party message (`limit` set) has its line breaks folded; ours are one line already, so
    a line break in them comes from a name (a file, a class) and is shown escaped, like any
    control character (`keras_transfer.core.names.printable`).
    """
    from keras_transfer.core.names import printable

    text = str(error) or type(error).__name__
    if limit is not None:
        text = " ".join(text.split())
        text = text if len(text) <= limit else text[: limit - 3] + "..."
    return printable(text)


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


def command_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of `keras-transfer NAME`: its first docstring line as the description,
    and the `--verbose` every command takes (TensorFlow's start-up lines, see core/quiet.py)."""
    parser = argparse.ArgumentParser(prog=f"keras-transfer {name}", description=(doc or "").split("\n")[0])
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines (also: KT_VERBOSE=1)")
    return parser
