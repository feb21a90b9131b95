"""Model files from others (`.tflite`, `.onnx`) are checked before a runtime allocates or reads for them.

A `.tflite` file declares every tensor's shape; LiteRT allocates what it declares. Two changed
bytes in a 2.4 KB model declared a 12.9 GB tensor and `predict` grew to 11 GB before it was
killed, so the declared sizes are summed from the interpreter's tensor table (read before
`allocate_tensors`) and refused over a bound. An `.onnx` file may name external data files; one
outside the model's folder (`../../home/you/.ssh/id_rsa`) is refused here, whatever the installed
onnxruntime would do. Every refusal and every runtime error is a `ModelFileError`: one line,
with the file named, and the runtime's own reason shortened to its first line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_transfer.core.names import first_line  # noqa: F401 - deploy's modules take it from here

# 2 GiB for one tensor: the largest activation of an EfficientNet-B7 at 600 x 600 (batch 1) is
# about 90 MB. The declared tensors together may hold 4 times that (LiteRT reuses memory between
# them, so what it allocates is less than their sum).
DEFAULT_MAX_TENSOR_BYTES = 2 << 30


class ModelFileError(ValueError):
    """A model file that cannot be loaded safely or at all: `str(error)` is `path: reason`, one line."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def check_tflite_tensors(interpreter, path: str | os.PathLike,
                         max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
    """Refuse a TFLite model whose declared tensors exceed `max_tensor_bytes` (one) or 4x that (all).

    Reads the interpreter's tensor table, which holds the declared shapes before
    `allocate_tensors` has reserved anything, so a hostile header costs nothing.
    """
    try:
        details = interpreter.get_tensor_details()
    except (ValueError, RuntimeError) as error:
        raise ModelFileError(path, f"not a readable TFLite model ({first_line(error)})") from None
    total = 0
    for tensor in details:
        shape = [int(d) for d in tensor["shape"]]
        if any(d < 0 for d in shape):
            raise ModelFileError(path, f"tensor {tensor['name']!r} declares a negative dimension {shape}")
        size = int(np.prod(shape, dtype=object)) * np.dtype(tensor["dtype"]).itemsize
        if size > max_tensor_bytes:
            raise ModelFileError(path, f"tensor {tensor['name']!r} declares shape {shape} ({_gb(size)}), over the "
                                       f"limit of {_gb(max_tensor_bytes)} per tensor: a damaged or hostile model?")
        total += size
    if total > 4 * max_tensor_bytes:
        raise ModelFileError(path, f"its tensors declare {_gb(total)} together, over the limit of "
                                   f"{_gb(4 * max_tensor_bytes)}: a damaged or hostile model?")


def check_onnx_file(path: str | os.PathLike) -> None:
    """Refuse an ONNX file that does not parse, or whose external data lies outside its folder.

    The model is parsed without its external data (nothing else is read); every tensor stored
    outside the file must name a file inside the model's folder, after resolving `..` and links.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf raises its own DecodeError and more
        raise ModelFileError(path, f"not a readable ONNX model (truncated or damaged: {first_line(error)})") from None
    folder = path.resolve().parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        if not location or Path(location).is_absolute() or not (folder / location).resolve().is_relative_to(folder):
            raise ModelFileError(path, f"tensor {tensor.name!r} reads external data from {location!r}, outside the "
                                       f"model's folder {folder}: refused")


def _tensors(graph):
    """Every tensor a graph stores: initializers, sparse ones, node attributes, and nested graphs'."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
