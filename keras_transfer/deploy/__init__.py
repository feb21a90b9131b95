"""Deployment: export a trained model (classifier or regressor; SavedModel for TF Serving, `.keras`, TFLite, ONNX) and
predict with any of them. The `export` and `predict` commands are thin CLIs over this package."""

from __future__ import annotations

import importlib

# Each name loads its module on first use (PEP 562): the TensorFlow-free ones
# (TFLITE_MODES, DEFAULT_MAX_PIXELS) serve `--help` without the seconds TensorFlow takes to import.
_HOMES = {
    "Classifier": "inference",
    "DEFAULT_MAX_PIXELS": "saved_model",
    "ModelFileError": "model_files",
    "check_onnx_file": "model_files",
    "check_tflite_tensors": "model_files",
    "check_formats": "export",
    "export_run": "export",
    "Prediction": "inference",
    "TFLITE_MODES": "tflite",
    "UnsafeModelError": "op_guard",
    "check_saved_model": "op_guard",
    "check_tflite_modes": "tflite",
    "compare": "parity",
    "denied_ops": "op_guard",
    "expand_image_paths": "inference",
    "export_keras": "inference",
    "export_onnx": "onnx",
    "export_saved_model": "saved_model",
    "export_tflite": "tflite",
    "find_run_model": "inference",
    "imagenet_classifier": "inference",
    "inference_model": "inference",
    "latest_version_dir": "saved_model",
    "load_classifier": "inference",
    "next_version_dir": "saved_model",
    "onnx_labels": "onnx",
    "onnx_parity": "onnx",
    "onnx_predict": "onnx",
    "predict_arrays": "inference",
    "predict_paths": "inference",
    "read_image": "inference",
    "tflite_interpreter": "tflite",
    "tflite_parity": "tflite",
    "tflite_predict": "tflite",
    "with_tta": "inference",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "TFLITE_MODES",
    "Classifier",
    "ModelFileError",
    "Prediction",
    "UnsafeModelError",
    "check_formats",
    "check_onnx_file",
    "check_saved_model",
    "check_tflite_tensors",
    "check_tflite_modes",
    "compare",
    "denied_ops",
    "expand_image_paths",
    "export_keras",
    "export_onnx",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "find_run_model",
    "imagenet_classifier",
    "inference_model",
    "latest_version_dir",
    "load_classifier",
    "next_version_dir",
    "onnx_labels",
    "onnx_parity",
    "onnx_predict",
    "predict_arrays",
    "predict_paths",
    "read_image",
    "tflite_interpreter",
    "tflite_parity",
    "tflite_predict",
    "with_tta",
]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"keras_transfer.deploy.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'keras_transfer.deploy' has no attribute {name!r}")
