"""Load a deployed classifier in any format and predict image files, folders and globs with it.

`load_classifier` accepts a SavedModel folder (or its versioned base folder), a `.keras`, a
`.tflite` or an `.onnx` file, or a run directory (it finds the export inside). A user's SavedModel
is checked for file-system and process ops before TensorFlow runs any of it (`op_guard`).
`predict_paths` reads each image with a pixel limit checked from the header first, so one bad or
oversized file is reported on its own and the others are still predicted.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_transfer.core.run_dir import RunDir
from keras_transfer.metrics import two_column
from keras_transfer.heads import inference_model
from keras_transfer.data.images import DEFAULT_MAX_PIXELS


def export_keras(model, path: str | os.PathLike) -> Path:
    """Write the model, without its training state, as a `.keras` file (atomic)."""
    from keras_transfer.core.files import atomic_file

    return atomic_file(Path(path), lambda tmp: inference_model(model).save(tmp))


@dataclass
class Classifier:
    """A loaded classifier: `predict(pixels uint8 [H, W, 3]) -> probabilities [C]` and its class names.

    A regression model (its labels name one target) predicts `[value]` in the target's units.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    labels: list[str]
    source: Path

    @property
    def regression(self) -> bool:
        """True for a regression model: one output, the value of the target `labels[0]`."""
        from keras_transfer.core.files import is_regression

        return is_regression(self.labels)


@dataclass
class Prediction:
    """One image's answer (`top`: (label, probability) best first; for regression `value`, the
    predicted target) or the one-line reason it has none."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    value: float | None = None


def find_run_model(run_dir: str | os.PathLike) -> Path:
    """The model a run directory serves: its newest exported SavedModel, else `export/model.keras`, else `model.keras`."""
    from keras_transfer.deploy.saved_model import latest_version_dir

    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    for candidate in (latest_version_dir(run.saved_model_dir), run.exported_keras_path, run.model_path):
        if candidate is not None and candidate.exists():
            return candidate
    raise FileNotFoundError(f"{run_dir} holds no model (no export/saved_model/<version>, export/model.keras or "
                            "model.keras): train into it with keras-transfer train first")


def _labels_beside(path: Path, outputs: int) -> list[str]:
    """The class names of the `labels.txt` nearest above `path`, checked against the model's `outputs`."""
    from keras_transfer.core.files import check_label_count, read_labels

    for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
        if (folder / "labels.txt").is_file():
            labels = read_labels(folder / "labels.txt")
            check_label_count(labels, outputs, folder / "labels.txt")
            return labels
    raise FileNotFoundError(f"no labels.txt beside {path}: export with keras-transfer export")


def _resolve(path: Path) -> Path:
    from keras_transfer.deploy.saved_model import latest_version_dir

    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        version = latest_version_dir(path)  # the base folder TF Serving watches
        if version is not None:
            return version
        return find_run_model(path)
    return path


def load_classifier(path: str | os.PathLike, *, resize: str = "resize") -> Classifier:
    """Load a classifier from a SavedModel, `.keras`, `.tflite`, `.onnx` or a run directory.

    Class names come from the model (SavedModel asset, ONNX metadata) or `labels.txt` beside it.
    Files without the resize inside (`.keras`, `.tflite`, `.onnx`) are resized here with `resize`.
    """
    from keras_transfer.data.images import resize_rgb

    path = _resolve(Path(path))
    if path.is_dir():
        import tensorflow as tf

        from keras_transfer.deploy.op_guard import check_saved_model

        check_saved_model(path)  # before TensorFlow runs any of the model's functions
        from keras_transfer.core.files import check_label_count, read_labels

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        produced = serve.structured_outputs
        key = "values" if "values" in produced else "probabilities"
        outputs = produced[key].shape[-1]
        if outputs is None:
            raise ValueError(f"{path}: its serving signature's {key} have no fixed number of classes")
        asset = path / "assets" / "labels.txt"  # the class names travel inside the SavedModel
        if asset.is_file():
            labels = read_labels(asset)
            check_label_count(labels, int(outputs), asset)
        else:
            labels = _labels_beside(path, int(outputs))
        return Classifier(lambda pixels: serve(images=tf.constant(pixels[None], tf.uint8))[key].numpy()[0],
                          labels, path)
    if path.suffix == ".tflite":
        from keras_transfer.deploy.tflite import tflite_interpreter, tflite_predict

        interpreter = tflite_interpreter(path)
        size = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:3])
        labels = _labels_beside(path, int(interpreter.get_output_details()[0]["shape"][-1]))
        scores = _scores(labels)
        return Classifier(lambda pixels: scores(tflite_predict(interpreter, resize_rgb(pixels, size, resize)[None]))[0],
                          labels, path)
    if path.suffix == ".onnx":
        from keras_transfer.deploy.onnx import onnx_labels, onnx_predict, onnx_session

        session = onnx_session(path)
        size = tuple(int(d) for d in session.get_inputs()[0].shape[1:3])
        from keras_transfer.core.files import check_label_count

        labels = onnx_labels(session)
        check_label_count(labels, _onnx_outputs(session), f"{path} (its 'labels' metadata)")
        scores = _scores(labels)
        return Classifier(lambda pixels: scores(onnx_predict(session, resize_rgb(pixels, size, resize)[None]))[0],
                          labels, path)
    if path.suffix == ".keras":
        from keras_transfer.core import layers  # noqa: F401  (registers the toolkit's layers with Keras)
        from keras_transfer.core.archives import load_keras_model

        model = load_keras_model(path)  # archive sizes checked, safe mode
        size = tuple(int(d) for d in model.input.shape[1:3])
        labels = _labels_beside(path, int(model.output.shape[-1]))
        scores = _scores(labels)
        return Classifier(lambda pixels: scores(np.asarray(model(resize_rgb(pixels, size, resize)[None], training=False)))[0],
                          labels, path)
    raise ValueError(f"--model must be a SavedModel folder, a .keras, .tflite or .onnx file, or a run directory; got {path}")


