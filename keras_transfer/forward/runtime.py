"""Frozen forward passes on the fastest runtime: onnxruntime where it converts and agrees, else Keras.

A frozen pass runs a model whose weights do not change while it runs (a backbone extracting
features, a head stage's cached extractor, a trained model scored on a split). On CPU the same
network converted to ONNX and run by onnxruntime is faster than Keras's compiled `tf.function`
(EfficientNet-Lite0 at 224x224, batch 32, 2 cores: see docs/benchmarks.md). `frozen_forward`
chooses, at the pass's first batch, by this rule:

- `KT_FROZEN_RUNTIME=keras` (or `runtime="keras"`): Keras, always.
- onnxruntime or the converter (tf2onnx) missing, or a model that is not functional, has more
  than one input or a non-float one: Keras.
- `auto` (the default) with a GPU visible to TensorFlow, or inside a distribution strategy of
  several replicas: Keras, which runs there.
- A converted model in the cache for exactly this model (architecture and weights): onnxruntime.
- `auto` and a pass too small to pay back a conversion (fewer than `ONNX_FROM_PIXELS` pixels,
  about 2,000 images at 224x224; a conversion costs seconds): Keras.
- Otherwise the model is converted (`convert_to_onnx`), and its outputs on the first images of the
  pass are compared with Keras's: the largest difference is logged, and beyond `PARITY_TOLERANCE`
  times the output's scale (at least 1) the converted model is refused and Keras runs. A
  conversion that fails, or an operation onnxruntime does not know (a custom layer's), is Keras too.
  `KT_FROZEN_RUNTIME=onnx` skips the size rule (and the GPU rule), not the parity check.

The converted model is cached as `<model name>-<key>.onnx` in the feature cache's folder (or the
caller's), the key a hash of the model's configuration, its weights and the converter's version;
the parity measured at conversion travels in the file's metadata. One line is logged per pass:
which runtime ran, and why.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_transfer.core.files import atomic_write_bytes
from keras_transfer.core.names import first_line
from keras_transfer.forward.compiled import compiled_forward

RUNTIMES = ("auto", "keras", "onnx")
RUNTIME_ENV = "KT_FROZEN_RUNTIME"
PARITY_TOLERANCE = 1e-4  # times the output's scale (its largest magnitude, at least 1)
PARITY_IMAGES = 8  # the first images of the pass, run through both runtimes
# Break-even of a conversion (about 6-9 s for EfficientNet-Lite0 on 2 cores) against what
# onnxruntime saves per image (about 3.4 ms at 224x224): about 2,000 images at 224x224.
ONNX_FROM_PIXELS = 2_000 * 224 * 224
_FORMAT = 1  # bump when the converted file's meaning changes
_SESSIONS: "OrderedDict[str, tuple[object, dict]]" = OrderedDict()  # key -> (session, metadata), a few kept


def frozen_cache_dir() -> Path:
    """The feature cache's folder, where converted models are cached too: `$KT_CACHE_DIR` or ~/.cache/keras_transfer/features."""
    return Path(os.environ.get("KT_CACHE_DIR") or Path.home() / ".cache" / "keras_transfer" / "features")


def frozen_forward(model: keras.Model, *, images: int | None = None, cache_dir: str | os.PathLike | None = None,
                   runtime: str | None = None, log: Callable[[str], None] | None = None) -> "FrozenForward":
    """`model`'s inference pass on the fastest runtime that agrees with Keras (see the module's rule).

    The weights must not change while the returned function is used. `images`: how many images
    the pass will run (all its splits and views), for the size rule; `runtime`: "auto", "keras"
    or "onnx" (default `$KT_FROZEN_RUNTIME`, else "auto"). The function takes a batch of pixels
    and returns the model's outputs as a list of float32 arrays.
    """
    runtime = runtime or os.environ.get(RUNTIME_ENV) or "auto"
    if runtime not in RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={runtime!r} is not a frozen runtime; choose one of {', '.join(RUNTIMES)}")
    return FrozenForward(model, images, Path(cache_dir) if cache_dir else frozen_cache_dir(), runtime, log)


