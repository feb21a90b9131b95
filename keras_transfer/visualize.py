"""`python -m keras_transfer.visualize`: the same as `keras-transfer visualize` (keras_transfer.cli.visualize)."""

from keras_transfer.cli.visualize import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
