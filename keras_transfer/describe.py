"""`python -m keras_transfer.describe`: the same as `keras-transfer describe` (keras_transfer.cli.describe)."""

from keras_transfer.cli.describe import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
