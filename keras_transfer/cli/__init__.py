"""The commands: `keras-transfer COMMAND ...`, one module per command, each parse, one library call, print.

`python -m keras_transfer.COMMAND` (lr_find with an underscore) runs the same command.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module in keras_transfer.cli, one line for `keras-transfer --help`)
COMMANDS = {
    "train": ("train", "train a run from a photo folder or a config (recipe: auto measures the data)"),
    "evaluate": ("evaluate", "score a finished run on a split or on new data"),
    "predict": ("predict", "labels and probabilities for images, from a run or an exported model"),
    "export": ("export", "SavedModel, .keras, TFLite and ONNX, each checked against the Keras model"),
    "check": ("check", "the data's health: duplicates, leaks, suspected label errors, outliers"),
    "probe": ("probe", "linear-probe accuracy of each block, cross-validated"),
    "advise": ("advise", "which of the four situations the data is in, as a config"),
    "describe": ("describe", "a backbone's blocks, for cut_at and per-block freezing"),
    "lr-find": ("lr_find", "the learning-rate range test for one stage"),
    "explain": ("explain", "Grad-CAM heat maps of a trained model on your images"),
    "visualize": ("visualize", "what each block of the backbone responds to"),
    "suggest": ("suggest", "which unlabelled images to label next"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return ("usage: keras-transfer COMMAND [options]   (keras-transfer COMMAND --help for its options)\n\n"
            "commands:\n" + "\n".join(lines))


def command_module(name: str):
    """The module of command `name` (`lr_find` is accepted for `lr-find`); unknown names say the closest."""
    from keras_transfer.core.names import unknown_name_message

    key = name.replace("_", "-")
    if key not in COMMANDS:
        raise ValueError(unknown_name_message("command", name, list(COMMANDS)))
    return importlib.import_module(f"keras_transfer.cli.{COMMANDS[key][0]}")


def main(argv: list[str] | None = None) -> int:
    """The `keras-transfer` console script: dispatch to one command's `main`."""
    from keras_transfer.cli.common import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    try:
        module = command_module(argv[0])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_cli(lambda: module.main(argv[1:]))
