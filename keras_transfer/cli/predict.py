"""`keras-transfer predict`: labels and probabilities (regression: values) for images.

    keras-transfer predict --model runs/x photo.jpg photos/ "more/*.png" [--top-k 3] [--json]
    keras-transfer predict --backbone efficientnet_lite0 photo.jpg

`--model` takes a run directory (it uses the run's exported SavedModel, else its `.keras`), a
SavedModel folder (or the versioned base folder TF Serving watches), or a `.keras`, `.tflite` or
`.onnx` file. Folders are searched recursively for images. Without `--model`, the pretrained
backbone's top ImageNet classes are printed (offline: the Lite0 weights install with pip). A file
that cannot be read, or is larger than `--max-pixels`, gets a one-line error and the others are
still predicted; the exit status is then 1. `--json` prints one JSON object per image on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_transfer.cli.common import command_parser, run_cli
from keras_transfer.config import DEFAULT_MAX_PIXELS


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("predict", __doc__)
    parser.add_argument("images", nargs="*", help="image files, folders (searched recursively) or globs")
    parser.add_argument("--demo", action="store_true",
                        help="predict the real photos that ship with scikit-image (coffee, a cat, a rocket)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a run directory, SavedModel folder, or .keras / .tflite / .onnx file")
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        help="without --model: a registered family with ImageNet weights (default: efficientnet_lite0)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' or a full-model weights file")
    parser.add_argument("--top-k", "--top", dest="top_k", type=int, default=5, help="how many classes to print per image")
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument("--tta", nargs="?", const="auto", default=None, metavar="VIEWS",
                        help="test-time augmentation: average over flip and/or crop views (default: the run's "
                             "own choice, mirror only if it trained on flips)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images larger than this (default {DEFAULT_MAX_PIXELS}; decompression bombs)")
    parser.add_argument("--resize", default="resize", choices=("resize", "crop_to_aspect_ratio", "pad"))
    return parser


def _show(prediction, as_json: bool) -> None:
    from keras_transfer.core.names import printable

    if prediction.error is not None:
        print(f"error: {printable(prediction.error)}", file=sys.stderr)
        if as_json:
            print(json.dumps({"path": prediction.path, "error": prediction.error}), flush=True)
        return
    if prediction.value is not None:  # a regression model: the target's predicted value
        (target, _), = prediction.top
        if as_json:
            print(json.dumps({"path": prediction.path, "target": target, "value": prediction.value}), flush=True)
        else:
            print(printable(f"{prediction.path}: {target} {prediction.value:.6g}"), flush=True)
        return
    (label, probability), *_ = prediction.top
    if as_json:
        print(json.dumps({"path": prediction.path, "label": label, "probability": round(probability, 6),
                          "top_k": [{"label": name, "probability": round(p, 6)} for name, p in prediction.top]}),
              flush=True)
    else:
        best = ", ".join(f"{name} {p:.3f}" for name, p in prediction.top)
        # Names and paths are printed escaped: a class folder or file named with ESC codes is shown, not obeyed.
        print(printable(f"{prediction.path}: {label} ({probability:.3f})   [{best}]"), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Predict each image and print its top classes (or its value); return 1 if any file failed, else 0."""
    args = build_parser().parse_args(argv)  # first: --help must not wait for TensorFlow
    from keras_transfer.deploy import (
        expand_image_paths,
        imagenet_classifier,
        load_classifier,
        predict_arrays,
        predict_paths,
        with_tta,
    )

    if not args.images and not args.demo:
        raise ValueError("name at least one image file, folder or glob, or pass --demo")
    paths = expand_image_paths(args.images)
    if args.images and not paths:
        raise ValueError(f"no images (.jpg, .jpeg, .png, .bmp, .gif) in {', '.join(args.images)}")
    if args.model is not None:
        classifier = load_classifier(args.model, resize=args.resize)
    else:
        classifier = imagenet_classifier(args.backbone, weights=args.weights, resize=args.resize)
    if args.tta is not None:
        classifier = with_tta(classifier, args.tta)
    failed = 0
    if args.demo:
        import skimage.data

        photos = [(f"scikit-image sample photo '{name}'", getattr(skimage.data, name)())
                  for name in ("coffee", "chelsea", "rocket")]
        for prediction in predict_arrays(classifier, photos, top_k=args.top_k):
            _show(prediction, args.json)
    for prediction in predict_paths(classifier, paths, top_k=args.top_k, max_pixels=args.max_pixels):
        failed += prediction.error is not None
        _show(prediction, args.json)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
