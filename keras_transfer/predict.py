"""`python -m keras_transfer.predict`: labels and probabilities for image files.

    python -m keras_transfer.predict --backbone efficientnet_lite0 photo.jpg [more.png ...]

prints the top-5 ImageNet classes of each image with the pretrained backbone (offline: the
Lite0 weights install with pip). A file that cannot be read gets a one-line error and the
others are still predicted; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import sys

from keras_transfer.cli_util import run_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_transfer.predict", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, GIF; any size and mode)")
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
    from keras_transfer.images import ImageReadError, read_rgb, resize_rgb

    model = build_backbone(args.backbone, weights=args.weights, include_top=True)
    size = tuple(int(d) for d in model.input.shape[1:3])
    failed = 0
    for path in args.images:
        try:
            pixels = resize_rgb(read_rgb(path), size, args.resize)
        except ImageReadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        probabilities = np.asarray(model(pixels[None], training=False))
        print(path)
        for wnid, name, probability in decode_predictions(probabilities, top=args.top)[0]:
            print(f"  {probability:6.3f}  {name}  ({wnid})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
