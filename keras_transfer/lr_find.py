"""`python -m keras_transfer.lr_find`: the same as `keras-transfer lr-find` (keras_transfer.cli.lr_find)."""

from keras_transfer.cli.lr_find import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
