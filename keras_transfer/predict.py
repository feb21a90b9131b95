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
    parser.add_argument("images", nargs="*", help="image files (JPEG, PNG, BMP, GIF; any size and mode)")
    parser.add_argument("--demo", action="store_true",
                        help="predict the real photos that ship with scikit-image (coffee, a cat, a rocket)")
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

    if not args.images and not args.demo:
        raise ValueError("name at least one image file, or pass --demo")
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
