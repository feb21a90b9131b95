"""ONNX through Keras's own `model.export(format="onnx")` (tf2onnx underneath), checked with onnxruntime.

The conversion is `keras_transfer.forward.convert_to_onnx`, the one frozen passes use too.

The ONNX model takes float32 pixels `images` [N, H, W, 3] in [0, 255] at the model's size and
returns the probabilities; the class names travel in its metadata (`labels`, a JSON list), so
any ONNX runtime can name the answer without a side file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_transfer.deploy.model_files import ModelFileError, check_onnx_file, first_line
from keras_transfer.deploy.parity import compare, keras_probabilities
from keras_transfer.core.files import atomic_file


def export_onnx(model, path: str | os.PathLike, class_names: Sequence[str]) -> Path:
    """Write `model` (without its training state) as an ONNX file with the labels in its metadata (atomic)."""
    import onnx

    from keras_transfer.forward import convert_to_onnx  # imports Keras: not at module level (--help stays light)
    from keras_transfer.heads import inference_model

    twin = inference_model(model)
    height, width = (int(d) for d in model.input.shape[1:3])
    twin(np.zeros((1, height, width, 3), np.float32))  # Keras exports only models that were called

    def write(tmp: Path):
        proto = convert_to_onnx(twin, input_name="images")
        proto.metadata_props.add(key="labels", value=json.dumps(list(class_names)))
        proto.metadata_props.add(key="input", value="float32 RGB pixels [N, H, W, 3] in [0, 255]")
        onnx.save(proto, str(tmp))

    return atomic_file(Path(path), write)


def onnx_session(path: str | os.PathLike):
    """An onnxruntime CPU session for an exported model.

    The file is checked first (`check_onnx_file`: it parses, its external data stays in its
    folder); whatever onnxruntime then refuses (an unknown custom-op domain, an invalid graph) is
    a one-line `ModelFileError` naming the file, not onnxruntime's traceback.
    """
    import onnxruntime

    check_onnx_file(path)
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime's errors derive from Exception alone
        raise ModelFileError(path, f"onnxruntime cannot load this model ({first_line(error)})") from None


def onnx_labels(path_or_session) -> list[str]:
    """The class names stored in an exported ONNX model's metadata."""
    session = onnx_session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    labels = session.get_modelmeta().custom_metadata_map.get("labels")
    if labels is None:
        raise ValueError("this ONNX model has no 'labels' metadata: export it with keras-transfer export")
    return json.loads(labels)


def onnx_predict(path_or_session, pixels: np.ndarray) -> np.ndarray:
    """Probabilities of an exported ONNX model for float pixels [N, H, W, 3] in [0, 255]."""
    session = onnx_session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: np.asarray(pixels, dtype=np.float32)})[0], dtype=np.float32)


def onnx_parity(model, path: str | os.PathLike, pixels: np.ndarray) -> dict[str, float]:
    """Compare an ONNX export (run by onnxruntime) with the Keras model: max probability gap, top-1 agreement."""
    return compare(keras_probabilities(model, pixels), onnx_predict(path, pixels))
