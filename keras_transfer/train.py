"""`python -m keras_transfer.train`: the same as `keras-transfer train` (keras_transfer.cli.train)."""

from keras_transfer.cli.train import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
