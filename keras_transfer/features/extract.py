"""Frozen feature extraction: pooled features of any layers, in one pass, cached on disk.

Feature extraction uses the source network as a fixed feature extractor. Every
requested layer's output is pooled to a vector inside one multi-output model, so one forward
pass over the data serves all layers. Each (layer, split) array is cached in a `.npz` file whose
name and stored metadata hold a key of everything that decides its content: the architecture,
a hash of the weights, the layer, the input size, the pooling and a fingerprint of the data. A
file whose metadata does not match, or that cannot be read, is recomputed, never trusted.

The pass itself is `keras_transfer.forward.frozen_forward`: on onnxruntime when that pays and
agrees with Keras, the converted model cached in the same folder, keyed by the same things
(architecture, weights, layers, pooling, views, size).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import keras
import numpy as np

from keras_transfer.core.names import unknown_name_message
from keras_transfer.backbones import HEAD_BLOCK, backbone_blocks, build_backbone
from keras_transfer.data import DataBundle, DataConfig, load_data
from keras_transfer.core.files import atomic_write_bytes
from keras_transfer.data.images import DECODER_VERSION
from keras_transfer.core.layers import VIEW_ZOOM, MultiView
from keras_transfer.core.progress import MIN_BATCHES, batches_of, with_progress
from keras_transfer.forward import frozen_cache_dir, frozen_forward

POOLINGS = ("avg", "max")
_CACHE_FORMAT = 1  # bump when the content of a cache file changes meaning
_FEATURE_MODELS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


@dataclass
class Features:
    """Pooled features per split and layer, with the labels: `features["train"]["block5"]`.

    `layers` keeps the requested order (shallow to deep when taken from `feature_layers`);
    `xy(split, layer)` gives the (features, labels) pair a classifier fits on. With several
    `views` (see `keras_transfer.core.layers.MultiView`) `arrays` hold each image's mean over its
    views, what the exported model predicts on, and `xy(..., views=True)` one row per view.
    """

    layers: list[str]
    arrays: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]
    class_names: list[str]
    seconds: float = 0.0
    cache_hits: int = 0
    views: tuple[str, ...] = ("full",)
    per_view: dict[str, dict[str, np.ndarray]] | None = None  # [N, views, D] when there are several views

    def __getitem__(self, split: str) -> dict[str, np.ndarray]:
        if split not in self.arrays:
            raise KeyError(unknown_name_message("split", split, list(self.arrays)))
        return self.arrays[split]

    @property
    def splits(self) -> list[str]:
        """The splits held, in train/val/test order."""
        return list(self.arrays)

    def xy(self, split: str, layer: str | None = None, *, views: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(features of `layer` (default: the last requested), labels) of `split`.

        With `views=True` every view of every image is a row (labels repeated), the training set
        of a classifier that predicts on the mean of the views.
        """
        layer = layer or self.layers[-1]
        if layer not in self.layers:
            raise KeyError(unknown_name_message("layer", layer, self.layers))
        if views and self.per_view is not None:
            stacked = self.per_view[split][layer]
            return stacked.reshape(-1, stacked.shape[-1]), np.repeat(self.labels[split], stacked.shape[1], axis=0)
        return self[split][layer], self.labels[split]

    def stacked(self, split: str, layer: str) -> np.ndarray:
        """`layer`'s features of `split` as [N, views, D] (one view: [N, 1, D])."""
        if self.per_view is not None:
            return self.per_view[split][layer]
        return self[split][layer][:, None, :]

    def joined(self, split: str, layers: Iterable[str], *, views: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(the features of `layers` side by side, labels) of `split`, as `xy` gives one layer's:
        the input of a classifier on several blocks at once (Head2Toe)."""
        parts = [self.xy(split, name, views=views) for name in layers]
        return np.concatenate([x for x, _ in parts], axis=1), parts[0][1]

    def joined_stacked(self, split: str, layers: Iterable[str]) -> np.ndarray:
        """The features of `layers` side by side as [N, views, D1 + D2 + ...], as `stacked` gives one layer's."""
        return np.concatenate([self.stacked(split, name) for name in layers], axis=-1)


def feature_layers(backbone: keras.Model, layers: str | Sequence[str] | None = None) -> dict[str, str]:
    """Resolve requested feature points to {name shown to the user: Keras layer name}.

    `None` is the backbone's output; `"blocks"` is every block's output (its last layer), shallow
    to deep, the head excepted; otherwise each entry is a block name (its output) or a layer name.
    An unknown name raises ValueError with the closest blocks and layers.
    """
    blocks = {name: group for name, group in backbone_blocks(backbone).items() if name != HEAD_BLOCK}
    if layers is None:
        return {backbone.layers[-1].name: backbone.layers[-1].name}
    if isinstance(layers, str):
        if layers == "blocks":
            return {name: group[-1].name for name, group in blocks.items()}
        layers = [layers]
    names = {layer.name for layer in backbone.layers}
    resolved = {}
    for name in layers:
        if name in blocks:
            resolved[name] = blocks[name][-1].name
        elif name in names:
            resolved[name] = name
        else:
            choices = [*blocks, *(layer.name for layer in backbone.layers)]
            raise ValueError(unknown_name_message("feature layer", name, choices, where=backbone.name))
    return resolved


def extract_features(
    backbone: keras.Model | str,
    data: DataBundle | tuple[np.ndarray, np.ndarray],
    layers: str | Sequence[str] | None = None,
    *,
    pooling: str = "avg",
    weights: str | None = "imagenet",
    splits: Sequence[str] | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    views: Sequence[str] = ("full",),
    log: Callable[[str], None] | None = None,
    runtime: str | None = None,
) -> Features:
    """Pooled features of `layers` of a frozen `backbone` for every split of `data`, in one pass.

    `backbone` is a built model (`build_backbone(...)`) or a name/path built here with `weights`
    at the data's image size. `data` is a `DataBundle` (from `load_data`) or an `(images,
    labels)` pair. `layers`: see `feature_layers`. Feature maps are pooled (`avg` or `max`) to
    one vector per image; the data is never augmented, but `views` (names from
    `keras_transfer.core.layers.VIEWS`) takes the features of fixed views of each image, mirrors and
    crops, in the same pass (see `Features`). Results are cached under `cache_dir`
    (default `$KT_CACHE_DIR` or `~/.cache/keras_transfer/features`), so a second call is a file
    read; `cache=False` always recomputes. The pass runs on `runtime` ("auto", "keras" or "onnx",
    default `$KT_FROZEN_RUNTIME`, else "auto"; see `keras_transfer.forward.frozen_forward`); `log`
    says which ran and why.
    """
    if pooling not in POOLINGS:
        raise ValueError(unknown_name_message("pooling", pooling, POOLINGS))
    if isinstance(data, tuple):
        images, labels = data
        shape = np.asarray(images).shape
        data = load_data(DataConfig(source="digits", image_size=tuple(shape[1:3]), val_split=0.0, test_split=0.0,
                                    augment=(), cache="memory"), x=images, y=labels)
    if isinstance(backbone, (str, os.PathLike)):
        backbone = build_backbone(backbone, weights=weights, input_shape=(*data.config.image_size, 3))
    resolved = feature_layers(backbone, layers)
    views = tuple(views)
    splits = list(splits or data.splits)
    for split in splits:
        if split not in data.splits:
            raise ValueError(unknown_name_message("split", split, list(data.splits)))
    folder = Path(cache_dir) if cache_dir else frozen_cache_dir()
    model_key = _model_key(backbone, pooling) if cache else ""

    started, hits = time.perf_counter(), 0
    found: dict[str, dict[str, np.ndarray]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    labels: dict[str, np.ndarray] = {}
    data_keys: dict[str, str | None] = {}
    for split in splits:
        labels[split] = data.splits[split].labels
        data_key = data_keys[split] = _data_key(data, split) if cache else None
        found[split] = {}
        for name, layer in resolved.items():
            meta = _meta(backbone, layer, pooling, model_key, data_key, len(labels[split]), views) if data_key else None
            array = _read(_path(folder, backbone, layer, split, meta), meta) if meta else None
            if array is not None:
                found[split][name] = array
                hits += 1
        missing[split] = tuple(name for name in resolved if name not in found[split])
    steps = {}  # one frozen pass per set of missing layers, made once for all the splits that miss them
    for split in splits:
        names = missing[split]
        if not names:
            continue
        if names not in steps:
            images = sum(len(labels[s]) for s in splits if missing[s] == names) * len(views)
            model = _feature_model(backbone, [resolved[n] for n in names], pooling, views)
            steps[names] = frozen_forward(model, images=images, cache_dir=folder / backbone.name, runtime=runtime,
                                          log=log)
        data_key = data_keys[split]
        computed, labels[split] = _forward(steps[names], len(names),
                                           data.dataset(split, training=False, batch_size=batch_size),
                                           log=log, phase=f"feature extraction ({split})")
        for name, array in zip(names, computed):
            found[split][name] = array
            if data_key:
                meta = _meta(backbone, resolved[name], pooling, model_key, data_key, len(array), views)
                _write(_path(folder, backbone, resolved[name], split, meta), array, meta)
    arrays = {split: {name: found[split][name] for name in resolved} for split in splits}
    seconds = time.perf_counter() - started
    if log:
        total = len(resolved) * len(splits)
        shown = f", views {', '.join(views)}" if views != ("full",) else ""
        log(f"features of {len(resolved)} layer(s) x {len(splits)} split(s){shown} in {seconds:.1f} s "
            f"({hits}/{total} from the cache in {folder})")
    per_view = None
    if views != ("full",):  # cached and computed as [N, views, D]; the mean is what a model predicts on
        per_view = arrays
        arrays = {split: {name: a.mean(axis=1) for name, a in by_layer.items()} for split, by_layer in per_view.items()}
    return Features(list(resolved), arrays, labels, list(data.class_names), seconds, hits, views, per_view)


def backbone_and_data(config, purpose: str | None = None) -> tuple[keras.Model, DataBundle]:
    """The config's frozen backbone (weights and cut point applied, at the data's size) and its data.

    A backbone just measured by `recipe: auto` for the same config is taken over (`hand_over`)
    instead of being built again.

    `purpose` names a tool that scores classes (a classifier on frozen features, the layer probe, the
    advisor): regression data is then refused, before the backbone is built.
    """
    m = config.model
    data = load_data(config.data)
    if purpose is not None and data.task == "regression":
        raise ValueError(f"{purpose} classifies one class per image, and {config.data.source} holds regression "
                         "targets; train them with keras-transfer train and model.head.type: dense")
    key = (m.backbone, m.weights, tuple(config.data.image_size), m.cut_at)
    global _HANDED_OVER
    handed, _HANDED_OVER = _HANDED_OVER, None
    if handed is not None and handed[0] == key:
        return handed[1], data
    backbone = build_backbone(m.backbone, weights=m.weights, input_shape=(*config.data.image_size, 3), cut_at=m.cut_at)
    return backbone, data


def hand_over(config, backbone: keras.Model) -> None:
    """Let the next `backbone_and_data` call for the same backbone take this frozen one instead of building it.

    `recipe: auto` measures with a backbone and then runs feature extraction with the same one;
    building EfficientNet-Lite0 again cost 3-6 s of a one-liner that takes half a minute. Only the
    next call may take it, so a model trained in between is never handed out.
    """
    global _HANDED_OVER
    m = config.model
    _HANDED_OVER = ((m.backbone, m.weights, tuple(config.data.image_size), m.cut_at), backbone)


_HANDED_OVER = None


def feature_model(backbone: keras.Model, layers: Sequence[str], pooling: str = "avg",
                  views: Sequence[str] = ("full",)) -> keras.Model:
    """A model from raw pixels to the pooled output of each Keras layer in `layers` (a list).

    With several `views` each output is [B, views, D]: the pooled features of every view
    (`keras_transfer.core.layers.MultiView`) of every image.
    """
    pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}[pooling]
    outputs = []
    for name in layers:
        x = backbone.get_layer(name).output
        if len(x.shape) == 4:
            x = pool(name=f"pool_{name}")(x)
        elif len(x.shape) != 2:
            x = keras.layers.Flatten(name=f"flatten_{name}")(x)
        outputs.append(x)
    pooled = keras.Model(backbone.input, outputs, name=f"{backbone.name}_features")
    if tuple(views) == ("full",):
        return pooled
    images = keras.Input(tuple(backbone.input.shape[1:]), name="images")
    stacked = pooled(MultiView(views, name="views")(images))
    stacked = stacked if isinstance(stacked, (list, tuple)) else [stacked]
    per_image = [keras.ops.transpose(keras.ops.reshape(x, (len(views), -1, int(x.shape[-1]))), (1, 0, 2))
                 for x in stacked]
    return keras.Model(images, per_image, name=f"{backbone.name}_view_features")


def _feature_model(backbone, layers, pooling, views) -> keras.Model:
    # One feature model per (backbone, layers, pooling, views): a notebook extracting split after
    # split or call after call traces it once (Keras) or converts it once (onnxruntime).
    models = _FEATURE_MODELS.setdefault(backbone, {})
    key = (tuple(layers), pooling, tuple(views))
    if key not in models:
        models[key] = feature_model(backbone, layers, pooling, views)
    return models[key]


def _forward(step, outputs: int, dataset, log=None, phase: str = "") -> tuple[list[np.ndarray], np.ndarray]:
    chunks: list[list[np.ndarray]] = [[] for _ in range(outputs)]
    labels = []
    for x, y in with_progress(dataset, batches_of(dataset), "batch", at_least=MIN_BATCHES, eta=log, phase=phase):
        for chunk, out in zip(chunks, step(x)):
            chunk.append(np.asarray(out, dtype=np.float32))
        labels.append(np.asarray(y))
    return [np.concatenate(c) for c in chunks], np.concatenate(labels)


def _model_key(backbone: keras.Model, pooling: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([(l.name, type(l).__name__) for l in backbone.layers]).encode())
    digest.update(pooling.encode())
    for weight in backbone.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(weight.path.encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _data_key(data: DataBundle, split: str) -> str | None:
    """A fingerprint of what the model sees for `split`, or None for a streamed TFDS split."""
    examples = data.splits[split]
    if examples.tfds is not None:
        return None
    digest = hashlib.sha256()
    digest.update(repr((data.config.image_size, data.config.resize, data.config.source, DECODER_VERSION)).encode())
    digest.update(np.ascontiguousarray(examples.labels).tobytes())
    if examples.images is not None:
        digest.update(np.ascontiguousarray(examples.images).tobytes())
    else:
        for path in examples.paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _meta(backbone, layer, pooling, model_key, data_key, examples, views=("full",)) -> dict:
    meta = {"format": _CACHE_FORMAT, "backbone": backbone.name, "layer": layer, "pooling": pooling,
            "input_shape": list(backbone.input.shape[1:]), "model": model_key, "data": data_key,
            "examples": int(examples)}
    if tuple(views) != ("full",):  # one view keeps the keys (and the files) it always had
        meta["views"] = list(views)
        meta["zoom"] = VIEW_ZOOM
    return meta


def _path(folder: Path, backbone, layer: str, split: str, meta: dict) -> Path:
    key = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "examples"},
                                    sort_keys=True).encode()).hexdigest()[:20]
    return folder / backbone.name / f"{layer}-{split}-{key}.npz"


def _read(path: Path, meta: dict) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if json.loads(str(stored["meta"])) != meta:
                return None
            array = stored["features"]
    except Exception:  # a truncated, corrupted or foreign file: recompute it
        return None
    shape_ok = array.ndim == 2 if "views" not in meta else (array.ndim == 3 and array.shape[1] == len(meta["views"]))
    if not shape_ok or len(array) != meta["examples"] or not np.isfinite(array).all():
        return None
    return array


def _write(path: Path, array: np.ndarray, meta: dict) -> None:
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, features=array, meta=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buffer.getvalue())
