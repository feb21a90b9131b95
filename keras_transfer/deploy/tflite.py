"""TFLite in four modes, converted from Keras's own SavedModel export, and run with LiteRT.

- `float32`: the model as trained.
- `float16`: weights stored as float16 (half the size), computed in float32.
- `dynamic`: weights stored as int8, activations quantized on the fly (dynamic range). This was
  called "int8" before; it is not a full-integer model.
- `int8`: full-integer quantization calibrated on a representative set of training images; the
  input is uint8 pixels (a phone feeds camera pixels directly) and the output uint8 probabilities.

Converting a hand-made tf.Module keeps Keras 3's resource variables as uninitialised TFLite
variables (every output NaN), so the conversion starts from `model.export`, which freezes them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from keras_transfer.deploy.model_files import DEFAULT_MAX_TENSOR_BYTES, ModelFileError, check_tflite_tensors, first_line
from keras_transfer.core.files import atomic_file

TFLITE_MODES = ("float32", "float16", "dynamic", "int8")


def check_tflite_modes(modes: Iterable[str]) -> list[str]:
    """The modes as a list, or a one-line ValueError naming the closest valid mode."""
    from keras_transfer.core.names import unknown_name_message

    modes = list(modes)
    for mode in modes:
        if mode not in TFLITE_MODES:
            raise ValueError(unknown_name_message("TFLite mode", mode, TFLITE_MODES))
    return modes


def export_tflite(model, path: str | os.PathLike, *, mode: str = "float32",
                  representative: np.ndarray | None = None) -> Path:
    """Convert `model` to a TFLite file in `mode` (see the module docstring); `int8` needs `representative`.

    `representative` is a float32 batch of training images [N, H, W, 3] in [0, 255] at the
    model's size; the converter measures each activation's range on it. The float models take
    float32 pixels [1, H, W, 3] in [0, 255] (resize on the device first) and return probabilities.
    """
    import tensorflow as tf

    check_tflite_modes([mode])
    if mode == "int8" and (representative is None or len(representative) == 0):
        raise ValueError("TFLite int8 (full-integer) needs representative training images to calibrate on")

    def calibration():
        images = np.asarray(representative, dtype=np.float32).copy()
        # Pin the input range to exactly [0, 255] (scale 1, zero point 0) so raw camera pixels
        # are the quantized input: one pixel at each end of the range is enough.
        images[0, 0, 0], images[0, 0, 1] = 0.0, 255.0
        for image in images:
            yield [image[None]]

    def write(tmp: Path):
        with tempfile.TemporaryDirectory() as folder:
            model.export(folder, format="tf_saved_model", verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
            if mode != "float32":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode == "float16":
                converter.target_spec.supported_types = [tf.float16]
            if mode == "int8":
                converter.representative_dataset = calibration
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.uint8
                converter.inference_output_type = tf.uint8
            tmp.write_bytes(converter.convert())

    return atomic_file(Path(path), write)


def tflite_interpreter(path: str | os.PathLike, *, threads: int | None = None,
                       max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
    """A LiteRT interpreter for an exported model, set up for one image at a time.

    The declared tensor sizes are checked before anything is allocated (`check_tflite_tensors`);
    a file LiteRT cannot read, or one over the bound, is a one-line `ModelFileError`.
    """
    from ai_edge_litert.interpreter import (
        Interpreter,  # tf.lite.Interpreter is deprecated
    )

    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
    except (ValueError, RuntimeError) as error:
        raise ModelFileError(path, f"not a readable TFLite model ({first_line(error)})") from None
    check_tflite_tensors(interpreter, path, max_tensor_bytes)
    try:
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError, IndexError) as error:
        raise ModelFileError(path, f"LiteRT cannot prepare this model ({first_line(error)})") from None
    return interpreter


def tflite_predict(path_or_interpreter, pixels: np.ndarray) -> np.ndarray:
    """Probabilities (float32) of a TFLite classifier exported here for pixels [N, H, W, 3] in [0, 255].

    Quantized inputs and outputs (the `int8` mode) are converted with the model's own scale and
    zero point, so every mode answers in the same units.
    """
    interpreter = path_or_interpreter
    if isinstance(path_or_interpreter, (str, os.PathLike)):
        interpreter = tflite_interpreter(path_or_interpreter)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    results = []
    for image in np.asarray(pixels, dtype=np.float32):
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            image = np.clip(np.round(image / in_scale + in_zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"])[0].copy()
        if out["dtype"] != np.float32:
            result = (result.astype(np.float32) - out_zero) * out_scale
        results.append(result.astype(np.float32))
    return np.stack(results)


def tflite_parity(model, path: str | os.PathLike, pixels: np.ndarray) -> dict[str, float]:
    """Compare a TFLite export with the Keras model on `pixels`: max probability gap, top-1 agreement."""
    from keras_transfer.deploy.parity import compare, keras_probabilities

    return compare(keras_probabilities(model, pixels), tflite_predict(path, pixels))
