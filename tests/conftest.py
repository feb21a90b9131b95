"""Shared test setup: no network, an isolated Keras cache, and small helpers.

The guard makes any connection outside loopback fail the way an offline machine does (an
OSError, which urllib turns into URLError), so code under test sees a real "no internet".
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile

# Keras reads KERAS_HOME at import: set it before anything imports keras, so tests never read
# or write the user's ~/.keras and the ImageNet-weights cache is exercised from scratch.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kt-keras-home-")
os.environ["KT_CACHE_DIR"] = tempfile.mkdtemp(prefix="kt-feature-cache-")  # never the user's ~/.cache
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KT_SMALL", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker gets its share of the cores for TensorFlow's and oneDNN's thread pools:
    # two workers each spinning a pool as wide as the machine oversubscribe it. Subprocesses
    # (notebook kernels, CLI runs) inherit the limit.
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, _share)

import pytest  # noqa: E402

_LOOPBACK = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host) -> bool:
    return isinstance(host, str) and host.startswith(_LOOPBACK)


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family == socket.AF_UNIX or _is_loopback(host):
        return _real_connect(self, address)
    raise OSError(errno.ENETUNREACH, f"network access is disabled in tests (tried {address!r})")


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is None or _is_loopback(host):
        return _real_getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, f"network access is disabled in tests (looked up {host!r})")


socket.socket.connect = _guarded_connect
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Keep layer auto-names and graphs from piling up across tests."""
    yield
    import keras

    keras.backend.clear_session()


@pytest.fixture(scope="session")
def lite0_imagenet_path():
    """The converted ImageNet Lite0 weights, built once per test session in the isolated cache."""
    from keras_transfer.backbones.lite_weights import imagenet_weights_path

    return imagenet_weights_path()


_LONGEST_FIRST = ("test_notebooks.py", "test_distribute.py")


def pytest_collection_modifyitems(config, items):
    """Start the longest tests (the notebooks, the multi-process runs) first.

    With one worker per core (pytest-xdist), a two-minute notebook picked up last runs alone
    while the other worker idles; started first, the short tests fill in around it.
    """
    items.sort(key=lambda item: item.path.name not in _LONGEST_FIRST)  # a stable sort keeps the rest in order
