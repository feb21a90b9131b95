"""`python -m keras_transfer.predict`: labels and probabilities for image files.

    python -m keras_transfer.predict --model runs/x/export/saved_model photo.jpg [more.png ...]
    python -m keras_transfer.predict --backbone efficientnet_lite0 photo.jpg [more.png ...]

With `--model` (a SavedModel folder, a `.keras` or a `.tflite` file; class names from the model
or from `labels.txt` beside it) it prints each image's label and probability. With `--backbone` it
prints the top-5 ImageNet classes of the pretrained backbone (offline: the Lite0 weights install
with pip). A file that cannot be read gets a one-line error and the others are still predicted;
the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_transfer.cli_util import run_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_transfer.predict", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="*", help="image files (JPEG, PNG, BMP, GIF; any size and mode)")
    parser.add_argument("--demo", action="store_true",
                        help="predict the real photos that ship with scikit-image (coffee, a cat, a rocket)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained classifier: SavedModel folder, .keras or .tflite (labels.txt beside it)")
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        help="a registered family with ImageNet weights (default: efficientnet_lite0)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' or a full-model weights file")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print per image")
    parser.add_argument("--resize", default="resize", choices=("resize", "crop_to_aspect_ratio", "pad"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Predict each image file and print its top classes; return 1 if any file failed, else 0."""
    args = _parser().parse_args(argv)
    import numpy as np

    from keras_transfer.backbones import build_backbone
    from keras_transfer.backbones.imagenet import decode_predictions
    from keras_transfer.images import ImageReadError, resize_rgb

    if not args.images and not args.demo:
        raise ValueError("name at least one image file, or pass --demo")
    if args.model is not None:
        return _predict_with_model(args)
    model = build_backbone(args.backbone, weights=args.weights, include_top=True)
    size = tuple(int(d) for d in model.input.shape[1:3])
    failed = 0
    for name, load in _inputs(args):
        try:
            pixels = resize_rgb(load(), size, args.resize)
        except ImageReadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        probabilities = np.asarray(model(pixels[None], training=False))
        print(name)
        for wnid, name, probability in decode_predictions(probabilities, top=args.top)[0]:
            print(f"  {probability:6.3f}  {name}  ({wnid})")
    return 1 if failed else 0


def _predict_with_model(args) -> int:
    """Label each image with a trained classifier in any exported format."""
    from keras_transfer.images import ImageReadError

    classify, labels = _load_classifier(args.model, args.resize)
    failed = 0
    for name, load in _inputs(args):
        try:
            probabilities = classify(load())
        except ImageReadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        order = probabilities.argsort()[::-1][: min(args.top, len(probabilities))]
        best = ", ".join(f"{labels[i]} {probabilities[i]:.3f}" for i in order)
        print(f"{name}: {labels[order[0]]} ({probabilities[order[0]]:.3f})   [{best}]")
    return 1 if failed else 0


def _labels_beside(path: Path) -> list[str]:
    for folder in (path.parent, path.parent.parent):
        if (folder / "labels.txt").is_file():
            return (folder / "labels.txt").read_text().splitlines()
    raise FileNotFoundError(f"no labels.txt beside {path}: export with python -m keras_transfer.export")


def _load_classifier(path: Path, resize: str):
    """Return (pixels uint8 [H, W, 3] -> probabilities [C], class names) for a model file or folder."""
    import numpy as np

    from keras_transfer.images import resize_rgb

    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.is_dir():
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
        asset = path / "assets" / "labels.txt"  # the class names travel inside the SavedModel
        labels = asset.read_text().splitlines() if asset.is_file() else _labels_beside(path)
        return (lambda pixels: serve(images=tf.constant(pixels[None], tf.uint8))["probabilities"].numpy()[0]), labels
    labels = _labels_beside(path)
    if path.suffix == ".tflite":
        from keras_transfer.export import tflite_interpreter, tflite_predict

        interpreter = tflite_interpreter(path)
        height, width = (int(d) for d in interpreter.get_input_details()[0]["shape"][1:3])
        return (lambda pixels: _two_way(tflite_predict(interpreter, resize_rgb(pixels, (height, width), resize)[None])[0])), labels
    if path.suffix == ".keras":
        import keras

        import keras_transfer  # noqa: F401  (registers the toolkit's layers)

        model = keras.saving.load_model(path, safe_mode=True)
        size = tuple(int(d) for d in model.input.shape[1:3])
        return (lambda pixels: _two_way(np.asarray(model(resize_rgb(pixels, size, resize)[None], training=False))[0])), labels
    raise ValueError(f"--model must be a SavedModel folder, a .keras or a .tflite file, got {path}")


def _two_way(probabilities):
    import numpy as np

    return np.concatenate([1 - probabilities, probabilities]) if probabilities.shape[-1] == 1 else probabilities


def _inputs(args):
    """Yield (display name, loader) pairs: the demo photos, then the named files."""
    from keras_transfer.images import read_rgb

    if args.demo:
        import skimage.data

        for photo in ("coffee", "chelsea", "rocket"):
            yield f"scikit-image sample photo '{photo}'", getattr(skimage.data, photo)
    for path in args.images:
        yield path, lambda path=path: read_rgb(path)


if __name__ == "__main__":
    sys.exit(run_cli(main))
