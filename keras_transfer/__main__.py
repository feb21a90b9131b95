"""`python -m keras_transfer COMMAND ...`: the same as the `keras-transfer` console script."""

from keras_transfer.cli import main

raise SystemExit(main())
