"""`python -m keras_transfer.predict`: the same as `keras-transfer predict` (keras_transfer.cli.predict)."""

from keras_transfer.cli.predict import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
