"""What the tests share: tiny models and configs, a tiny trained run, and images written to disk.

Plain functions, not a test module, so that test modules never import from each other and
subprocess helpers (tests/distributed_runs.py) can use them too; tests/conftest.py wraps the
expensive ones in fixtures."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_transfer.config import from_dict
from keras_transfer.training import run

def tiny_source(path: Path) -> Path:
    """A small CNN for 16x16 images saved as a .keras source model: blocks conv1, conv2, conv3."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    keras.Model(inputs, x, name="tiny").save(path)
    return path


def tiny_config(tmp_path: Path, stages, **data) -> dict:
    return {
        "data": {"source": "digits", "image_size": [16, 16], "batch_size": 32, "augment": [], **data},
        "model": {"backbone": str(tiny_source(tmp_path / "tiny.keras")), "head": {"dropout": 0.0}},
        "training": {"stages": stages},
    }


def two_layer_model():
    """Two stacked Dense layers (`bottom`, `top`) on 4 inputs, seeded: the smallest model with two blocks."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="top")(keras.layers.Dense(3, name="bottom")(inputs))
    return keras.Model(inputs, outputs)


DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


def train_tiny_run(folder: Path):
    """A small trained classifier (tiny CNN on 16x16 digits) in a finished run directory."""
    # The last stage compiles the full model, as fine-tuning runs do: its optimizer must not
    # stop the saved model from loading.
    stages = [{"name": "head", "train": "head", "epochs": 2, "learning_rate": 0.05},
              {"name": "tune", "train": "top:1", "epochs": 1, "learning_rate": 0.001, "block_lr_decay": 0.5}]
    return run(from_dict(tiny_config(folder, stages)), folder / "run", log=lambda _: None)


def digit_images(n: int = 6, size: int = 16) -> np.ndarray:
    """The first `n` scikit-learn digits as uint8 RGB images [n, size, size, 3]."""
    from keras_transfer.data import load_embedded

    return load_embedded("digits", (size, size)).images[:n]


def save_digits(folder: Path, n: int = 3, fmt: str = "png", size: tuple[int, int] = (48, 40)) -> list[Path]:
    """Write `n` digit images, resized to `size`, as files in `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(digit_images(n)):
        path = folder / f"digit{i}.{fmt}"
        Image.fromarray(image).resize(size).save(path)
        paths.append(path)
    return paths


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit greyscale PNG of side x side pixels: a few tens of KB that decode into gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)
    compressor, parts = zlib.compressobj(9), []
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path
