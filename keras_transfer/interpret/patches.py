"""What each block sees (Zeiler & Fergus, ECCV 2014, Fig. 2 style), on the user's own data.

For every block of a backbone, the channels whose activations reach the highest values over a
data set are picked, and for each the image patches that drive it hardest are cropped at the
block's receptive field: the part of the input that can influence one unit of that block. The
receptive field is computed from the model's own convolution and pooling kernels and strides, so
the crops are honest for any family. Shallow blocks show edges and colours, deep ones parts.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks
from keras_transfer.core.layers import single_view_model


@dataclass(frozen=True)
class ReceptiveField:
    """Size of the input window one unit sees, the input step between units (jump), and the
    input coordinate of the centre of unit 0 (start); one value per axis (height, width)."""

    size: tuple[float, float] = (1.0, 1.0)
    jump: tuple[float, float] = (1.0, 1.0)
    start: tuple[float, float] = (0.5, 0.5)

    def window(self, row: int, col: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (row, col)'s field, clipped to an image of `shape`."""
        box = []
        for axis, index in enumerate((row, col)):
            centre = self.start[axis] + index * self.jump[axis]
            low = int(np.floor(centre - self.size[axis] / 2))
            high = int(np.ceil(centre + self.size[axis] / 2))
            box.append((max(0, low), min(shape[axis], max(high, low + 1))))
        return box[0][0], box[1][0], box[0][1], box[1][1]


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _step(layer: keras.layers.Layer, field: ReceptiveField) -> ReceptiveField:
    """The receptive field after `layer`, given the one of its input."""
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, _), (left, _) = layer.padding
        return ReceptiveField(field.size, field.jump, (field.start[0] - top * field.jump[0],
                                                       field.start[1] - left * field.jump[1]))
    if kernel is None or not hasattr(layer, "strides"):
        return field
    kernel, strides = _pair(kernel), _pair(layer.strides)
    dilation = _pair(getattr(layer, "dilation_rate", 1))
    same = getattr(layer, "padding", "valid") == "same"
    size, jump, start = [], [], []
    for axis in range(2):
        k = (kernel[axis] - 1) * dilation[axis] + 1
        size.append(field.size[axis] + (k - 1) * field.jump[axis])
        jump.append(field.jump[axis] * strides[axis])
        # 'valid' windows start at the input's first unit; 'same' centres them (TF pads the
        # excess at the end, so the centre moves by (k - 1) // 2 units less than valid).
        offset = (k - 1) / 2 - ((k - 1) // 2 if same else 0)
        start.append(field.start[axis] + offset * field.jump[axis])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def receptive_fields(model: keras.Model) -> dict[str, ReceptiveField]:
    """The receptive field of every layer's output, by layer name, in input pixels.

    Where branches meet (residual additions, concatenations) the largest field is kept: a unit
    there sees everything any of its branches sees.
    """
    fields: dict[str, ReceptiveField] = {}
    for layer in model.layers:  # topologically sorted: parents first
        parents = [fields[node.operation.name] for n in layer._inbound_nodes for node in n.parent_nodes
                   if node.operation.name in fields]
        incoming = max(parents, key=lambda f: f.size[0] * f.size[1]) if parents else ReceptiveField()
        fields[layer.name] = _step(layer, incoming)
    return fields


def block_outputs(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """(block name, its last spatial layer) for each block before the head, shallow to deep."""
    out = []
    for name, layers in backbone_blocks(model).items():
        spatial = [layer for layer in layers if name != HEAD_BLOCK and len(getattr(layer.output, "shape", ())) == 4]
        if spatial:
            out.append((name, spatial[-1]))
    return out


def top_patches(model: keras.Model, dataset, *, channels: int = 4, per_channel: int = 2,
                max_images: int = 512) -> dict[str, list[list[np.ndarray]]]:
    """For each block: `channels` channels x `per_channel` image patches that activate them most.

    `dataset` yields (pixels, labels) batches in [0, 255]; at most `max_images` are scanned. A
    channel's strength is its highest activation anywhere in the data; patches of one channel
    come from different images. Returns block name -> [[patch, ...] per channel] (uint8 crops).
    """
    model = single_view_model(model)  # a model averaging views: its blocks as they see the whole image
    import tensorflow as tf

    blocks = block_outputs(model)
    if not blocks:
        raise ValueError(f"model {model.name!r} has no convolutional blocks to visualise")
    fields = receptive_fields(model)
    probe = keras.Model(model.inputs, [layer.output for _, layer in blocks], name="block_probe")
    forward = tf.function(lambda x: probe(x, training=False), reduce_retracing=True)
    keep = max(per_channel * 4, 8)  # per channel: the strongest units, from distinct images later
    best: list[list[list]] = [None] * len(blocks)  # block -> channel -> heap of (value, image, row, col)
    images: list[np.ndarray] = []
    for x, *_ in dataset:
        x = np.asarray(x)[: max_images - len(images)]
        if not len(x):
            break
        outputs = forward(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for b, act in enumerate(outputs):
            act = np.asarray(act, dtype=np.float32)
            n, h, w, c = act.shape
            flat = act.reshape(n, h * w, c)
            where = flat.argmax(axis=1)  # per image and channel: its strongest unit
            value = np.take_along_axis(flat, where[:, None, :], axis=1)[:, 0, :]
            if best[b] is None:
                best[b] = [[] for _ in range(c)]
            for ch in range(c):
                heap = best[b][ch]
                for i in np.argsort(-value[:, ch])[:keep]:
                    item = (float(value[i, ch]), len(images) + int(i), *divmod(int(where[i, ch]), w))
                    if len(heap) < keep:
                        heapq.heappush(heap, item)
                    elif item[0] > heap[0][0]:
                        heapq.heapreplace(heap, item)
        images.extend(np.clip(x, 0, 255).astype(np.uint8))
        if len(images) >= max_images:
            break
    shape = images[0].shape[:2]
    result = {}
    for (name, layer), heaps in zip(blocks, best):
        order = sorted(range(len(heaps)), key=lambda ch: -max((v for v, *_ in heaps[ch]), default=-np.inf))
        rows = []
        for ch in order[:channels]:
            crops, used = [], set()
            for value, index, row, col in sorted(heaps[ch], reverse=True):
                if index in used:
                    continue
                used.add(index)
                top, left, bottom, right = fields[layer.name].window(row, col, shape)
                crops.append(images[index][top:bottom, left:right])
                if len(crops) == per_channel:
                    break
            rows.append(crops)
        result[name] = rows
    return result


def plot_top_patches(patches: dict[str, list[list[np.ndarray]]], path: str | Path,
                     fields: dict[str, ReceptiveField] | None = None, title: str = "") -> Path:
    """One row per block (shallow to deep), one column per patch, channels side by side."""
    from keras_transfer.core.plots import new_figure, save_figure

    columns = max(sum(len(c) for c in rows) for rows in patches.values())
    fig, axes = new_figure(len(patches), columns, size=(1.3 * columns + 1.2, 1.4 * len(patches)), squeeze=False)
    for r, (name, rows) in enumerate(patches.items()):
        crops = [crop for channel in rows for crop in channel]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(crops):
                ax.imshow(crops[c], interpolation="nearest")
            else:
                ax.axis("off")
        size = f"\n{int(fields[name].size[0])} px" if fields and name in fields else ""
        axes[r, 0].set_ylabel(f"{name}{size}", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title or "image patches that most activate a few channels of each block", fontsize=10)
    return save_figure(fig, path)
