"""`build_backbone`: any registered family, or the user's own source model, cut at a named layer."""

from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import keras

from keras_transfer.core.names import unknown_name_message
from keras_transfer.backbones.blocks import LayerRule, assign_blocks
from keras_transfer.backbones.registry import FAMILIES, Family, family_of_model_name, resolve_pretrained
from keras_transfer.backbones.weights_home import WeightsUnavailableError, keras_home
from keras_transfer.core.layers import preprocessing_layers

WeightsSpec = str | os.PathLike | None


def build_backbone(
    name: str | os.PathLike,
    *,
    weights: WeightsSpec = "imagenet",
    input_shape: tuple[int, int, int] | None = None,
    cut_at: str | None = None,
    include_top: bool = False,
    augmentation: keras.layers.Layer | None = None,
) -> keras.Model:
    """Build a backbone that takes raw RGB pixels in [0, 255] and outputs the features at `cut_at`.

    `name` is a registered family (see `available_backbones()`) or a path to the user's own saved
    source model (`.keras` or `.h5`, loaded in Keras safe mode, so no code inside it runs).
    `weights` is "imagenet", None (random initialisation) or a path to a weights file; for a
    source model it may only be left at its default (the saved weights) or be a weights path.
    `input_shape` defaults to the family's native resolution. `cut_at` names a layer (Keras's own
    layer names, unchanged) or a block (its last layer); the default is the last feature layer
    before the classifier, or the classifier itself with `include_top=True` (to keep the source
    labels). The family's preprocessing is inside the model, so callers never call
    `preprocess_input`. `augmentation` (a layer, e.g. the data config's in-model augmentation)
    is applied to the raw pixels first; it is active only in training. Unknown names raise
    ValueError listing the closest valid ones.
    """
    if _is_model_path(name):
        if augmentation is not None:
            raise ValueError(f"in-model augmentation cannot be put in front of a saved source model ({os.fspath(name)}); "
                             "augment in the input pipeline instead (data.augment_in: data)")
        return _build_from_source(Path(name), weights=weights, input_shape=input_shape, cut_at=cut_at,
                                  include_top=include_top)
    if name not in FAMILIES:
        raise ValueError(unknown_name_message("backbone", str(name), FAMILIES))
    family = FAMILIES[name]
    shape = _input_shape(family, input_shape)
    resolved = resolve_pretrained(family, weights)

    inputs = keras.Input(shape=shape, name="pixels")
    x = augmentation(inputs) if augmentation is not None else inputs
    for layer in preprocessing_layers(family.preprocessing):
        x = layer(x)
    with_top = include_top or family.feature_layer is not None
    with _offline_hint(family.name):
        try:
            full = family.constructor(include_top=with_top, weights=resolved, input_tensor=x, input_shape=shape)
        except (OSError, ValueError, KeyError) as error:
            if weights != "imagenet" or family.pretrained.source != "package":
                raise
            # A cached conversion that fails to load is rebuilt once from the package's file.
            warnings.warn(f"the cached ImageNet weights of {family.name} did not load ({error}); converting them again")
            resolved = resolve_pretrained(family, weights, rebuild=True)
            full = family.constructor(include_top=with_top, weights=resolved, input_tensor=x, input_shape=shape)
    if cut_at is None and not include_top and family.feature_layer:
        cut_at = family.feature_layer
    output = _cut_output(full, cut_at, assign_blocks(full, family.blocks), where=family.name)
    return keras.Model(inputs, output, name=family.name)


def _is_model_path(name: str | os.PathLike) -> bool:
    # Only an explicit model file name or a path counts: a folder that happens to be called
    # "vgg16" in the working directory must not shadow the registered family.
    text = os.fspath(name)
    return isinstance(name, os.PathLike) or text.endswith((".keras", ".h5")) or os.sep in text


def _input_shape(family: Family, input_shape: tuple[int, int, int] | None) -> tuple[int, int, int]:
    if input_shape is None:
        return (family.default_size, family.default_size, 3)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) for RGB images, got {input_shape!r}")
    if min(shape[:2]) < family.min_size:
        raise ValueError(
            f"{family.name} needs images of at least {family.min_size}x{family.min_size}; "
            f"got input_shape {shape}"
        )
    return shape


