"""`keras-transfer advise`: which of the four situations is my data in, and what to run.

    keras-transfer advise [--config FILE.yaml] [--output FILE.yaml] [--set a.b=value ...]

Measures the target set (examples per class, classes) and its similarity to the source (a
linear probe of every block, and the shift against the backbone's BatchNorm statistics), prints
the placement with the numbers behind it, and writes a ready config for the recommended
strategy (default: advice-<config>.yaml beside the current directory's runs/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_transfer.cli.common import add_config_arguments, command_parser, config_from_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("advise", __doc__)
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the recommended config (default: runs/advice-<config>.yaml)")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Measure, place, explain and write the recommended config; return the process exit status."""
    args = build_parser().parse_args(argv)

    path, config = config_from_args(args)
    output = args.output or Path("runs") / f"advice-{path.stem}.yaml"

    import yaml

    from keras_transfer.features.advisor import advise
    from keras_transfer.features.extract import backbone_and_data
    from keras_transfer.core.files import atomic_write_text

    backbone, data = backbone_and_data(config, purpose="the advisor (it probes class accuracy)")
    print(f"measuring {config.data.source} against {backbone.name} ({config.model.weights or 'random'} weights)")
    advice = advise(config, backbone, data, log=print)
    print()
    print(advice.explain())
    output.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {line}\n" for line in advice.explain().splitlines())
    atomic_write_text(output, f"# Written by keras-transfer advise --config {path}\n{header}"
                      + yaml.safe_dump(advice.config, sort_keys=False))
    measures = {k: v for k, v in vars(advice).items() if k != "config"}
    atomic_write_text(output.with_suffix(".json"), json.dumps({**measures, "situation": advice.situation}, indent=1))
    print(f"\nrecommended config: {output}\nrun it: keras-transfer train --config {output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