class FrozenForward:
    """A frozen pass that picks its runtime at its first batch; `runtime` and `reason` say which and why."""

    def __init__(self, model, images, cache_dir: Path, choice: str, log):
        self.model, self.images, self.cache_dir, self.choice, self.log = model, images, cache_dir, choice, log
        self.runtime: str | None = None  # "keras" or "onnxruntime", once the first batch ran
        self.reason = ""
        self._run = None

    def __call__(self, x) -> list[np.ndarray]:
        if self._run is None:
            self._choose(np.asarray(x, dtype=np.float32))
        return self._run(x)

    def _choose(self, first: np.ndarray) -> None:
        session, self.reason = self._onnx_session(first)
        if session is None:
            self.runtime = "keras"
            step = compiled_forward(self.model, as_list=True)
            self._run = lambda x: [np.asarray(out, dtype=np.float32) for out in step(x)]
        else:
            self.runtime = "onnxruntime"
            name = session.get_inputs()[0].name
            self._run = lambda x: [np.asarray(out, dtype=np.float32)
                                   for out in session.run(None, {name: np.asarray(x, dtype=np.float32)})]
        if self.log:
            where = f"onnxruntime ({onnx_threads()} threads)" if session is not None else "Keras"
            self.log(f"frozen pass of {getattr(self.model, 'name', 'the model')} on {where}: {self.reason}")

    def _onnx_session(self, first: np.ndarray):
        """(an onnxruntime session for the model, why) or (None, why Keras runs)."""
        if self.choice == "keras":
            return None, f"{RUNTIME_ENV}=keras"
        inputs = getattr(self.model, "inputs", None)  # None for a subclassed model never called symbolically
        if not inputs or len(inputs) != 1 or inputs[0].dtype not in ("float32", "float16", "float64"):
            return None, "onnxruntime runs functional models with one float input here"
        if self.choice == "auto" and _gpu_visible():
            return None, "a GPU is visible to TensorFlow, and Keras runs there"
        if self.choice == "auto" and _replicas() > 1:
            return None, "a distributed run: Keras runs on its replicas"
        small = self.choice == "auto" and (self.images is None
                                           or self.images * int(np.prod(first.shape[1:3])) < ONNX_FROM_PIXELS)
        if small and not self._maybe_cached():  # spares hashing the weights of a model never converted
            return None, self._too_small(first)
        missing = _converter_missing()
        if missing:
            return None, missing
        try:
            key = model_key(self.model)
        except Exception as error:  # noqa: BLE001 - a custom layer's get_config may raise anything
            return None, f"the model's configuration cannot be keyed for the cache ({first_line(error)})"
        path = self.cache_dir / f"{self.model.name}-{key[:20]}.onnx"
        cached, where = _SESSIONS.get(key), "converted earlier in this process"
        if cached is None:
            cached, where = _load(path, key), f"converted model from {path}"
        if cached is not None:
            _remember(key, cached)
            session, meta = cached
            return session, f"{where} (max |difference| from Keras at conversion {meta['max_difference']:.2g})"
        if small:
            return None, self._too_small(first)
        return self._convert(first, key, path)

    def _maybe_cached(self) -> bool:
        name = self.model.name
        return (any(meta.get("name") == name for _, meta in _SESSIONS.values())
                or any(self.cache_dir.glob(f"{glob.escape(name)}-*.onnx")))

    def _too_small(self, first: np.ndarray) -> str:
        count = "an unknown number of" if self.images is None else f"{self.images:,}"
        needed = int(round(ONNX_FROM_PIXELS / max(1, int(np.prod(first.shape[1:3]))), -2))
        return (f"{count} images at {first.shape[1]}x{first.shape[2]} do not pay back a conversion "
                f"(onnxruntime from about {needed:,}; {RUNTIME_ENV}=onnx converts anyway)")

    def _convert(self, first: np.ndarray, key: str, path: Path):
        started = time.perf_counter()
        try:
            proto = convert_to_onnx(self.model)
            unknown = _unknown_ops(proto)
            if unknown:
                return None, f"the converted model needs operations ONNX does not have ({', '.join(unknown)})"
            content = proto.SerializeToString()
            session = _session(content)
        except Exception as error:  # noqa: BLE001 - tf2onnx and onnxruntime raise many kinds
            return None, f"the conversion to ONNX failed ({first_line(error)})"
        seconds = time.perf_counter() - started
        sample = first[:PARITY_IMAGES]
        expected = self.model(sample, training=False)
        expected = [np.asarray(e, dtype=np.float32) for e in (expected if isinstance(expected, (list, tuple))
                                                                else [expected])]
        got = session.run(None, {session.get_inputs()[0].name: sample})
        difference, tolerance = _parity(expected, got)
        if not difference <= tolerance:  # also refuses a NaN
            return None, (f"onnxruntime's outputs differ from Keras's by up to {difference:.2g} on the first "
                          f"{len(sample)} images (tolerance {tolerance:.2g})")
        meta = {"key": key, "name": self.model.name, "max_difference": difference, "tolerance": tolerance}
        try:
            proto.metadata_props.add(key="keras_transfer_frozen", value=json.dumps(meta))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, proto.SerializeToString())
            stored = f"cached in {path}"
        except OSError as error:
            stored = f"not cached ({first_line(error)})"
        _remember(key, (session, meta))
        return session, (f"converted in {seconds:.1f} s, max |difference| from Keras {difference:.2g} "
                         f"on {len(sample)} images (tolerance {tolerance:.2g}); {stored}")


