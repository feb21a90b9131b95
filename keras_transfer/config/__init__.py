"""The run configuration: a YAML file validated into data classes before any work starts.

`load_config(path, overrides)` reads YAML, applies `--set a.b.c=value` overrides (dotted paths,
list indices, YAML values), and checks every key and type. An unknown key, a wrong type, or an
unknown backbone gets one message with the key path and the closest valid choice. Code below
this package never re-checks the configuration.

The package owns the schema: the sections (`DataConfig`, `ModelConfig` with its `HeadConfig`,
`TrainingConfig`, `ExportConfig`), every name a key may take (tasks, backbones, views, sources,
augmentations, ...) and the one table of choices and ranges, `constraint_table()`. It imports neither
TensorFlow nor Keras, nor the modules that build layers or read data: checking a config builds
nothing.
"""

from keras_transfer.config.checks import ConfigError, check_run
from keras_transfer.config.data import (
    AUGMENT_PLACES,
    AUGMENTATIONS,
    BALANCE_MODES,
    CACHE_MODES,
    DATA_CONSTRAINTS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_STRENGTH,
    EMBEDDED_DATASETS,
    MAX_IMAGE_SIDE,
    RESIZE_POLICIES,
    SOURCE_KINDS,
    DataConfig,
    augmentation_strengths,
    check_unlabeled_source,
    expand_source,
    source_kind,
)
from keras_transfer.config.load import (
    apply_override,
    build_section,
    default_config_path,
    find_config,
    from_dict,
    load_config,
    packaged_config,
    packaged_configs,
    to_dict,
    yaml_problem,
)
from keras_transfer.config.model import (
    ADAPT_METHODS,
    BACKBONE_NAMES,
    HEAD_CONSTRAINTS,
    HEAD_TYPES,
    POOLINGS,
    TASKS,
    VIEWS,
    HeadConfig,
    ModelConfig,
)
from keras_transfer.config.run import (
    CACHE_FEATURES,
    EXPORT_FORMATS,
    LR_SCALING,
    MONITORS,
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    STRATEGIES,
    EarlyStoppingConfig,
    ExportConfig,
    RunConfig,
    SelfTrainingConfig,
    StageConfig,
    TrainingConfig,
    constraint_table,
)

__all__ = [
    "ADAPT_METHODS", "AUGMENTATIONS", "AUGMENT_PLACES", "BACKBONE_NAMES", "BALANCE_MODES", "CACHE_FEATURES",
    "CACHE_MODES", "DATA_CONSTRAINTS", "DEFAULT_MAX_PIXELS", "DEFAULT_STRENGTH", "EMBEDDED_DATASETS",
    "EXPORT_FORMATS", "HEAD_CONSTRAINTS", "HEAD_TYPES", "LR_SCALING", "MAX_IMAGE_SIDE", "MONITORS",
    "OPTIMIZERS", "POOLINGS", "RECIPES", "RESIZE_POLICIES", "SCHEDULES", "SOURCE_KINDS", "STRATEGIES", "TASKS",
    "VIEWS", "ConfigError", "DataConfig", "EarlyStoppingConfig", "ExportConfig", "HeadConfig", "ModelConfig",
    "RunConfig", "SelfTrainingConfig", "StageConfig", "TrainingConfig", "apply_override",
    "augmentation_strengths", "build_section", "check_run", "check_unlabeled_source", "constraint_table",
    "default_config_path", "expand_source", "find_config", "from_dict", "load_config", "packaged_config",
    "packaged_configs", "source_kind", "to_dict", "yaml_problem",
]
