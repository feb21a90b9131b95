"""What every `python -m keras_transfer.X` command shares: user errors as one line, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(main: Callable[[], int]) -> int:
    """Run a CLI `main`; print a user error (bad name, missing file) as one line and return 2.

    Tracebacks are for bugs; a misspelt layer or a missing file deserves a sentence. Set
    `KT_DEBUG=1` to see the traceback anyway.
    """
    import os

    try:
        return main()
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        if os.environ.get("KT_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