def convert_to_onnx(model: keras.Model, input_name: str = "images"):
    """`model` as an ONNX `ModelProto` (Keras's own `export(format="onnx")`, tf2onnx underneath).

    The input is float32 [N, ...] named `input_name`, any batch size; the outputs keep the
    model's order. tf2onnx's log is kept quiet: an operation it cannot convert is still written
    (then refused by onnxruntime), and callers say so in one line.
    """
    import onnx
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name=input_name)
    with tempfile.TemporaryDirectory() as folder, _quiet("tf2onnx"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Keras's tf2onnx patch for NumPy 2 touches np.object
        raw = Path(folder) / "model.onnx"
        model.export(str(raw), format="onnx", verbose=False, input_signature=[spec])
        return onnx.load(str(raw))


def onnx_session_options():
    """onnxruntime options for this machine: intra-op threads = the usable cores, one graph at a time."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = onnx_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: a refused model is reported in one line by the caller
    return options


def onnx_threads() -> int:
    """The cores this process may use: `TF_NUM_INTRAOP_THREADS` or `OMP_NUM_THREADS` when set (the
    limit TensorFlow is given, e.g. per test worker), else the CPUs this process may run on."""
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def model_key(model: keras.Model) -> str:
    """A hash of what decides a converted model: the configuration, the weights, the converter's version."""
    import tf2onnx

    digest = hashlib.sha256(json.dumps([_FORMAT, tf2onnx.__version__, keras.__version__]).encode())
    digest.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _parity(expected: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """(largest absolute difference, the tolerance of the output it is in); inf when the shapes differ."""
    if len(expected) != len(got) or any(e.shape != np.shape(g) for e, g in zip(expected, got)):
        return float("inf"), 0.0
    worst = (0.0, PARITY_TOLERANCE)
    for e, g in zip(expected, got):
        difference = float(np.max(np.abs(e - np.asarray(g, dtype=np.float32)), initial=0.0))
        tolerance = PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(e), initial=0.0)))
        if not difference <= tolerance:
            return difference, tolerance
        worst = max(worst, (difference, tolerance), key=lambda pair: pair[0] / pair[1])
    return worst


def _load(path: Path, key: str):
    """(session, metadata) of a cached converted model whose key matches, or None (also for a damaged file)."""
    if not path.is_file():
        return None
    try:
        import onnx

        content = path.read_bytes()
        props = {p.key: p.value for p in onnx.load_from_string(content).metadata_props}
        meta = json.loads(props["keras_transfer_frozen"])
        if meta.get("key") != key:
            return None
        return _session(content), meta
    except Exception:  # noqa: BLE001 - a truncated or foreign file: convert again
        return None


def _session(content: bytes):
    import onnxruntime

    return onnxruntime.InferenceSession(content, onnx_session_options(), providers=["CPUExecutionProvider"])


def _remember(key: str, entry) -> None:
    _SESSIONS[key] = entry
    _SESSIONS.move_to_end(key)
    while len(_SESSIONS) > 4:
        _SESSIONS.popitem(last=False)


def _unknown_ops(proto) -> list[str]:
    import onnx

    return sorted({n.op_type for n in proto.graph.node
                   if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})


def _converter_missing() -> str:
    for module in ("onnxruntime", "onnx", "tf2onnx"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return ""


def _replicas() -> int:
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@contextlib.contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
