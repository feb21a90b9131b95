"""A quiet start for commands: TensorFlow's start-up lines are not shown unless asked for.

Importing TensorFlow prints about seven lines to the process's standard error before Python can
intervene (absl's "before InitializeLog" notice, oneDNN, CUDA probing), and on a machine without
a GPU a later `E0000 ... failed call to cuInit` reads as an error before anything has happened.
Those lines come from C++ and ignore Python's `sys.stderr`, so a command silences file
descriptor 2 while TensorFlow's modules execute, and sets `TF_CPP_MIN_LOG_LEVEL=3` for what
TensorFlow would log afterwards. Should the import itself fail, what it printed is shown.
`--verbose` on any command, or `KT_VERBOSE=1`, keeps every line.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

VERBOSE_ENV = "KT_VERBOSE"


def wants_verbose(argv: list[str]) -> bool:
    """True when the command line has `--verbose` or the environment sets `KT_VERBOSE=1`."""
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_tensorflow_start() -> None:
    """Arrange for TensorFlow's start-up lines to be dropped when it is imported (later, lazily).

    Installs an import hook for the top-level `tensorflow` package only; does nothing when
    TensorFlow is already imported. The hook removes itself once used.
    """
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilencedLoader(spec.loader)
        return spec


class _SilencedLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)

    def __getattr__(self, name):  # get_resource_reader, is_package...: the real loader's
        return getattr(self._loader, name)
