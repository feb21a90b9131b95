"""`keras-transfer describe BACKBONE`: the per-block table, before writing a config.

Shows the block names to freeze or train and the layer names to cut at, for a registered family
or a saved source model. Builds with random weights by default, so it never downloads anything.
"""

from __future__ import annotations

import argparse
import sys

from keras_transfer.cli.common import command_parser, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("describe", __doc__)
    parser.add_argument("backbone", nargs="?", help="a registered family (e.g. efficientnet_lite0) or a .keras/.h5 source model")
    parser.add_argument("--cut-at", default=None, help="layer or block name to cut the backbone at")
    parser.add_argument("--input-size", type=int, default=None, help="square input size (default: the family's own)")
    parser.add_argument("--weights", default=None, help="'imagenet' or a weights file (default: none, no download)")
    parser.add_argument("--layers", action="store_true", help="also list every layer with its block and output shape")
    parser.add_argument("--list", action="store_true", help="list the registered backbone names and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the per-block table of a backbone; return the process exit status."""
    args = build_parser().parse_args(argv)
    from keras_transfer.backbones import available_backbones, backbone_blocks, build_backbone
    from keras_transfer.freeze import block_summary, format_table

    if args.list:
        print("\n".join(available_backbones()))
        return 0
    if not args.backbone:
        raise ValueError("name a backbone (see --list) or a saved .keras/.h5 source model")
    shape = (args.input_size, args.input_size, 3) if args.input_size else None
    from keras_transfer.backbones import FAMILIES

    # Families build with random weights (no download); a source model keeps its saved ones.
    weights = args.weights or (None if args.backbone in FAMILIES else "imagenet")
    model = build_backbone(args.backbone, weights=weights, input_shape=shape, cut_at=args.cut_at)
    print(f"{model.name}: input {tuple(model.input.shape[1:])} -> output {tuple(model.output.shape[1:])}")
    print(format_table(block_summary(model)))
    if args.layers:
        for block, layers in backbone_blocks(model).items():
            for layer in layers:
                print(f"{block:>12}  {layer.name:<40} {tuple(layer.output.shape[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
