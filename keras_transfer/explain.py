"""`python -m keras_transfer.explain`: the same as `keras-transfer explain` (keras_transfer.cli.explain)."""

from keras_transfer.cli.explain import main  # noqa: F401  (the library's way in, as before)

if __name__ == "__main__":
    from keras_transfer.cli.common import run_cli

    raise SystemExit(run_cli(main))
