"""`python -m keras_transfer.check`: the same as `keras-transfer check` (keras_transfer.cli.check)."""

from keras_transfer.cli.check import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
