"""Group a backbone's layers into the blocks of its own architecture.

Every family names its layers differently (VGG `block3_conv2`, ResNet `conv4_block6_out`,
EfficientNet `block5c_project_bn`), and some (Inception) leave most layers auto-named. A block
rule turns that into an ordered mapping `block name -> layers`, so freezing, per-block learning
rates and `block_summary` work the same for every family. Layers whose names say nothing are placed by
the graph, never dropped: every layer belongs to exactly one block.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import keras

HEAD_BLOCK = "head"
# The classifier layers of a source model ("predictions", Keras's name) and the toolkit's own
# head layers ("head_*") form the head block, whatever the family.
_HEAD_NAME = re.compile(r"^(head_.*|head|predictions|conv_preds|logits)$")


@dataclass(frozen=True)
class NameRule:
    """Blocks read from layer names: the first pattern that matches gives the block name.

    Each pattern is a regex; its replacement template (re.Match.expand syntax) builds the block
    name. A layer no pattern matches joins the block of the layer before it in the model's
    topological order (leading ones join the first block): that keeps auto-named helpers such
    as Xception's shortcut convolutions and ResNet's padding layers with their neighbours.
    """

    patterns: tuple[tuple[str, str], ...]

    def block_of(self, name: str) -> str | None:
        for pattern, template in self.patterns:
            match = re.match(pattern, name)
            if match:
                return match.expand(template)
        return None


@dataclass(frozen=True)
class AnchorRule:
    """Blocks ending at named anchor layers, for families whose inner layers are auto-named.

    Inception's `mixed0`..`mixed10` concatenations (and Inception-ResNet's block outputs) are the
    only stable names. Block k is every layer that feeds anchor k but not anchor k-1; the layers
    shared by all branches of the first anchor form the `stem`.
    """

    anchor: str
    template: str = r"\g<0>"


@dataclass(frozen=True)
class LayerRule:
    """One block per top-level layer with weights: the rule for a user's own source model."""


BlockRule = NameRule | AnchorRule | LayerRule


def assign_blocks(model: keras.Model, rule: BlockRule) -> "OrderedDict[str, list[keras.layers.Layer]]":
    """Map every layer of `model` to one block under `rule`; blocks ordered input to output."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    head = [layer for layer in layers if _HEAD_NAME.match(layer.name)]
    body = [layer for layer in layers if not _HEAD_NAME.match(layer.name)]
    if isinstance(rule, AnchorRule):
        names = _by_anchor(body, rule)
    elif isinstance(rule, NameRule):
        names = [rule.block_of(layer.name) for layer in body]
    else:
        names = [layer.name if layer.weights else None for layer in body]
    blocks: OrderedDict[str, list[keras.layers.Layer]] = OrderedDict()
    pending: list[keras.layers.Layer] = []
    current: str | None = None
    for layer, name in zip(body, names):
        if name is None and current is None:
            pending.append(layer)
            continue
        current = name or current
        blocks.setdefault(current, []).extend(pending)
        pending = []
        blocks[current].append(layer)
    if pending:  # a model whose layers no rule names at all: one block
        blocks.setdefault(current or "body", []).extend(pending)
    # Order blocks by where they end: NASNet cells read the two previous cells, so a later cell's
    # first layer can precede an earlier cell's last one in topological order.
    position = {id(layer): i for i, layer in enumerate(body)}
    blocks = OrderedDict(sorted(blocks.items(), key=lambda item: max(position[id(l)] for l in item[1])))
    if head:
        blocks[HEAD_BLOCK] = head
    return blocks


def _parents(layer: keras.layers.Layer, members: set[int]) -> list[keras.layers.Layer]:
    parents = []
    for node in layer._inbound_nodes:
        for parent in node.parent_nodes:
            if id(parent.operation) in members:
                parents.append(parent.operation)
    return parents


def _by_anchor(body: list[keras.layers.Layer], rule: AnchorRule) -> list[str | None]:
    members = {id(layer) for layer in body}
    ancestors: dict[int, set[int]] = {}
    for layer in body:  # model.layers is topologically sorted, so parents come first
        seen = {id(layer)}
        for parent in _parents(layer, members):
            seen |= ancestors[id(parent)]
        ancestors[id(layer)] = seen

    block_of: dict[int, str] = {}
    anchors = [layer for layer in body if re.match(rule.anchor, layer.name)]
    for index, anchor in enumerate(anchors):
        name = re.match(rule.anchor, anchor.name).expand(rule.template)
        owned = ancestors[id(anchor)] - set(block_of)
        if index == 0:
            branches = [ancestors[id(p)] for p in _parents(anchor, members)]
            stem = set.intersection(*branches) if branches else set()
            for key in stem:
                block_of[key] = "stem"
            owned -= stem
        for key in owned:
            block_of[key] = name
    # Layers after the last anchor (pooling, say) fall through to "previous block" in assign_blocks.
    return [block_of.get(id(layer)) for layer in body]
