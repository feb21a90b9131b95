"""`keras-transfer visualize --config F`: what each block of the backbone responds to.

    keras-transfer visualize --config configs/small_similar.yaml [--set data.source=folder:photos]

For each block of the configured backbone (its weights, its cut), shallow to deep, the image
patches of your data that most activate a few of its channels, cropped by the block's receptive
field (Zeiler & Fergus, 2014, Fig. 2 style): edges and colours below, object parts above. With
`--run DIR` the run's trained model is probed instead of the config's backbone.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from keras_transfer.cli.common import add_config_arguments, command_parser, config_from_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("visualize", __doc__)
    add_config_arguments(parser)
    parser.add_argument("--run", type=Path, default=None, help="probe this run's trained model.keras instead")
    parser.add_argument("--split", default="train", help="the split whose images are scanned (default: train)")
    parser.add_argument("--images", type=int, default=512, help="at most this many images are scanned (default: 512)")
    parser.add_argument("--channels", type=int, default=4, help="channels shown per block (default: 4)")
    parser.add_argument("--patches", type=int, default=2, help="patches shown per channel (default: 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the figure to write (default: block_patches.png; with --run, RUN/plots/block_patches.png, "
                             "and the run's report.html shows it)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Scan the data, write the block-patches figure to `--out` and print the receptive fields."""
    args = build_parser().parse_args(argv)
    import keras

    from keras_transfer.core import layers  # noqa: F401  (registers the toolkit's layers with Keras)
    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import load_data
    from keras_transfer.interpret import (
        block_outputs,
        plot_top_patches,
        receptive_fields,
        top_patches,
    )

    if args.run is not None:
        from keras_transfer.config import load_config

        from keras_transfer.runs import RunDir

        run = RunDir(args.run)
        config = load_config(run.config_path, args.overrides)
        model = run.load_model()
    else:
        _, config = config_from_args(args)
        m = config.model
        model = build_backbone(m.backbone, weights=m.weights, input_shape=(*config.data.image_size, 3), cut_at=m.cut_at)
    # Shuffled (seeded) but not augmented: --images from every class, not the first class folders.
    data = load_data(dataclasses.replace(config.data, augment=()))
    patches = top_patches(model, data.dataset(args.split, training=True), channels=args.channels,
                          per_channel=args.patches, max_images=args.images)
    fields = receptive_fields(model)
    by_block = {name: fields[layer.name] for name, layer in block_outputs(model)}
    for name in patches:
        field = by_block[name]
        print(f"{name:>12}: receptive field {field.size[0]:.0f}x{field.size[1]:.0f} px, stride {field.jump[0]:.0f}")
    out = args.out or (run.plot("block_patches.png") if args.run is not None else Path("block_patches.png"))
    plot_top_patches(patches, out, by_block,
                     title=f"{model.name} on {config.data.source}: patches that most activate each block's channels")
    print(f"wrote {out}")
    if args.run is not None and args.out is None:
        from keras_transfer.interpret import write_report_html

        print(f"updated {write_report_html(args.run)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
