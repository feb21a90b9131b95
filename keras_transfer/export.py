"""Export a trained classifier for deployment: SavedModel, `.keras` and TFLite.

The SavedModel needs no code of ours to serve. `serving_default` takes a uint8 image batch of any
height and width and resizes it inside with the training policy; `serve_bytes` takes encoded
JPEG/PNG strings. Both return `probabilities`, `class_id` and `label`, with the class names stored
as an asset. TFLite is converted from a SavedModel (Keras 3 models break
`TFLiteConverter.from_keras_model`) and checked against the Keras model after conversion. Every
export is written to a temporary path and renamed into place: a failure leaves nothing half-written.

    python -m keras_transfer.export --run DIR [--format saved_model,keras,tflite] [--tflite float32,float16,int8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_transfer.cli_util import run_cli
from keras_transfer.files import atomic_file, atomic_folder, read_labels

FORMATS = ("saved_model", "keras", "tflite")
TFLITE_MODES = ("float32", "float16", "int8")


def _serving_module(model, labels_file: Path, resize: str):
    import tensorflow as tf

    from keras_transfer.images import resize_image

    height, width = (int(d) for d in model.input.shape[1:3])
    binary = int(model.output.shape[-1]) == 1

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.labels = tf.saved_model.Asset(str(labels_file))
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(self.labels, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                              tf.string, tf.lookup.TextFileIndex.WHOLE_LINE), default_value="")

        def outputs(self, pixels):
            scores = tf.cast(self.model(pixels, training=False), tf.float32)
            if binary:
                scores = tf.concat([1.0 - scores, scores], axis=-1)
            class_id = tf.argmax(scores, axis=-1)
            return {"probabilities": scores, "class_id": class_id, "label": self.table.lookup(class_id)}

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def serve_images(self, images):
            return self.outputs(resize_image(images, (height, width), resize))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
        def serve_bytes(self, encoded):
            def decode(data):
                image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
                image.set_shape([None, None, 3])
                return resize_image(image, (height, width), resize)

            pixels = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
            return self.outputs(pixels)

    return Serving()


def export_saved_model(model, path: str | os.PathLike, class_names: Sequence[str], *, resize: str = "resize") -> Path:
    """Write a SavedModel with `serving_default` (uint8 images) and `serve_bytes` (encoded images).

    Both signatures return `probabilities` [N, C], `class_id` [N] and `label` [N]; images of any
    size are resized inside with `resize` (the training policy). Needs no keras_transfer to serve.
    """
    import tensorflow as tf

    def write(tmp: Path):
        with tempfile.TemporaryDirectory() as folder:
            labels = Path(folder) / "labels.txt"
            labels.write_text("".join(f"{name}\n" for name in class_names))
            module = _serving_module(model, labels, resize)
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve_images,
                                                              "serve_bytes": module.serve_bytes})

    return atomic_folder(Path(path), write)


def inference_model(model):
    """An uncompiled twin of `model` sharing its layers and weights: what deployment needs.

    Saving it leaves the training state (optimizer, loss, per-block rates) out of the file, so a
    `.keras` export reloads without the toolkit's optimizer classes.
    """
    import keras

    return keras.Model(model.input, model.output, name=model.name)


def export_keras(model, path: str | os.PathLike) -> Path:
    """Write the model, without its training state, as a `.keras` file (atomic)."""
    return atomic_file(Path(path), lambda tmp: inference_model(model).save(tmp))


def export_tflite(model, path: str | os.PathLike, *, mode: str = "float32") -> Path:
    """Convert to TFLite (float32, float16, or dynamic-range int8) from Keras's own SavedModel export.

    Converting a hand-made tf.Module keeps Keras 3's resource variables as uninitialised TFLite
    variables (every output NaN), so the conversion starts from `model.export`, which freezes
    them. The TFLite model takes float32 pixels [1, H, W, 3] in [0, 255] at the model's size
    (resize on the device first) and returns the probabilities.
    """
    import tensorflow as tf

    if mode not in TFLITE_MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; expected one of {', '.join(TFLITE_MODES)}")

    def write(tmp: Path):
        with tempfile.TemporaryDirectory() as folder:
            model.export(folder, format="tf_saved_model", verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
            if mode in ("float16", "int8"):
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode == "float16":
                converter.target_spec.supported_types = [tf.float16]
            tmp.write_bytes(converter.convert())

    return atomic_file(Path(path), write)


def tflite_interpreter(path: str | os.PathLike):
    """A LiteRT interpreter for an exported model, set up for one image at a time."""
    from ai_edge_litert.interpreter import Interpreter  # tf.lite.Interpreter is deprecated

    interpreter = Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    interpreter.allocate_tensors()
    return interpreter


def tflite_predict(path_or_interpreter, pixels: np.ndarray) -> np.ndarray:
    """Run a TFLite classifier exported here over float32 pixels [N, H, W, 3], one image at a time."""
    interpreter = path_or_interpreter
    if isinstance(path_or_interpreter, (str, os.PathLike)):
        interpreter = tflite_interpreter(path_or_interpreter)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for image in np.asarray(pixels, dtype=np.float32):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def tflite_parity(model, path: str | os.PathLike, pixels: np.ndarray) -> dict[str, float]:
    """Compare a TFLite export with the Keras model on `pixels`: max probability gap, top-1 agreement."""
    reference = np.asarray(model.predict(pixels, verbose=0, batch_size=32), dtype=np.float32)
    converted = tflite_predict(path, pixels)
    if reference.shape[-1] == 1:
        reference, converted = np.concatenate([1 - reference, reference], 1), np.concatenate([1 - converted, converted], 1)
    return {"images": int(len(pixels)), "max_abs_diff": float(np.abs(reference - converted).max()),
            "top1_agreement": float((reference.argmax(1) == converted.argmax(1)).mean())}


def export_run(run_dir: str | os.PathLike, formats: Sequence[str] = ("saved_model", "keras"),
               tflite_modes: Sequence[str] = ("float32",), log=print, model=None, data=None) -> dict[str, Path]:
    """Export a finished run's model in `formats` into `run_dir/export/`; print TFLite parity on validation."""
    import keras

    import keras_transfer  # noqa: F401  (registers the toolkit's layers)
    from keras_transfer.config import load_config

    run_dir = Path(run_dir)
    for fmt in formats:
        if fmt not in FORMATS:
            from keras_transfer._names import unknown_name_message

            raise ValueError(unknown_name_message("export format", fmt, FORMATS))
    config = load_config(run_dir / "config.yaml")
    if model is None:
        if not (run_dir / "model.keras").is_file():
            raise FileNotFoundError(f"{run_dir} has no model.keras: is it a finished keras_transfer run?")
        model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    class_names = read_labels(run_dir / "labels.txt")
    out, written = run_dir / "export", {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in class_names))  # for .keras and .tflite
    if "saved_model" in formats:
        written["saved_model"] = export_saved_model(model, out / "saved_model", class_names, resize=config.data.resize)
        log(f"SavedModel: {written['saved_model']} (signatures serving_default, serve_bytes)")
    if "keras" in formats:
        written["keras"] = export_keras(model, out / "model.keras")
        log(f"Keras: {written['keras']}")
    if "tflite" in formats:
        pixels = _validation_pixels(config, data)
        for mode in tflite_modes:
            path = export_tflite(model, out / f"model_{mode}.tflite", mode=mode)
            written[f"tflite_{mode}"] = path
            parity = tflite_parity(model, path, pixels)
            log(f"TFLite {mode}: {path} ({path.stat().st_size / 1e6:.1f} MB); on {parity['images']} validation "
                f"images: max |p - p_keras| {parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.1%}")
    return written


def _validation_pixels(config, data, limit: int = 64) -> np.ndarray:
    from keras_transfer.data import load_data

    data = data or load_data(config.data)
    split = "val" if "val" in data.splits else "train"
    batches = [x.numpy() for x, _ in data.dataset(split, training=False).take(max(1, limit // config.data.batch_size + 1))]
    return np.concatenate(batches)[:limit]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_transfer.export", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by keras_transfer.train")
    parser.add_argument("--format", default="saved_model,keras", help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--tflite", default="float32", help=f"TFLite modes: {', '.join(TFLITE_MODES)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export a run's model in the requested formats; return the exit status."""
    args = _parser().parse_args(argv)
    export_run(args.run, [f.strip() for f in args.format.split(",") if f.strip()],
               [m.strip() for m in args.tflite.split(",") if m.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
