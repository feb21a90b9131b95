"""`keras-transfer probe`: linear-probe accuracy of every block, for your data.

    keras-transfer probe [--config FILE.yaml] [--layers block3 block5 top] [--output-dir DIR]
                                   [--classifier logistic|linear_svm|knn] [--set a.b=value ...]

Uses the config's data, backbone, weights, cut point and pooling; writes probe.json, probe.md
(a markdown table) and plots/layer_probe.png, and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from keras_transfer.cli.common import add_config_arguments, command_parser, config_from_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("probe", __doc__)
    parser.add_argument("--layers", nargs="+", default=None, metavar="NAME",
                        help="blocks or layers to probe (default: every block)")
    parser.add_argument("--classifier", default="logistic", help="logistic (default), linear_svm or knn")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: runs/probe-<config>-<time>)")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Probe every requested layer and write the results; return the process exit status."""
    args = build_parser().parse_args(argv)
    from keras_transfer.features.classifiers import CLASSIFIERS
    from keras_transfer.core.names import unknown_name_message

    if args.classifier not in CLASSIFIERS:
        raise ValueError(unknown_name_message("--classifier", args.classifier, CLASSIFIERS))
    path, config = config_from_args(args)
    out_dir = args.output_dir or Path("runs") / f"probe-{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"

    from keras_transfer.features.extract import backbone_and_data
    from keras_transfer.features.probe import probe_layers, write_probe

    backbone, data = backbone_and_data(config, purpose="the layer probe")
    pooling = "max" if config.model.head.pooling == "max" else "avg"
    print(f"probing {backbone.name} on {config.data.source} with {args.classifier} ({pooling} pooled features)")
    result = probe_layers(backbone, data, args.layers or "blocks", classifier=args.classifier, pooling=pooling, log=print)
    paths = write_probe(result, out_dir)
    print()
    print(result.table())
    print(f"best: {result.best().layer}; wrote {paths['json']}, {paths['table']} and {paths['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
