"""Per-block trainable flags, the BatchNormalization policy, and a per-block summary table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import keras

from keras_transfer.core.names import unknown_name_message
from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks

TrainableSpec = str | Sequence[str]


def resolve_trainable(spec: TrainableSpec, blocks: Sequence[str]) -> list[str]:
    """Return the block names that `spec` trains, given a model's ordered block names.

    `spec` is "head", "all", "none", "top:N" (the head plus the top N backbone blocks) or a list
    of block names. Unknown names raise ValueError naming the closest block.
    """
    body = [b for b in blocks if b != HEAD_BLOCK]
    head = [HEAD_BLOCK] if HEAD_BLOCK in blocks else []
    if isinstance(spec, str):
        if spec == "all":
            return list(blocks)
        if spec == "none":
            return []
        if spec == "head":
            if not head:
                raise ValueError("this model has no head block: attach one with build_classifier first")
            return head
        match = re.fullmatch(r"top:(\d+)", spec)
        if match:
            n = int(match.group(1))
            if n > len(body):
                raise ValueError(f"'top:{n}' asks for {n} blocks but the backbone has {len(body)}: {', '.join(body)}")
            return head + (body[-n:] if n else [])
        if spec in blocks:
            return [spec]
        raise ValueError(unknown_name_message(
            "trainable spec", spec, ["head", "all", "none", "top:N", *blocks]))
    chosen = list(spec)
    for name in chosen:
        if name not in blocks:
            raise ValueError(unknown_name_message("block", name, blocks))
    return chosen


def set_trainable(model: keras.Model, spec: TrainableSpec, *, train_bn: bool = False) -> list[str]:
    """Make exactly the blocks chosen by `spec` trainable; return their names.

    BatchNormalization layers stay frozen unless `train_bn=True`. In Keras 3, a BN layer with
    `trainable=False` also runs in inference mode (it normalises with its moving statistics and
    never updates them), which is what fine-tuning on a small target set needs: batch statistics
    of a few target images would overwrite statistics learnt on millions of source images. Call
    `compile` again after changing trainability, as Keras requires.
    """
    blocks = backbone_blocks(model)
    chosen = set(resolve_trainable(spec, list(blocks)))
    model.trainable = True
    for name, layers in blocks.items():
        for layer in layers:
            layer.trainable = name in chosen
            if not train_bn:
                for inner in layer._flatten_layers(include_self=True, recursive=True):
                    if isinstance(inner, keras.layers.BatchNormalization):
                        inner.trainable = False
    return [name for name in blocks if name in chosen]


@dataclass(frozen=True)
class BlockSummary:
    """One row of `block_summary`: a block, its layer count, parameters, and its output layer."""

    block: str
    layers: int
    params: int
    trainable_params: int
    output_layer: str


def block_summary(model: keras.Model) -> list[BlockSummary]:
    """Return a per-block table of `model`: block, layers, parameters, trainable parameters.

    `output_layer` is the block's last layer, the name to pass as `cut_at` to take that block's
    features.
    """
    rows = []
    for name, layers in backbone_blocks(model).items():
        params = sum(_size(w.shape) for l in layers for w in l.weights)
        trainable = sum(_size(w.shape) for l in layers for w in l.trainable_weights)
        rows.append(BlockSummary(name, len(layers), params, trainable, layers[-1].name))
    return rows


def _size(shape) -> int:
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def format_table(rows: Sequence[BlockSummary]) -> str:
    """Render `block_summary` rows as an aligned text table with a total line."""
    header = ("block", "layers", "params", "trainable", "output layer (cut_at)")
    body = [(r.block, str(r.layers), f"{r.params:,}", f"{r.trainable_params:,}", r.output_layer) for r in rows]
    total = ("total", str(sum(r.layers for r in rows)), f"{sum(r.params for r in rows):,}",
             f"{sum(r.trainable_params for r in rows):,}", "")
    table = [header, *body, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    align = ["<", ">", ">", ">", "<"]
    lines = ["  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip() for row in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
