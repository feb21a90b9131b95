"""The checks of a whole run config: the backbone's name, the constraint table, and the rules that
join keys (a feature classifier's head, the stages, what needs data.unlabeled). No layer is built
and no image is read."""

from __future__ import annotations

from keras_transfer.config.model import BACKBONE_NAMES, MODEL_FILE_SUFFIXES, VIEWS
from keras_transfer.config.run import RunConfig, constraint_table
from keras_transfer.core.constraints import check_constraints
from keras_transfer.core.names import unknown_name_message


class ConfigError(ValueError):
    """A configuration problem, with the key path where it was found."""


def check_run(config: RunConfig) -> None:
    """Raise ConfigError, naming the key, for the first problem of `config`."""
    backbone = config.model.backbone
    if backbone not in BACKBONE_NAMES and not backbone.endswith(MODEL_FILE_SUFFIXES):
        raise ConfigError(unknown_name_message("backbone", backbone, BACKBONE_NAMES, where="model.backbone"))
    check_constraints(config, constraint_table(), error=ConfigError)
    if backbone.endswith(MODEL_FILE_SUFFIXES) and config.data.augment and config.data.augment_in == "model":
        raise ConfigError("data.augment_in: model cannot wrap a saved source model (model.backbone "
                          f"{backbone}); use data.augment_in: data")
    if config.model.head.type != "dense":
        _check_feature_classifier(config)
    else:
        for key, unset in (("layers", []), ("views", ["full"]), ("C", None)):
            if getattr(config.model.head, key) != unset:
                raise ConfigError(f"model.head.{key} is for a classifier on frozen features (model.head.type: "
                                  "logistic, linear_svm or knn); a dense head trains on the backbone's output "
                                  "(cut it with model.cut_at)")
    _check_unlabeled(config)
    _check_stages(config)
    if config.training.time_limit is not None and config.training.strategy == "multi_worker":
        raise ConfigError("training.time_limit: the workers of a multi_worker run would each stop at their own "
                          "batch and wait for each other; drop the time limit, or train on one machine")


def _check_stages(config: RunConfig) -> None:
    names = [stage.name for stage in config.training.stages]
    if config.training.recipe == "auto" and "head" not in names:
        raise ConfigError("training.recipe: auto runs a prefix of the stages named head, top and full, and "
                          f"training.stages has {', '.join(repr(n) for n in names)}; name the head stage 'head', "
                          "or set training.recipe: stages to run every stage as listed")
    seen = set()
    for i, stage in enumerate(config.training.stages):
        if stage.name in seen:
            raise ConfigError(f"training.stages.{i}.name: stage name {stage.name!r} is used twice")
        seen.add(stage.name)
        where = f"training.stages.{stage.name}"  # the key that --set takes, and the name the log prints
        if stage.block_lr_decay is not None and stage.block_lr:
            raise ConfigError(f"{where}: give block_lr_decay or block_lr, not both")
        if not isinstance(stage.train, (str, list)):
            raise ConfigError(f"{where}.train must be head, all, none, top:N or a list of block names")
        metric = "mae" if config.model.task == "regression" else "accuracy"
        monitor = stage.early_stopping.monitor if stage.early_stopping else "val_loss"
        if monitor.removeprefix("val_") not in ("loss", metric):
            raise ConfigError(f"{where}.early_stopping.monitor: {monitor!r} is not logged for model.task "
                              f"{config.model.task}; use val_loss, val_{metric}, loss or {metric}")
        if stage.early_stopping and stage.early_stopping.min_gain_per_minute is not None and metric != "accuracy":
            raise ConfigError(f"{where}.early_stopping.min_gain_per_minute weighs validation accuracy per minute, "
                              f"which model.task {config.model.task} does not log; remove the key")


def _check_unlabeled(config: RunConfig) -> None:
    """AdaBN and self-training read data.unlabeled; self-training runs on feature extraction's cached features."""
    users = [f"model.adapt: {config.model.adapt}"] if config.model.adapt != "none" else []
    if config.training.self_training is not None:
        users.append("training.self_training")
    if users and config.data.unlabeled is None:
        raise ConfigError(f"{' and '.join(users)} need(s) data.unlabeled: a folder of unlabelled target images "
                          "(or any source, whose labels are then ignored)")
    if config.model.head.type == "dense":
        for key, what in (("training.self_training", config.training.self_training is not None),
                          ("model.adapt: feature_stats", config.model.adapt == "feature_stats")):
            if what:
                raise ConfigError(f"{key} works on a classifier over cached features (feature extraction); set "
                                  "model.head.type: logistic, linear_svm or knn (or leave both out: recipe auto "
                                  "uses data.unlabeled when it picks feature extraction)")


def _check_feature_classifier(config: RunConfig) -> None:
    head, kind = config.model.head, config.model.head.type
    if head.pooling == "flatten":
        raise ConfigError(f"model.head.pooling: a {kind} classifier takes pooled features; use avg or max")
    if head.units:
        raise ConfigError(f"model.head.units: a {kind} classifier has no hidden Dense layers; drop units "
                          "or use model.head.type: dense")
    if not head.views or len(set(head.views)) != len(head.views):
        raise ConfigError(f"model.head.views must list each view once, some of {', '.join(VIEWS)}; got {head.views}")
    if kind == "knn" and head.C is not None:
        raise ConfigError("model.head.C is the regularisation of logistic and linear_svm; knn chooses its k")
    if config.model.task != "multiclass" or config.model.keep_source_top:
        hint = "; for model.task: regression use model.head.type: dense" if config.model.task == "regression" else ""
        raise ConfigError(f"model.head.type: {kind} classifies one class per image (model.task: multiclass, "
                          f"keep_source_top: false){hint}")
