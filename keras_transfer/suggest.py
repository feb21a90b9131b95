"""`python -m keras_transfer.suggest`: the same as `keras-transfer suggest` (keras_transfer.cli.suggest)."""

from keras_transfer.cli.suggest import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
