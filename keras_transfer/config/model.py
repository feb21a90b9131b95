"""The `model:` section: the backbone, where to cut it, the head, and the task.

This module owns the names the model layer is built from: the backbone families
(`keras_transfer.backbones` registers one family per name, in this order), the tasks, the head's
poolings and types, and the fixed views a feature classifier averages over. `HeadConfig` is the
one head schema: `keras_transfer.heads.build_classifier` builds a Dense head from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keras_transfer.core.constraints import Interval, OneOf, check_constraints

BACKBONE_NAMES = (
    "vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50_v2", "resnet101_v2", "resnet152_v2",
    "inception_v3", "inception_resnet_v2", "xception", "mobilenet", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "densenet121", "densenet169", "densenet201", "nasnet_mobile", "nasnet_large",
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_v2_{size}" for size in ("b0", "b1", "b2", "b3", "s", "m", "l")),
    *(f"convnext_{size}" for size in ("tiny", "small", "base", "large", "xlarge")),
    *(f"efficientnet_lite{i}" for i in range(5)),
)
# A model file given as model.backbone (a source model of your own).
MODEL_FILE_SUFFIXES = (".keras", ".h5")
TASKS = ("multiclass", "binary", "multilabel", "regression")
POOLINGS = ("avg", "max", "flatten")
# `dense` is trained in stages (fine-tuning); the others are fitted on frozen features.
HEAD_TYPES = ("dense", "logistic", "linear_svm", "knn")
# Fixed views of each image a feature classifier trains on and averages at prediction (Razavian et
# al. 2014 averaged the features of crops and mirrors of each image): the whole image, its mirror,
# a centred crop of each side scaled back up, and the mirror of that crop. `keras_transfer.core.layers.MultiView`
# implements them (a test holds the two lists equal: core sits below the config).
VIEWS = ("full", "flip", "zoom", "flip_zoom")
# `adabn`: BatchNorm statistics re-estimated on data.unlabeled (keras_transfer.training.adapt);
# `feature_stats`: the feature-extraction classifier's standardisation re-estimated on them
# (keras_transfer.features.align).
ADAPT_METHODS = ("none", "adabn", "feature_stats")
HEAD_CONSTRAINTS = {
    "type": OneOf(HEAD_TYPES),
    "pooling": OneOf(POOLINGS),
    "dropout": Interval(0, 1, closed="left"),
    "units.*": Interval(1, integer=True),
    "views.*": OneOf(VIEWS),
    "C": Interval(0, closed="neither"),
}


@dataclass(frozen=True)
class HeadConfig:
    """The new head: `dense` (a Keras head built by `keras_transfer.heads.build_classifier`, trained
    in stages: fine-tuning) or an external classifier on frozen features (`logistic`, `linear_svm`,
    `knn`: feature extraction, see `keras_transfer.features`).

    Validated on construction. A dense head: `pooling` turns the backbone's feature map into a
    vector (avg, max or flatten); `units` lists the hidden Dense layers' widths (empty: a linear
    classifier on pooled features, the usual choice for small target sets); `dropout` applies
    before every Dense layer; `batch_norm` and `activation` follow each hidden layer.

    An external classifier: `layers` names the blocks (or layers) whose pooled features it fits
    on, concatenated (default: the backbone's output); `views` the fixed views of each image it
    trains on and averages at prediction (`VIEWS`: full, flip, zoom, flip_zoom); `C` fixes the
    regularisation instead of choosing it by cross-validation.
    """

    type: str = "dense"
    pooling: str = "avg"
    units: list[int] = field(default_factory=list)
    dropout: float = 0.2
    batch_norm: bool = False
    activation: str = "relu"
    layers: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=lambda: ["full"])
    C: float | None = None

    def __post_init__(self):
        check_constraints(self, HEAD_CONSTRAINTS, prefix="model.head")


@dataclass(frozen=True)
class ModelConfig:
    """The backbone, where to cut it, and the head."""

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    cut_at: str | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    task: str = "multiclass"
    keep_source_top: bool = False
    train_bn: bool = False
    adapt: str = "none"
