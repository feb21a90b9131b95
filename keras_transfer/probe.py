"""`python -m keras_transfer.probe`: the same as `keras-transfer probe` (keras_transfer.cli.probe)."""

from keras_transfer.cli.probe import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
