"""`python -m keras_transfer.evaluate`: the same as `keras-transfer evaluate` (keras_transfer.cli.evaluate)."""

from keras_transfer.cli.evaluate import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
