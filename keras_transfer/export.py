"""`python -m keras_transfer.export`: the same as `keras-transfer export` (keras_transfer.cli.export)."""

from keras_transfer.cli.export import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
