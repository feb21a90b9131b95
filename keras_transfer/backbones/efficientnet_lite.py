"""EfficientNet-Lite0..4 in Keras, with keras.applications-style layer names.

EfficientNet-Lite (Google, 2020) is EfficientNet made friendly to mobile accelerators: no
squeeze-and-excitation, ReLU6 instead of swish, and stem (32) and head (1280) channels that do not
scale with width. Its layer names follow keras.applications' EfficientNet (`stem_conv`,
`block1a_dwconv`, `block2b_project_bn`, `top_conv`), so blocks, `cut_at` and freezing behave as for
every other family. Input is raw RGB in [0, 255]; the first layer normalises it as the original TF
checkpoints expect: (x - 127) / 128 (checked against ImageNet predictions in the tests).
"""

from __future__ import annotations

import math

import keras
from keras import layers

# (kernel, repeats, filters_in, filters_out, expand_ratio, stride) per stage: EfficientNet-B0's.
_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
# variant -> (width coefficient, depth coefficient, resolution, top dropout), from the
# efficientnet_lite_builder of the TF reference implementation.
LITE_PARAMS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 280, 0.3),
    4: (1.4, 1.8, 300, 0.3),
}
_BN_EPSILON = 1e-3  # the TF checkpoints' value; ~3,000 running variances are exactly 0
_DROP_CONNECT = 0.2


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def _stage_repeats(depth: float) -> list[int]:
    # Lite keeps the first and last stage at one repeat each (fix_head_stem in the reference).
    last = len(_STAGES) - 1
    return [r if i in (0, last) else int(math.ceil(depth * r)) for i, (_, r, *_) in enumerate(_STAGES)]


def _conv_bn_relu6(x, filters, kernel, strides, name, activation=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv" if name in ("stem", "top") else name)(x)
    bn_name = f"{name}_bn"
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=bn_name)(x)
    if activation:
        x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    return x


def _mbconv(x, *, kernel, filters_in, filters_out, expand_ratio, strides, drop_rate, name):
    inputs = x
    expanded = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{name}expand_conv")(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}expand_activation")(x)
    # padding="same" is TensorFlow's asymmetric same padding, which the checkpoints were trained with.
    x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                               name=f"{name}dwconv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}bn")(x)
    x = layers.ReLU(6.0, name=f"{name}activation")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}project_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def EfficientNetLite(
    variant: int = 0,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: tuple[int, int, int] | None = None,
    classes: int = 1000,
    classifier_activation: str = "softmax",
    name: str | None = None,
) -> keras.Model:
    """Build EfficientNet-Lite`variant` with the keras.applications constructor signature.

    `weights` is None or a path to a `.weights.h5` file of the full model (with its 1000-class
    top); the toolkit's `build_backbone` resolves "imagenet" to such a file for Lite0. Input is
    raw RGB pixels in [0, 255] of any size of at least 32x32.
    """
    if variant not in LITE_PARAMS:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(LITE_PARAMS)}, got {variant!r}")
    width, depth, resolution, top_dropout = LITE_PARAMS[variant]
    if input_tensor is not None:
        inputs = input_tensor
    else:
        inputs = keras.Input(shape=input_shape or (resolution, resolution, 3), name="input_layer")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")(inputs)
    x = _conv_bn_relu6(x, 32, 3, 2, "stem")

    repeats = _stage_repeats(depth)
    total = sum(repeats)
    index = 0
    for stage, ((kernel, _, f_in, f_out, expand, stride), count) in enumerate(zip(_STAGES, repeats)):
        f_in, f_out = _round_filters(f_in, width), _round_filters(f_out, width)
        if stage == 0:
            f_in = 32  # the stem is not scaled in Lite
        for j in range(count):
            x = _mbconv(
                x, kernel=kernel, filters_in=f_in if j == 0 else f_out, filters_out=f_out,
                expand_ratio=expand, strides=stride if j == 0 else 1,
                drop_rate=_DROP_CONNECT * index / total, name=f"block{stage + 1}{chr(97 + j)}_",
            )
            index += 1
    x = _conv_bn_relu6(x, 1280, 1, 1, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(top_dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    model_inputs = keras.utils.get_source_inputs(inputs) if input_tensor is not None else inputs
    model = keras.Model(model_inputs, x, name=name or f"efficientnet_lite{variant}")
    if weights is not None:
        model.load_weights(weights)
    return model