def _onnx_outputs(session) -> int:
    """The class count of an ONNX model's first output ([N, C]); a symbolic C is refused."""
    last = session.get_outputs()[0].shape[-1]
    if not isinstance(last, int):
        raise ValueError(f"this ONNX model's output has no fixed number of classes (shape {session.get_outputs()[0].shape})")
    return last


def _scores(labels: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """How raw outputs become what `Classifier.predict` returns: class probabilities (a binary
    model's one sigmoid made two-way), or, for regression, the values as they are."""
    from keras_transfer.core.files import is_regression

    return (lambda outputs: np.asarray(outputs, dtype=np.float32)) if is_regression(labels) else (lambda outputs: two_column(outputs, np.float32))


def expand_image_paths(items: Iterable[str]) -> list[str]:
    """Files as named, folders searched recursively for images (by extension), globs expanded; order kept.

    A name that matches nothing is kept as is, so it is reported as a missing file rather than
    silently dropped.
    """
    from keras_transfer.data.records import IMAGE_EXTENSIONS

    found: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found.extend(str(p) for p in sorted(Path(item).rglob("*"))
                         if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif glob.has_magic(item) and not os.path.exists(item):
            matches = [m for m in sorted(glob.glob(item, recursive=True)) if os.path.isfile(m)]
            found.extend(matches or [item])
        else:
            found.append(item)
    return found


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as uint8 RGB [H, W, 3], refusing one whose header declares more than `max_pixels`.

    The size is read from the header before any decoding (`keras_transfer.data.images.read_rgb`), so a
    tiny file that would decode into gigabytes costs nothing; the ImageReadError names the file.
    """
    from keras_transfer.data.images import read_rgb

    return read_rgb(path, max_pixels)


def _top(classifier: Classifier, name: str, pixels: np.ndarray, top_k: int) -> Prediction:
    probabilities = np.asarray(classifier.predict(pixels), dtype=np.float64)
    if classifier.regression:
        value = float(probabilities.reshape(-1)[0])
        return Prediction(name, [(classifier.labels[0], value)], value=value)
    order = probabilities.argsort()[::-1][: max(1, min(top_k, len(probabilities)))]
    return Prediction(name, [(classifier.labels[i], float(probabilities[i])) for i in order])


def with_tta(classifier: Classifier, views: str | Sequence[str] = "auto") -> Classifier:
    """The same classifier, its probabilities averaged over test-time views of each image.

    `views` are names of `keras_transfer.interpret.tta.TTA_VIEWS` (`flip`, `crop`), or "auto":
    the run's own choice when a `config.yaml` sits beside the model or in its run directory
    (mirror only if it trained on flips), else crops only. Works for every format, because it
    only calls the classifier on more images.
    """
    from keras_transfer.core.names import unknown_name_message
    from keras_transfer.interpret.tta import TTA_VIEWS, augmented_views, default_views

    if views == "auto":
        views = ("crop",)
        for folder in (classifier.source.parent, *classifier.source.parents):
            if (folder / "config.yaml").is_file():
                from keras_transfer.config import load_config

                views = default_views(load_config(folder / "config.yaml").data.augment)
                break
    elif isinstance(views, str):
        views = tuple(v.strip() for v in views.split(",") if v.strip())
    for view in views:
        if view not in TTA_VIEWS:
            raise ValueError(unknown_name_message("TTA view", view, TTA_VIEWS, where="--tta"))

    def predict(pixels: np.ndarray) -> np.ndarray:
        batch = augmented_views(np.asarray(pixels, np.float32)[None], views)
        outputs = [classifier.predict(np.asarray(np.round(view[0]), dtype=np.uint8)) for view in batch]
        return np.mean(outputs, axis=0)

    return Classifier(predict, classifier.labels, classifier.source)


def predict_paths(classifier: Classifier, paths: Iterable[str], *, top_k: int = 5,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Prediction]:
    """Yield one `Prediction` per image path: its top-k classes, or the one-line reason it failed."""
    from keras_transfer.data.images import ImageReadError

    for path in paths:
        try:
            pixels = read_image(path, max_pixels=max_pixels)
        except ImageReadError as error:
            yield Prediction(str(path), error=str(error))
            continue
        yield _top(classifier, str(path), pixels, top_k)


def predict_arrays(classifier: Classifier, images: Iterable[tuple[str, np.ndarray]], *,
                   top_k: int = 5) -> Iterator[Prediction]:
    """Yield one `Prediction` per (name, uint8 RGB pixels [H, W, 3]) pair, for images already in memory."""
    for name, pixels in images:
        yield _top(classifier, name, np.asarray(pixels, dtype=np.uint8), top_k)


def imagenet_classifier(backbone: str = "efficientnet_lite0", *, weights: str = "imagenet",
                        resize: str = "resize") -> Classifier:
    """A registered backbone with its ImageNet classifier, as a `Classifier` over the 1000 ImageNet classes."""
    from keras_transfer.backbones import build_backbone
    from keras_transfer.backbones.imagenet import imagenet_classes
    from keras_transfer.data.images import resize_rgb

    model = build_backbone(backbone, weights=weights, include_top=True)
    size = tuple(int(d) for d in model.input.shape[1:3])
    labels = [f"{name} ({wnid})" for wnid, name in imagenet_classes()]
    return Classifier(lambda pixels: np.asarray(model(resize_rgb(pixels, size, resize)[None], training=False))[0],
                      labels, Path(backbone))