@contextmanager
def _offline_hint(family_name: str):
    """Turn Keras's bare "URL fetch failure" into an error that says what to do offline."""
    try:
        yield
    except Exception as error:  # Keras raises a plain Exception for download failures
        text = str(error)
        if "URL fetch failure" not in text and "urlopen error" not in text:
            raise
        match = re.search(r"(https?://\S+?\.h5)", text)
        url = match.group(1) if match else "(unknown URL)"
        filename = url.rsplit("/", 1)[-1]
        raise WeightsUnavailableError(
            f"could not download the ImageNet weights of {family_name} (is there internet access?). "
            f"Keras wanted {filename} from {url}. Offline, either copy that file to "
            f"{keras_home() / 'models' / filename} or pass weights='/path/to/{filename}'; or use "
            f"backbone 'efficientnet_lite0', whose ImageNet weights install with pip."
        ) from error


def _cut_output(model: keras.Model, cut_at: str | None, blocks: "OrderedDict", *, where: str):
    if cut_at is None:
        return model.output
    names = [layer.name for layer in model.layers]
    if cut_at in names:
        return model.get_layer(cut_at).output
    if cut_at in blocks:  # a block name means that block's output
        return blocks[cut_at][-1].output
    message = unknown_name_message("layer", cut_at, names, where=where)
    message += f" Blocks (cut at one to take its output): {', '.join(blocks)}."
    raise ValueError(message)


def _build_from_source(
    path: Path, *, weights: WeightsSpec, input_shape: tuple[int, int, int] | None, cut_at: str | None,
    include_top: bool = False,
) -> keras.Model:
    if not path.is_file():
        raise FileNotFoundError(f"source model {os.fspath(path)!r} does not exist")
    if path.suffix not in (".keras", ".h5"):
        raise ValueError(f"source model {os.fspath(path)!r} must be a .keras or .h5 file")
    if weights is None:
        raise ValueError(
            f"a saved source model ({path.name}) brings its own weights; leave weights at its "
            "default, or pass the path of a weights file to load into it"
        )
    from keras_transfer.core import layers  # noqa: F401  (registers the toolkit's layers with Keras)

    try:
        from keras_transfer.core.archives import load_keras_model

        # Member sizes checked before Keras inflates any; safe_mode refuses Lambda layers and
        # other serialised Python code: an untrusted file can never run code here.
        source = load_keras_model(path, compile=False)
    except ValueError as error:
        if "safe_mode" in str(error) or "arbitrary code" in str(error):
            raise ValueError(
                f"refusing to load {os.fspath(path)}: it contains serialised Python code (such as a "
                "Lambda layer), which could run arbitrary code. Rebuild the source model from "
                "built-in or registered layers and save it again."
            ) from error
        raise ValueError(f"could not load source model {os.fspath(path)}: {error}") from error
    except OSError as error:
        raise ValueError(f"could not read source model {os.fspath(path)}: {error}") from error
    if weights != "imagenet":
        weights_path = Path(weights)
        if not weights_path.is_file():
            raise FileNotFoundError(f"weights file {os.fspath(weights_path)!r} does not exist")
        source.load_weights(weights_path)
    if input_shape is not None and tuple(source.input_shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"source model {path.name} takes inputs of shape {tuple(source.input_shape[1:])}, "
            f"not input_shape {tuple(input_shape)}; leave input_shape unset for a source model"
        )
    family = family_of_model_name(source.name)
    rule = family.blocks if family else LayerRule()
    if cut_at is None and not include_top:
        cut_at = _last_feature_layer(source, path)
    output = _cut_output(source, cut_at, assign_blocks(source, rule), where=path.name)
    inputs = source.inputs[0] if len(source.inputs) == 1 else source.inputs
    return keras.Model(inputs, output, name=source.name)


# Layers that make up a classifier on top of features: what `include_top=False` leaves out.
_CLASSIFIER_LAYERS = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Flatten, keras.layers.Activation,
                      keras.layers.Softmax, keras.layers.BatchNormalization, keras.layers.GlobalAveragePooling2D,
                      keras.layers.GlobalMaxPooling2D)


def _last_feature_layer(source: keras.Model, path: Path) -> str | None:
    """The layer before the source model's trailing classifier (Dense, pooling, dropout, ...).

    A model saved by the toolkit ends in its `head_*` layers; any other model ends in whatever
    classifier its author put there. Without a classifier the whole model is the feature extractor.
    """
    layers = [layer for layer in source.layers if not isinstance(layer, keras.layers.InputLayer)]
    end = len(layers)
    while end and (isinstance(layers[end - 1], _CLASSIFIER_LAYERS) or layers[end - 1].name.startswith("head_")):
        end -= 1
    if end == len(layers):
        return None
    if end == 0:
        raise ValueError(f"source model {path.name} has no feature layers before its classifier; "
                         "pass cut_at=<layer> to choose one, or include_top=True to keep the whole model")
    return layers[end - 1].name
