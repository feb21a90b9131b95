"""`python -m keras_transfer.advise`: the same as `keras-transfer advise` (keras_transfer.cli.advise)."""

from keras_transfer.cli.advise import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
