"""`keras-transfer explain`: Grad-CAM heat maps of a trained model on your own images.

    keras-transfer explain --model runs/x IMG [IMG ...] [--block block6] [--out gradcam.png]

`--model` is a run directory (its model.keras), an export folder holding a `.keras` file, or a
`.keras` file; the class names come from `labels.txt` beside it. Each image is shown with the
heat map of its predicted class (or of `--class NAME`) on the last convolutional block, or the
block or layer `--block` names. The model is loaded in Keras safe mode: no code inside it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_transfer.cli.common import command_parser, run_cli
from keras_transfer.core.run_dir import RunDir


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("explain", __doc__)
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, GIF; any size and mode)")
    parser.add_argument("--model", type=Path, required=True, help="a run directory, an export folder or a .keras file")
    parser.add_argument("--block", default=None, help="block or layer to explain (default: the last convolutional block)")
    parser.add_argument("--class", dest="class_name", default=None, help="explain this class (default: the predicted one)")
    parser.add_argument("--out", type=Path, default=Path("gradcam.png"), help="the figure to write (default: gradcam.png)")
    parser.add_argument("--resize", default="resize", choices=("resize", "crop_to_aspect_ratio", "pad"))
    return parser


def find_keras_model(path: Path) -> Path:
    """The `.keras` file of a run directory, an export folder or the file itself."""
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"--model {path}: Grad-CAM needs the layers of a .keras model, not a {path.suffix or 'plain'} file")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"--model {path} does not exist")
    candidates = [RunDir(path).model_path, *sorted(path.glob("*.keras")), *sorted(path.glob("*/*.keras"))]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"--model {path} holds no .keras file (a SavedModel alone has no layers to explain)")
    return found


def _labels(model_file: Path) -> list[str]:
    from keras_transfer.core.files import read_labels

    for folder in (model_file.parent, model_file.parent.parent):
        if (folder / "labels.txt").is_file():
            return read_labels(folder / "labels.txt")
    raise FileNotFoundError(f"no labels.txt beside {model_file}")


def main(argv: list[str] | None = None) -> int:
    """Write Grad-CAM overlays of the images to `--out`, print each prediction; 1 if any file failed."""
    args = build_parser().parse_args(argv)
    import numpy as np

    from keras_transfer.core import layers  # noqa: F401  (registers the toolkit's layers with Keras)
    from keras_transfer.core.names import unknown_name_message
    from keras_transfer.data.images import ImageReadError, read_rgb, resize_rgb
    from keras_transfer.interpret import GradCAM, plot_gradcam, predicted_classes
    from keras_transfer.metrics import two_column

    model_file = find_keras_model(args.model)
    labels = _labels(model_file)
    if args.class_name is not None and args.class_name not in labels:
        raise ValueError(unknown_name_message("--class", args.class_name, labels))
    from keras_transfer.core.archives import load_keras_model

    model = load_keras_model(model_file)  # archive sizes checked, safe mode
    from keras_transfer.core.files import check_label_count

    check_label_count(labels, int(model.output.shape[-1]), f"the labels.txt beside {model_file}")
    size = tuple(int(d) for d in model.input.shape[1:3])
    cam = GradCAM(model, args.block)
    images, names, failed = [], [], 0
    for path in args.images:
        try:
            images.append(resize_rgb(read_rgb(path), size, args.resize))
            names.append(path)
        except ImageReadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    if not images:
        return 1
    batch = np.stack(images)
    probabilities = two_column(np.asarray(model(batch, training=False)))
    classes = (np.full(len(batch), labels.index(args.class_name)) if args.class_name
               else predicted_classes(probabilities))
    heatmaps = cam(batch, classes)
    titles = []
    for name, p, c in zip(names, probabilities, classes):
        best = int(p.argmax())
        print(f"{name}: {labels[best]} ({p[best]:.3f}); map for {labels[c]}")
        titles.append(f"{Path(name).name[:28]}\npred: {labels[best]} {p[best]:.2f}\nmap: {labels[c]}")
    plot_gradcam(batch.astype(np.uint8), heatmaps, titles, args.out, suptitle=f"Grad-CAM on {cam.layer.name}")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
