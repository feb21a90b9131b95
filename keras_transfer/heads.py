"""Dense heads for the target labels, attached to a backbone to make a classifier.

The head is described by the config's `HeadConfig` (`model.head`), the one head schema. Its
layers are named `head_*` and form the `head` block, so `set_trainable(model, "head")` trains
exactly them. The result is a plain `keras.Model` that takes raw pixels.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_transfer.config import TASKS, HeadConfig, build_section
from keras_transfer.core.names import unknown_name_message


def build_classifier(
    backbone: keras.Model,
    num_classes: int,
    *,
    head: HeadConfig | dict[str, Any] | None = None,
    task: str = "multiclass",
    keep_source_top: bool = False,
    target_scale: tuple[float, float] | None = None,
) -> keras.Model:
    """Attach a new head for `num_classes` target labels to `backbone` and return the classifier.

    `head` is a `HeadConfig` (or its keys as a mapping, checked as `model.head` is; default: the
    config's default head): pooling, hidden Dense layers, dropout, batch norm.

    Tasks: "multiclass" (softmax), "binary" (one sigmoid unit), "multilabel" (a sigmoid per
    label), "regression" (`num_classes` linear outputs). With `keep_source_top=True` the source
    model's own classifier is kept instead (the source material's advice when source and target
    labels are the same): the backbone must then end in that classifier, e.g.
    `build_backbone(..., include_top=True)`, with exactly `num_classes` outputs. The prediction
    layer computes in float32 so mixed-precision training stays numerically safe.
    `target_scale=(mean, std)` (regression) ends the head in `head_target_units`, a Rescaling to
    `mean + std * output`: the Dense layer learns standardised targets, which a new head at an
    aggressive rate reaches in a few steps, and the model still predicts in the targets' units.
    """
    if task not in TASKS:
        raise ValueError(unknown_name_message("task", task, TASKS))
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if keep_source_top:
        return _keep_source_top(backbone, num_classes)
    spec = build_section(HeadConfig, head, "model.head") if isinstance(head, dict) else (head or HeadConfig())
    taken = [layer.name for layer in backbone.layers if layer.name.startswith("head_")]
    if taken:
        raise ValueError(
            f"backbone {backbone.name!r} already has head layers ({', '.join(taken[:3])}); cut it "
            "below its head (cut_at=...) before attaching a new one"
        )

    x = backbone.output
    if len(x.shape) == 4:
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D,
                "flatten": keras.layers.Flatten}[spec.pooling]
        x = pool(name="head_pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"backbone output must be a feature map or a vector, got shape {x.shape}")
    for i, units in enumerate(spec.units, start=1):
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout, name=f"head_dropout{i}")(x)
        x = keras.layers.Dense(units, use_bias=not spec.batch_norm, name=f"head_dense{i}")(x)
        if spec.batch_norm:
            x = keras.layers.BatchNormalization(name=f"head_bn{i}")(x)
        x = keras.layers.Activation(spec.activation, name=f"head_act{i}")(x)
    if spec.dropout:
        x = keras.layers.Dropout(spec.dropout, name="head_dropout")(x)
    outputs, activation = _output_layer(task, num_classes)
    x = keras.layers.Dense(outputs, activation=activation, dtype="float32", name="head_predictions")(x)
    if target_scale is not None and task == "regression":
        mean, std = (float(v) for v in target_scale)
        x = keras.layers.Rescaling(std if std > 0 else 1.0, offset=mean, dtype="float32", name="head_target_units")(x)
    return keras.Model(backbone.input, x, name=f"{backbone.name}_classifier")


def _output_layer(task: str, num_classes: int) -> tuple[int, str]:
    if task == "multiclass":
        if num_classes < 2:
            raise ValueError("a multiclass head needs at least 2 classes; use task='binary' for one")
        return num_classes, "softmax"
    if task == "binary":
        if num_classes not in (1, 2):
            raise ValueError(f"task='binary' has one sigmoid output; got num_classes={num_classes}")
        return 1, "sigmoid"
    if task == "multilabel":
        return num_classes, "sigmoid"
    return num_classes, "linear"


def _keep_source_top(backbone: keras.Model, num_classes: int) -> keras.Model:
    shape = backbone.output.shape
    if len(shape) != 2 or shape[-1] != num_classes:
        raise ValueError(
            f"keep_source_top=True keeps the source classifier, but {backbone.name!r} outputs "
            f"shape {tuple(shape)}, not (None, {num_classes}): build the backbone with "
            "include_top=True (or cut at its classifier) when the labels are the same, or attach "
            "a new head (keep_source_top=False) when they differ"
        )
    top = backbone.layers[-1]
    if not (top.name == "predictions" or top.name.startswith("head_")):
        # The kept classifier is the head block: name it so, as build_classifier's heads are.
        top.name = f"head_{top.name}"
    return keras.Model(backbone.input, backbone.output, name=f"{backbone.name}_classifier")


def inference_model(model: keras.Model) -> keras.Model:
    """An uncompiled twin of `model` sharing its layers and weights: what saving and deployment need.

    Saving it leaves the training state (optimizer, loss, per-block rates) out of the file, so a
    `.keras` file reloads with plain `keras.saving.load_model`. The one place this twin is built.
    """
    return keras.Model(model.input, model.output, name=model.name)
