"""Deployment: export a trained classifier (SavedModel for TF Serving, `.keras`, TFLite, ONNX) and
predict with any of them. The `export` and `predict` commands are thin CLIs over this package."""

from keras_transfer.deploy.inference import (
    Classifier,
    Prediction,
    expand_image_paths,
    export_keras,
    find_run_model,
    imagenet_classifier,
    inference_model,
    load_classifier,
    predict_arrays,
    predict_paths,
    read_image,
    with_tta,
)
from keras_transfer.deploy.onnx import (
    export_onnx,
    onnx_labels,
    onnx_parity,
    onnx_predict,
)
from keras_transfer.deploy.op_guard import (
    UnsafeModelError,
    check_saved_model,
    denied_ops,
)
from keras_transfer.deploy.parity import compare
from keras_transfer.deploy.runs import FORMATS, check_formats, export_run
from keras_transfer.deploy.saved_model import (
    DEFAULT_MAX_PIXELS,
    export_saved_model,
    latest_version_dir,
    next_version_dir,
)
from keras_transfer.deploy.tflite import (
    TFLITE_MODES,
    check_tflite_modes,
    export_tflite,
    tflite_interpreter,
    tflite_parity,
    tflite_predict,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "TFLITE_MODES",
    "Classifier",
    "Prediction",
    "UnsafeModelError",
    "check_formats",
    "check_saved_model",
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
